import { API_PREFIX, type ApiClient } from '@/lib/api/client';
import { ApiError, NetworkError, apiErrorFromBody } from '@/lib/api/errors';
import type { ConversionOptions, Job } from '@/lib/api/types';

/** The part of XMLHttpRequest an upload uses (fetch cannot report upload progress). */
export interface UploadXhr {
  open(method: string, url: string): void;
  setRequestHeader(name: string, value: string): void;
  send(body: FormData): void;
  abort(): void;
  getResponseHeader(name: string): string | null;
  readonly status: number;
  readonly responseText: string;
  readonly upload: { onprogress: ((event: ProgressEvent) => void) | null };
  onload: ((event: ProgressEvent) => void) | null;
  onerror: ((event: ProgressEvent) => void) | null;
  ontimeout: ((event: ProgressEvent) => void) | null;
  onabort: ((event: ProgressEvent) => void) | null;
}

export type XhrFactory = () => UploadXhr;

const browserXhr: XhrFactory = () => new XMLHttpRequest();

export interface NamedBlob extends Blob {
  readonly name: string;
}

/** The multipart body of `POST /jobs`: `file` parts plus the options as form fields. */
export function buildUploadForm(files: readonly NamedBlob[], options: ConversionOptions): FormData {
  const form = new FormData();
  form.set('format', options.format);
  if (options.quality !== undefined) form.set('quality', String(options.quality));
  if (options.maxWidth !== undefined) form.set('max_width', String(options.maxWidth));
  if (options.maxHeight !== undefined) form.set('max_height', String(options.maxHeight));
  form.set('strip_metadata', options.stripMetadata ? 'true' : 'false');
  // Files last, so the options are read before the (large) file parts are streamed.
  for (const file of files) form.append('file', file, file.name);
  return form;
}

export interface SendUploadParams {
  files: readonly NamedBlob[];
  options: ConversionOptions;
  token: string;
  idempotencyKey: string;
  /** Fraction of the request body sent, 0..1. */
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
  createXhr?: XhrFactory;
}

function abortError(): DOMException {
  return new DOMException('The upload was canceled.', 'AbortError');
}

/** One `POST /api/v1/jobs` over XHR: resolves with the created jobs, rejects with ApiError. */
export function sendUpload({
  files,
  options,
  token,
  idempotencyKey,
  onProgress,
  signal,
  createXhr = browserXhr,
}: SendUploadParams): Promise<Job[]> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError());
      return;
    }
    const xhr = createXhr();
    const onAbortSignal = () => xhr.abort();
    signal?.addEventListener('abort', onAbortSignal, { once: true });
    const done = () => signal?.removeEventListener('abort', onAbortSignal);

    xhr.open('POST', `${API_PREFIX}/jobs`);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Idempotency-Key', idempotencyKey);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && event.total > 0) onProgress?.(event.loaded / event.total);
    };
    xhr.onload = () => {
      done();
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          const body = JSON.parse(xhr.responseText) as { jobs?: unknown };
          if (!Array.isArray(body.jobs)) throw new Error('no jobs');
          onProgress?.(1);
          resolve(body.jobs as Job[]);
        } catch {
          reject(new ApiError(xhr.status, 'bad_response', 'The server sent an unreadable answer.'));
        }
        return;
      }
      reject(apiErrorFromBody(xhr.status, xhr.responseText, xhr.getResponseHeader('Retry-After')));
    };
    xhr.onerror = () => {
      done();
      reject(new NetworkError('The upload was interrupted. Check your connection.'));
    };
    xhr.ontimeout = xhr.onerror;
    xhr.onabort = () => {
      done();
      reject(abortError());
    };
    xhr.send(buildUploadForm(files, options));
  });
}

/** Failures where sending the same file again may succeed. */
export function isRetryableUploadError(error: unknown): boolean {
  if (error instanceof NetworkError) return true;
  return error instanceof ApiError && (error.status === 429 || error.status >= 500);
}

export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

export const sleep: Sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError());
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

export function newIdempotencyKey(): string {
  if (typeof crypto !== 'undefined' && 'randomUUID' in crypto) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

export interface UploadParams {
  files: readonly NamedBlob[];
  options: ConversionOptions;
  onProgress?: (fraction: number) => void;
  signal?: AbortSignal;
  createXhr?: XhrFactory;
  wait?: Sleep;
  /** Retries after 429 (waiting Retry-After) and after network failures. */
  maxRetries?: number;
}

/**
 * Upload with the client's token: a refused token is renewed once; rate limiting (429) and
 * network failures are retried with the same Idempotency-Key, so a retry never makes a second
 * job for a request the API did receive.
 */
export async function uploadFiles(
  api: ApiClient,
  { files, options, onProgress, signal, createXhr, wait = sleep, maxRetries = 3 }: UploadParams,
): Promise<Job[]> {
  const idempotencyKey = newIdempotencyKey();
  let token = await api.token();
  let renewed = false;
  for (let attempt = 0; ; attempt++) {
    try {
      return await sendUpload({
        files,
        options,
        token,
        idempotencyKey,
        onProgress,
        signal,
        createXhr,
      });
    } catch (error) {
      if (error instanceof ApiError && error.status === 401 && !renewed) {
        renewed = true;
        token = await api.renewToken(token);
        attempt--;
        continue;
      }
      const transient =
        (error instanceof ApiError && (error.status === 429 || error.status === 503)) ||
        error instanceof NetworkError;
      if (!transient || attempt >= maxRetries) throw error;
      const hinted = error instanceof ApiError ? error.retryAfter : null;
      const delayMs = hinted !== null ? hinted * 1000 : 1000 * 2 ** attempt;
      onProgress?.(0);
      await wait(Math.min(delayMs, 30_000), signal);
    }
  }
}
