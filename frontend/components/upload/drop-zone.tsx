'use client';

import { UploadCloud } from 'lucide-react';
import * as React from 'react';

import { ACCEPTED_INPUT_EXTENSIONS, ACCEPTED_INPUT_MIME_TYPES, type UploadLimits } from '@/lib/config';
import { formatBytes } from '@/lib/format';
import { cn } from '@/lib/utils';

const ACCEPT = [...ACCEPTED_INPUT_MIME_TYPES, ...ACCEPTED_INPUT_EXTENSIONS.map((ext) => `.${ext}`)].join(',');

interface DropZoneProps {
  onFiles: (files: File[]) => void;
  limits: UploadLimits;
  disabled?: boolean;
}

/**
 * Drop files here, or click / press Enter or Space to pick them. The real file input stays in
 * the tab order (visually hidden), so keyboard and screen-reader users get the native picker.
 */
export function DropZone({ onFiles, limits, disabled }: DropZoneProps) {
  const [dragging, setDragging] = React.useState(false);
  const depth = React.useRef(0);
  const inputId = React.useId();
  const hintId = `${inputId}-hint`;

  const take = (list: FileList | null) => {
    if (list && list.length > 0) onFiles(Array.from(list));
  };

  return (
    <div
      onDragEnter={(event) => {
        event.preventDefault();
        depth.current++;
        setDragging(true);
      }}
      onDragOver={(event) => {
        event.preventDefault();
        event.dataTransfer.dropEffect = disabled ? 'none' : 'copy';
      }}
      onDragLeave={() => {
        depth.current = Math.max(0, depth.current - 1);
        if (depth.current === 0) setDragging(false);
      }}
      onDrop={(event) => {
        event.preventDefault();
        depth.current = 0;
        setDragging(false);
        if (!disabled) take(event.dataTransfer.files);
      }}
      data-testid="drop-zone"
      data-dragging={dragging || undefined}
    >
      <input
        id={inputId}
        type="file"
        multiple
        accept={ACCEPT}
        className="peer sr-only"
        aria-describedby={hintId}
        disabled={disabled}
        onChange={(event) => {
          take(event.currentTarget.files);
          // Picking the same file again must fire onChange again.
          event.currentTarget.value = '';
        }}
        data-testid="file-input"
      />
      <label
        htmlFor={inputId}
        className={cn(
          'flex cursor-pointer flex-col items-center justify-center gap-2 rounded-lg border-2 border-dashed px-4 py-8 text-center transition-colors',
          'hover:border-primary/60 hover:bg-accent/50 peer-focus-visible:ring-2 peer-focus-visible:ring-ring peer-focus-visible:ring-offset-2 peer-focus-visible:ring-offset-background',
          dragging ? 'border-primary bg-primary/5' : 'border-input',
          disabled && 'cursor-not-allowed opacity-60',
        )}
      >
        <span className="flex h-10 w-10 items-center justify-center rounded-full bg-primary/10 text-primary">
          <UploadCloud className="h-5 w-5" aria-hidden />
        </span>
        <span className="text-sm font-medium">
          {dragging ? 'Drop to add' : 'Drop images here or click to choose'}
        </span>
        <span id={hintId} className="text-xs text-muted-foreground">
          JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF, HEIC · up to {formatBytes(limits.maxFileBytes)} each
          · {limits.maxFiles} at a time
        </span>
      </label>
    </div>
  );
}
