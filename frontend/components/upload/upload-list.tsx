'use client';

import { AlertCircle, FileImage, Loader2, X } from 'lucide-react';

import { Button } from '@/components/ui/button';
import { Progress } from '@/components/ui/progress';
import { formatBytes } from '@/lib/format';
import type { UploadItem } from '@/lib/upload/queue';
import { cn } from '@/lib/utils';

interface UploadListProps {
  items: readonly UploadItem[];
  onCancel: (id: string) => void;
  onRemove: (id: string) => void;
}

/** Files waiting to be sent, being sent (with progress) or refused (with the reason). */
export function UploadList({ items, onCancel, onRemove }: UploadListProps) {
  if (items.length === 0) return null;
  return (
    <ul className="flex flex-col gap-2" aria-label="Files to convert" data-testid="upload-list">
      {items.map((item) => {
        const failed = item.status === 'error' || item.status === 'rejected';
        const problemId = `${item.id}-problem`;
        const percent = Math.round(item.progress * 100);
        return (
          <li
            key={item.id}
            className={cn(
              'flex flex-col gap-1.5 rounded-md border p-2.5',
              failed && 'border-destructive/50 bg-destructive/5',
            )}
            aria-describedby={failed ? problemId : undefined}
            data-testid="upload-item"
            data-status={item.status}
            data-filename={item.file.name}
          >
            <div className="flex items-center gap-2">
              {failed ? (
                <AlertCircle className="h-4 w-4 shrink-0 text-destructive" aria-hidden />
              ) : item.status === 'uploading' ? (
                <Loader2 className="h-4 w-4 shrink-0 animate-spin text-primary motion-reduce:animate-none" aria-hidden />
              ) : (
                <FileImage className="h-4 w-4 shrink-0 text-muted-foreground" aria-hidden />
              )}
              <span className="min-w-0 flex-1 truncate text-sm" title={item.file.name}>
                {item.file.name}
              </span>
              <span className="shrink-0 text-xs tabular-nums text-muted-foreground">
                {item.status === 'uploading' ? `${percent}%` : formatBytes(item.file.size)}
              </span>
              {item.status === 'uploading' ? (
                <Button variant="ghost" size="icon" className="h-7 w-7" onClick={() => onCancel(item.id)} aria-label={`Stop uploading ${item.file.name}`}>
                  <X aria-hidden />
                </Button>
              ) : (
                <Button variant="ghost" size="icon" className="h-7 w-7" onClick={() => onRemove(item.id)} aria-label={`Remove ${item.file.name}`}>
                  <X aria-hidden />
                </Button>
              )}
            </div>
            {item.status === 'uploading' && (
              <Progress value={percent} aria-label={`Uploading ${item.file.name}`} />
            )}
            {failed && item.problem && (
              <p id={problemId} className="text-xs text-destructive" data-testid="upload-error" data-code={item.problem.code}>
                {item.problem.message}
                {item.status === 'error' && ' It is sent again with the next Convert.'}
              </p>
            )}
          </li>
        );
      })}
    </ul>
  );
}
