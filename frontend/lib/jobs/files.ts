import { FORMAT_EXTENSIONS, OUTPUT_FORMATS, type OutputFormat } from '@/lib/config';
import type { Job } from '@/lib/api/types';

function isOutputFormat(value: string): value is OutputFormat {
  return (OUTPUT_FORMATS as readonly string[]).includes(value);
}

/** Normalise the API's aliases (`jpg`, `tif`) to our format names. */
export function canonicalFormat(format: string | null | undefined): string {
  const lower = (format ?? '').toLowerCase();
  if (lower === 'jpg') return 'jpeg';
  if (lower === 'tif') return 'tiff';
  return lower;
}

/** Remove path parts and characters that file systems refuse. */
export function safeBasename(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  const cleaned = base.replace(/[\u0000-\u001f<>:"|?*]+/g, '_').trim();
  return cleaned.replace(/^\.+/, '') || 'image';
}

/** `holiday photo.HEIC` converted to webp -> `holiday photo.webp`. */
export function resultFilename(job: Pick<Job, 'filename' | 'target_format'>): string {
  const base = safeBasename(job.filename);
  const dot = base.lastIndexOf('.');
  const stem = dot > 0 ? base.slice(0, dot) : base;
  const format = canonicalFormat(job.target_format);
  const extension = isOutputFormat(format) ? FORMAT_EXTENSIONS[format] : format || 'bin';
  return `${stem}.${extension}`;
}

/** Make names unique for an archive: `a.png`, `a (2).png`, ... */
export function uniqueNames(names: readonly string[]): string[] {
  const seen = new Map<string, number>();
  return names.map((name) => {
    const key = name.toLowerCase();
    const count = (seen.get(key) ?? 0) + 1;
    seen.set(key, count);
    if (count === 1) return name;
    const dot = name.lastIndexOf('.');
    return dot > 0
      ? `${name.slice(0, dot)} (${count})${name.slice(dot)}`
      : `${name} (${count})`;
  });
}

/** Hand a blob to the browser's download manager. */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.rel = 'noopener';
  document.body.appendChild(link);
  link.click();
  link.remove();
  // Revoking at once can cancel the download in some browsers.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** A stored (not recompressed: images are compressed already) zip of the given files. */
export async function zipFiles(files: readonly { name: string; blob: Blob }[]): Promise<Blob> {
  const { zipSync } = await import('fflate');
  const names = uniqueNames(files.map((file) => file.name));
  const entries: Record<string, Uint8Array> = {};
  await Promise.all(
    files.map(async (file, index) => {
      entries[names[index] ?? `file-${index}`] = new Uint8Array(await file.blob.arrayBuffer());
    }),
  );
  const zipped = zipSync(entries, { level: 0 });
  return new Blob([zipped], { type: 'application/zip' });
}
