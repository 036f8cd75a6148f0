/**
 * Everything the UI needs to know about the API's rules, in one place. The numbers mirror the
 * API's defaults (IMGCONV_MAX_FILE_BYTES, IMGCONV_MAX_FILES); when the API reports its own
 * limits (see `limitsFromApi`), those win.
 */

export const OUTPUT_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'bmp', 'tiff', 'avif'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export const FORMAT_LABELS: Record<OutputFormat, string> = {
  jpeg: 'JPEG',
  png: 'PNG',
  webp: 'WebP',
  gif: 'GIF',
  bmp: 'BMP',
  tiff: 'TIFF',
  avif: 'AVIF',
};

/** Formats whose encoder takes a quality setting. */
export const LOSSY_FORMATS: ReadonlySet<OutputFormat> = new Set(['jpeg', 'webp', 'avif']);

/** File extension used when saving a result. */
export const FORMAT_EXTENSIONS: Record<OutputFormat, string> = {
  jpeg: 'jpg',
  png: 'png',
  webp: 'webp',
  gif: 'gif',
  bmp: 'bmp',
  tiff: 'tiff',
  avif: 'avif',
};

/** Formats the browser can show in an <img>; others get a placeholder instead of a fetch. */
export const BROWSER_DISPLAYABLE = new Set(['jpeg', 'jpg', 'png', 'webp', 'gif', 'bmp', 'avif']);

/** Larger images get a placeholder instead of a thumbnail (it would mean downloading them). */
export const MAX_THUMBNAIL_BYTES = 8 * 1024 * 1024;

/** Input types the API decodes (it sniffs content; this is only the first, cheap filter). */
export const ACCEPTED_INPUT_MIME_TYPES = [
  'image/jpeg',
  'image/png',
  'image/webp',
  'image/gif',
  'image/bmp',
  'image/x-ms-bmp',
  'image/tiff',
  'image/avif',
  'image/heic',
  'image/heif',
] as const;

export const ACCEPTED_INPUT_EXTENSIONS = [
  'jpg',
  'jpeg',
  'jfif',
  'png',
  'webp',
  'gif',
  'bmp',
  'dib',
  'tif',
  'tiff',
  'avif',
  'heic',
  'heif',
] as const;

export interface UploadLimits {
  /** Bytes per file. */
  maxFileBytes: number;
  /** Files per upload request (and so per batch in the UI). */
  maxFiles: number;
}

export const DEFAULT_LIMITS: UploadLimits = {
  maxFileBytes: 25 * 1024 * 1024,
  maxFiles: 20,
};

export const DEFAULT_QUALITY = 82;

/** Uploads in flight at once: browsers allow 6 connections per host over HTTP/1.1. */
export const UPLOAD_CONCURRENCY = 3;

/** Jobs watched with a held-open long poll at once; the others use cheap ETag short polls. */
export const MAX_LONG_POLLS = 2;

export const POLL_TIMING = {
  /** Seconds the API may hold a long poll open (contract: 0-30). */
  longPollWaitSeconds: 25,
  /** Pause between the end of one long poll and the next. */
  longPollGapMs: 300,
  /** Interval of short polls for jobs without a long-poll slot. */
  shortPollMs: 3000,
  /** First retry delay after an error; doubles up to the cap. */
  errorBaseMs: 1000,
  errorMaxMs: 30_000,
  /** Retries of one poll before the query reports an error (polling then goes on, slower). */
  maxRetries: 6,
} as const;

export type PollTiming = { [K in keyof typeof POLL_TIMING]: number };

function positiveInt(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined;
}

/**
 * Limits reported by the API, if it reports any. Accepts `{limits: {max_file_bytes, max_files}}`
 * (or the same keys at the top level) and falls back to the defaults key by key.
 */
export function limitsFromApi(payload: unknown): UploadLimits {
  if (typeof payload !== 'object' || payload === null) return DEFAULT_LIMITS;
  const root = payload as Record<string, unknown>;
  const nested = root.limits;
  const source =
    typeof nested === 'object' && nested !== null ? (nested as Record<string, unknown>) : root;
  return {
    maxFileBytes: positiveInt(source.max_file_bytes) ?? DEFAULT_LIMITS.maxFileBytes,
    maxFiles:
      positiveInt(source.max_files) ??
      positiveInt(source.max_files_per_request) ??
      DEFAULT_LIMITS.maxFiles,
  };
}
