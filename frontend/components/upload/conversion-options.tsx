'use client';

import * as React from 'react';

import { Input } from '@/components/ui/input';
import { Label } from '@/components/ui/label';
import { NativeSelect } from '@/components/ui/native-select';
import { Switch } from '@/components/ui/switch';
import type { ConversionOptions } from '@/lib/api/types';
import {
  DEFAULT_QUALITY,
  FORMAT_LABELS,
  LOSSY_FORMATS,
  OUTPUT_FORMATS,
  type OutputFormat,
} from '@/lib/config';

export interface OptionsState {
  format: OutputFormat;
  quality: number;
  maxWidth: string;
  maxHeight: string;
  stripMetadata: boolean;
}

export const DEFAULT_OPTIONS: OptionsState = {
  format: 'webp',
  quality: DEFAULT_QUALITY,
  maxWidth: '',
  maxHeight: '',
  stripMetadata: true,
};

const MAX_DIMENSION = 65_535;

function parseDimension(value: string): number | undefined | 'invalid' {
  if (value.trim() === '') return undefined;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1 || number > MAX_DIMENSION) return 'invalid';
  return number;
}

/** The form state as API options, or the problems that keep it from being sent. */
export function toConversionOptions(
  state: OptionsState,
): { options: ConversionOptions; errors: null } | { options: null; errors: Partial<Record<'maxWidth' | 'maxHeight', string>> } {
  const maxWidth = parseDimension(state.maxWidth);
  const maxHeight = parseDimension(state.maxHeight);
  const errors: Partial<Record<'maxWidth' | 'maxHeight', string>> = {};
  const message = `A whole number from 1 to ${MAX_DIMENSION}, or empty.`;
  if (maxWidth === 'invalid') errors.maxWidth = message;
  if (maxHeight === 'invalid') errors.maxHeight = message;
  if (maxWidth === 'invalid' || maxHeight === 'invalid') return { options: null, errors };
  return {
    options: {
      format: state.format,
      quality: LOSSY_FORMATS.has(state.format) ? state.quality : undefined,
      maxWidth,
      maxHeight,
      stripMetadata: state.stripMetadata,
    },
    errors: null,
  };
}

interface ConversionOptionsFormProps {
  value: OptionsState;
  onChange: (value: OptionsState) => void;
  errors: Partial<Record<'maxWidth' | 'maxHeight', string>>;
  disabled?: boolean;
}

export function ConversionOptionsForm({ value, onChange, errors, disabled }: ConversionOptionsFormProps) {
  const id = React.useId();
  const set = <K extends keyof OptionsState>(key: K, next: OptionsState[K]) =>
    onChange({ ...value, [key]: next });
  const lossy = LOSSY_FORMATS.has(value.format);

  return (
    <fieldset className="grid grid-cols-2 gap-x-3 gap-y-4" disabled={disabled}>
      <legend className="sr-only">Conversion options</legend>
      <div className="col-span-2 flex flex-col gap-2 sm:col-span-1">
        <Label htmlFor={`${id}-format`}>Convert to</Label>
        <NativeSelect
          id={`${id}-format`}
          value={value.format}
          onChange={(event) => set('format', event.currentTarget.value as OutputFormat)}
          data-testid="format-select"
        >
          {OUTPUT_FORMATS.map((format) => (
            <option key={format} value={format}>
              {FORMAT_LABELS[format]}
            </option>
          ))}
        </NativeSelect>
      </div>
      <div className="col-span-2 flex flex-col gap-2 sm:col-span-1">
        <div className="flex items-center justify-between">
          <Label htmlFor={`${id}-quality`} className={lossy ? undefined : 'opacity-60'}>
            Quality
          </Label>
          <output htmlFor={`${id}-quality`} className="text-sm tabular-nums text-muted-foreground">
            {lossy ? value.quality : 'lossless'}
          </output>
        </div>
        <input
          id={`${id}-quality`}
          type="range"
          min={1}
          max={100}
          value={value.quality}
          disabled={disabled || !lossy}
          aria-describedby={lossy ? undefined : `${id}-quality-hint`}
          onChange={(event) => set('quality', Number(event.currentTarget.value))}
          className="h-10 w-full cursor-pointer accent-[hsl(var(--primary))] disabled:cursor-not-allowed disabled:opacity-50"
        />
        {!lossy && (
          <span id={`${id}-quality-hint`} className="sr-only">
            {FORMAT_LABELS[value.format]} is lossless: quality does not apply.
          </span>
        )}
      </div>
      {(['maxWidth', 'maxHeight'] as const).map((key) => (
        <div key={key} className="flex flex-col gap-2">
          <Label htmlFor={`${id}-${key}`}>{key === 'maxWidth' ? 'Max width' : 'Max height'}</Label>
          <Input
            id={`${id}-${key}`}
            inputMode="numeric"
            placeholder="Original"
            value={value[key]}
            onChange={(event) => set(key, event.currentTarget.value)}
            aria-invalid={errors[key] ? true : undefined}
            aria-describedby={errors[key] ? `${id}-${key}-error` : undefined}
          />
          {errors[key] && (
            <span id={`${id}-${key}-error`} className="text-xs text-destructive">
              {errors[key]}
            </span>
          )}
        </div>
      ))}
      <div className="col-span-2 flex items-center justify-between gap-3 rounded-md border p-3">
        <div className="flex flex-col gap-1">
          <Label htmlFor={`${id}-strip`}>Strip metadata</Label>
          <span id={`${id}-strip-hint`} className="text-xs text-muted-foreground">
            Removes EXIF and GPS data; keeps the colour profile.
          </span>
        </div>
        <Switch
          id={`${id}-strip`}
          checked={value.stripMetadata}
          onCheckedChange={(checked) => set('stripMetadata', checked)}
          aria-describedby={`${id}-strip-hint`}
        />
      </div>
    </fieldset>
  );
}
