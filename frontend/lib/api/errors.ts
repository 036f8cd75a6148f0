/** The API's error envelope `{"error": {"code", "message", "details"}}` and how to read it. */

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: unknown;
  /** Seconds from a `Retry-After` header, if any. */
  readonly retryAfter: number | null;

  constructor(
    status: number,
    code: string,
    message: string,
    details: unknown = null,
    retryAfter: number | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

/** A failure to reach the API at all (offline, proxy down, aborted by the network). */
export class NetworkError extends Error {
  constructor(message = 'Could not reach the server. Check your connection.') {
    super(message);
    this.name = 'NetworkError';
  }
}

const STATUS_MESSAGES: Record<number, string> = {
  400: 'The request was not accepted.',
  401: 'Your session expired. Reload the page.',
  404: 'Not found. It may have been deleted.',
  409: 'Not ready yet.',
  413: 'The file is too large.',
  415: 'This file type is not supported.',
  422: 'The request was not valid.',
  429: 'Too many requests. Slow down and try again shortly.',
  502: 'The API is unreachable.',
  503: 'The service is temporarily unavailable.',
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function parseRetryAfter(header: string | null): number | null {
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  const date = Date.parse(header);
  if (Number.isNaN(date)) return null;
  return Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/** Build an ApiError from a non-2xx status and its (possibly empty, possibly non-JSON) body. */
export function apiErrorFromBody(
  status: number,
  bodyText: string,
  retryAfterHeader: string | null = null,
): ApiError {
  const fallback = STATUS_MESSAGES[status] ?? `The server answered ${status}.`;
  const retryAfter = parseRetryAfter(retryAfterHeader);
  let parsed: unknown;
  try {
    parsed = bodyText ? JSON.parse(bodyText) : null;
  } catch {
    parsed = null;
  }
  if (isRecord(parsed) && isRecord(parsed.error)) {
    const { code, message, details } = parsed.error;
    return new ApiError(
      status,
      typeof code === 'string' && code ? code : `http_${status}`,
      typeof message === 'string' && message ? message : fallback,
      details ?? null,
      retryAfter,
    );
  }
  // FastAPI's own validation errors: {"detail": [...]}
  if (isRecord(parsed) && 'detail' in parsed) {
    const detail = parsed.detail;
    const message = typeof detail === 'string' ? detail : fallback;
    return new ApiError(status, `http_${status}`, message, detail, retryAfter);
  }
  return new ApiError(status, `http_${status}`, fallback, null, retryAfter);
}

export interface FileProblem {
  code: string;
  message: string;
}

function problemFrom(entry: unknown, fallbackCode: string): FileProblem | null {
  if (typeof entry === 'string') return { code: fallbackCode, message: entry };
  if (!isRecord(entry)) return null;
  const nestedError = isRecord(entry.error) ? entry.error : entry;
  const message =
    [nestedError.message, nestedError.reason, nestedError.detail, nestedError.msg].find(
      (value): value is string => typeof value === 'string' && value.length > 0,
    ) ?? null;
  const code = typeof nestedError.code === 'string' ? nestedError.code : fallbackCode;
  if (message === null) {
    return typeof nestedError.code === 'string' ? { code, message: humanizeCode(code) } : null;
  }
  return { code, message };
}

function entryFilename(entry: Record<string, unknown>): string | null {
  for (const key of ['filename', 'file', 'name']) {
    const value = entry[key];
    if (typeof value === 'string') return value;
  }
  return null;
}

function entryIndex(entry: Record<string, unknown>): number | null {
  for (const key of ['index', 'file_index', 'position']) {
    const value = entry[key];
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  }
  return null;
}

/** `unsupported_format` -> `Unsupported format`. */
export function humanizeCode(code: string): string {
  const words = code.replace(/[_-]+/g, ' ').trim();
  return words ? words.charAt(0).toUpperCase() + words.slice(1) : 'Error';
}

/**
 * Map the `details` of a multi-file rejection onto the files that were sent, by index or by
 * file name. The exact shape is not fixed, so this accepts: a list of objects with
 * `filename|file|name` and/or `index`, and `code` + `message|reason` (possibly nested under
 * `error`); an object `{files: [...]}` or `{errors: [...]}` holding such a list; or an object
 * keyed by file name whose values are messages or `{code, message}`.
 * Returns index -> problem for each file that could be matched.
 */
export function fileProblemsFromDetails(
  details: unknown,
  filenames: readonly string[],
  fallbackCode = 'rejected',
): Map<number, FileProblem> {
  const problems = new Map<number, FileProblem>();
  let list: unknown = details;
  if (isRecord(details)) {
    const inner = details.files ?? details.errors ?? details.rejected;
    if (Array.isArray(inner)) {
      list = inner;
    } else {
      // Keyed by file name.
      for (const [key, value] of Object.entries(details)) {
        const index = filenames.indexOf(key);
        const problem = problemFrom(value, fallbackCode);
        if (index >= 0 && problem) problems.set(index, problem);
      }
      return problems;
    }
  }
  if (!Array.isArray(list)) return problems;
  const claimed = new Set<number>();
  for (const entry of list) {
    if (!isRecord(entry)) continue;
    const problem = problemFrom(entry, fallbackCode);
    if (!problem) continue;
    let index = entryIndex(entry);
    if (index !== null && index >= filenames.length) index = null;
    if (index === null) {
      const name = entryFilename(entry);
      if (name !== null) {
        // The same name may be sent twice: take the first one not claimed yet.
        const found = filenames.findIndex((candidate, i) => candidate === name && !claimed.has(i));
        index = found >= 0 ? found : null;
      }
    }
    if (index === null) continue;
    claimed.add(index);
    problems.set(index, problem);
  }
  return problems;
}

/** The most specific message for one file of a rejected upload. */
export function problemForFile(error: unknown, filename: string, index = 0): FileProblem {
  if (error instanceof ApiError) {
    const names: string[] = [];
    names[index] = filename;
    const fromDetails = fileProblemsFromDetails(
      error.details,
      Array.from(names, (n) => n ?? ''),
      error.code,
    ).get(index);
    return fromDetails ?? { code: error.code, message: error.message };
  }
  if (error instanceof NetworkError) return { code: 'network_error', message: error.message };
  return { code: 'unknown_error', message: 'Upload failed for an unknown reason.' };
}
