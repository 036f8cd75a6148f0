'use client';

import { Loader2, Wand2 } from 'lucide-react';
import * as React from 'react';

import { Button } from '@/components/ui/button';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '@/components/ui/card';
import {
  ConversionOptionsForm,
  DEFAULT_OPTIONS,
  toConversionOptions,
  type OptionsState,
} from '@/components/upload/conversion-options';
import { DropZone } from '@/components/upload/drop-zone';
import { UploadList } from '@/components/upload/upload-list';
import { useUploader } from '@/components/upload/use-uploader';
import { FORMAT_LABELS } from '@/lib/config';
import { sendableItems } from '@/lib/upload/queue';

export function UploadPanel() {
  const { items, limits, addFiles, start, cancel, remove, clearProblems } = useUploader();
  const [options, setOptions] = React.useState<OptionsState>(DEFAULT_OPTIONS);
  const [busy, setBusy] = React.useState(false);
  const parsed = toConversionOptions(options);
  const sendable = sendableItems(items).length;
  const problems = items.filter((item) => item.status === 'error' || item.status === 'rejected').length;

  const onSubmit = async (event: React.FormEvent) => {
    event.preventDefault();
    if (!parsed.options || sendable === 0) return;
    setBusy(true);
    try {
      await start(parsed.options);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Card>
      <CardHeader>
        <CardTitle>Convert images</CardTitle>
        <CardDescription>Files are converted on the server; results are kept for 7 days.</CardDescription>
      </CardHeader>
      <CardContent>
        <form className="flex flex-col gap-5" onSubmit={onSubmit} aria-label="Upload images">
          <DropZone onFiles={addFiles} limits={limits} />
          <UploadList items={items} onCancel={cancel} onRemove={remove} />
          {problems > 0 && (
            <Button type="button" variant="link" size="sm" className="h-auto self-start p-0" onClick={clearProblems}>
              Clear {problems} refused file{problems === 1 ? '' : 's'}
            </Button>
          )}
          <ConversionOptionsForm
            value={options}
            onChange={setOptions}
            errors={parsed.errors ?? {}}
            disabled={busy}
          />
          <Button
            type="submit"
            size="lg"
            disabled={busy || sendable === 0 || parsed.options === null}
            data-testid="convert-button"
          >
            {busy ? <Loader2 className="animate-spin" aria-hidden /> : <Wand2 aria-hidden />}
            {busy
              ? 'Uploading…'
              : sendable === 0
                ? 'Add images to convert'
                : `Convert ${sendable} file${sendable === 1 ? '' : 's'} to ${FORMAT_LABELS[options.format]}`}
          </Button>
        </form>
      </CardContent>
    </Card>
  );
}
