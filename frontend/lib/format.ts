/** Human-readable figures for the UI. */

const UNITS = ['B', 'kB', 'MB', 'GB'] as const;

/** 1536 -> "1.5 kB" (binary multiples, as the API's limits are in MiB). */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '—';
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${Number(value.toFixed(digits))} ${UNITS[unit]}`;
}

/** Size change from source to result in percent: positive = smaller. Null when unknown. */
export function savingPercent(
  sourceBytes: number | null | undefined,
  resultBytes: number | null | undefined,
): number | null {
  if (!sourceBytes || resultBytes === null || resultBytes === undefined) return null;
  return Math.round((1 - resultBytes / sourceBytes) * 1000) / 10;
}

/** 75_000 -> "1m 15s". */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  if (hours > 0) return `${hours}h ${minutes}m`;
  if (minutes > 0) return `${minutes}m ${seconds}s`;
  if (ms < 1000) return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
  return `${seconds}s`;
}

export function formatDateTime(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, {
    dateStyle: 'medium',
    timeStyle: 'short',
  });
}

/** "800×600", or "800×600 → 400×300" once a resized result exists. */
export function formatDimensions(job: {
  status: string;
  width: number | null;
  height: number | null;
  source_width?: number | null;
  source_height?: number | null;
}): string | null {
  const source = job.source_width && job.source_height ? `${job.source_width}×${job.source_height}` : null;
  const result = job.width && job.height ? `${job.width}×${job.height}` : null;
  if (job.status !== 'completed') return source ?? result;
  if (source && result && source !== result) return `${source} → ${result}`;
  return result ?? source;
}
