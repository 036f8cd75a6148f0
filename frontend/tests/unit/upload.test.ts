import { describe, expect, it } from 'vitest';

import { ApiError, NetworkError, fileProblemsFromDetails, problemForFile } from '@/lib/api/errors';
import type { ConversionOptions } from '@/lib/api/types';
import { DEFAULT_LIMITS } from '@/lib/config';
import { runPool, sendableItems, uploadReducer, type UploadItem } from '@/lib/upload/queue';
import { isRetryableUploadError, sendUpload, uploadFiles, type UploadXhr } from '@/lib/upload/send';
import { checkBatch } from '@/lib/upload/validate';

import { apiWith, delay, makeJob, scriptedFetch } from './helpers';

const OPTIONS: ConversionOptions = { format: 'webp', quality: 80, maxWidth: 1024, stripMetadata: true };

type Reply = { status: number; body: unknown; headers?: Record<string, string> } | 'network-error';

/** Stands in for XMLHttpRequest: records what was sent and replies as scripted. */
class FakeXhr implements UploadXhr {
  static sent: FakeXhr[] = [];
  method = '';
  url = '';
  headers: Record<string, string> = {};
  body: FormData | null = null;
  status = 0;
  responseText = '';
  aborted = false;
  private responseHeaders: Record<string, string> = {};
  upload: { onprogress: ((event: ProgressEvent) => void) | null } = { onprogress: null };
  onload: ((event: ProgressEvent) => void) | null = null;
  onerror: ((event: ProgressEvent) => void) | null = null;
  ontimeout: ((event: ProgressEvent) => void) | null = null;
  onabort: ((event: ProgressEvent) => void) | null = null;

  constructor(private readonly reply: Reply | null) {}

  open(method: string, url: string) {
    this.method = method;
    this.url = url;
  }
  setRequestHeader(name: string, value: string) {
    this.headers[name] = value;
  }
  getResponseHeader(name: string) {
    return this.responseHeaders[name.toLowerCase()] ?? null;
  }
  send(body: FormData) {
    this.body = body;
    FakeXhr.sent.push(this);
    if (this.reply === null) return; // stays in flight until aborted
    const reply = this.reply;
    setTimeout(() => {
      const progress = (loaded: number) =>
        this.upload.onprogress?.({ lengthComputable: true, loaded, total: 200 } as ProgressEvent);
      progress(50);
      progress(200);
      if (reply === 'network-error') {
        this.onerror?.({} as ProgressEvent);
        return;
      }
      this.status = reply.status;
      this.responseText = JSON.stringify(reply.body);
      this.responseHeaders = Object.fromEntries(
        Object.entries(reply.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
      );
      this.onload?.({} as ProgressEvent);
    }, 1);
  }
  abort() {
    this.aborted = true;
    this.onabort?.({} as ProgressEvent);
  }
}

function xhrs(...replies: (Reply | null)[]) {
  FakeXhr.sent = [];
  let next = 0;
  return () => new FakeXhr(replies[next++] ?? null);
}

const image = (name = 'cat.png', size = 200, type = 'image/png') =>
  new File([new Uint8Array(size)], name, { type });

const notAnImage = {
  status: 415,
  body: {
    error: {
      code: 'invalid_files',
      message: '1 of 1 file(s) cannot be converted; nothing was accepted',
      details: [
        {
          index: 0,
          filename: 'notes.jpg',
          code: 'not_an_image',
          message: 'The file is not a JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF or HEIC image.',
        },
      ],
    },
  },
};

describe('sendUpload', () => {
  it('posts the file and options with the token, reports progress, resolves the jobs', async () => {
    const job = makeJob();
    const progress: number[] = [];
    const jobs = await sendUpload({
      files: [image()],
      options: OPTIONS,
      token: 'secret',
      idempotencyKey: 'key-1',
      onProgress: (fraction) => progress.push(fraction),
      createXhr: xhrs({ status: 202, body: { jobs: [job] } }),
    });
    expect(jobs).toEqual([job]);
    const xhr = FakeXhr.sent[0]!;
    expect([xhr.method, xhr.url]).toEqual(['POST', '/api/v1/jobs']);
    expect(xhr.headers.Authorization).toBe('Bearer secret');
    expect(xhr.headers['Idempotency-Key']).toBe('key-1');
    expect(xhr.body?.get('format')).toBe('webp');
    expect(xhr.body?.get('quality')).toBe('80');
    expect(xhr.body?.get('max_width')).toBe('1024');
    expect(xhr.body?.has('max_height')).toBe(false);
    expect(xhr.body?.get('strip_metadata')).toBe('true');
    expect((xhr.body?.get('file') as File).name).toBe('cat.png');
    expect(progress).toEqual([0.25, 1, 1]);
  });

  it('rejects with the API error, whose details name the file and the reason', async () => {
    const error = await sendUpload({
      files: [image('notes.jpg', 10, 'image/jpeg')],
      options: OPTIONS,
      token: 't',
      idempotencyKey: 'k',
      createXhr: xhrs(notAnImage),
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(415);
    expect(problemForFile(error, 'notes.jpg')).toEqual({
      code: 'not_an_image',
      message: 'The file is not a JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF or HEIC image.',
    });
  });

  it('aborts when the signal fires', async () => {
    const controller = new AbortController();
    const pending = sendUpload({
      files: [image()],
      options: OPTIONS,
      token: 't',
      idempotencyKey: 'k',
      signal: controller.signal,
      createXhr: xhrs(null),
    });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    expect(FakeXhr.sent[0]?.aborted).toBe(true);
  });
});

describe('uploadFiles', () => {
  it('waits Retry-After on 429 and retries with the same Idempotency-Key', async () => {
    const waits: number[] = [];
    const { fetchImpl } = scriptedFetch(() => new Response(null, { status: 500 }));
    const jobs = await uploadFiles(apiWith(fetchImpl), {
      files: [image()],
      options: OPTIONS,
      createXhr: xhrs(
        { status: 429, body: { error: { code: 'rate_limited', message: 'slow' } }, headers: { 'Retry-After': '7' } },
        { status: 202, body: { jobs: [makeJob()] } },
      ),
      wait: async (ms) => {
        waits.push(ms);
      },
    });
    expect(jobs).toHaveLength(1);
    expect(waits).toEqual([7000]);
    expect(FakeXhr.sent).toHaveLength(2);
    expect(FakeXhr.sent[0]?.headers['Idempotency-Key']).toBe(FakeXhr.sent[1]?.headers['Idempotency-Key']);
  });

  it('renews a refused token once and sends again', async () => {
    const { fetchImpl } = scriptedFetch(() => new Response(null, { status: 500 }));
    await uploadFiles(apiWith(fetchImpl, 'stale'), {
      files: [image()],
      options: OPTIONS,
      createXhr: xhrs(
        { status: 401, body: { error: { code: 'unauthorized', message: 'bad token' } } },
        { status: 202, body: { jobs: [makeJob()] } },
      ),
    });
    expect(FakeXhr.sent.map((xhr) => xhr.headers.Authorization)).toEqual(['Bearer stale', 'Bearer t1']);
  });

  it('retries network failures, then gives up with a NetworkError', async () => {
    const { fetchImpl } = scriptedFetch(() => new Response(null, { status: 500 }));
    const error = await uploadFiles(apiWith(fetchImpl), {
      files: [image()],
      options: OPTIONS,
      maxRetries: 2,
      createXhr: xhrs('network-error', 'network-error', 'network-error', 'network-error'),
      wait: async () => undefined,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetworkError);
    expect(FakeXhr.sent).toHaveLength(3);
  });

  it('tells refused files from failed sends', () => {
    expect(isRetryableUploadError(new ApiError(415, 'invalid_files', 'no'))).toBe(false);
    expect(isRetryableUploadError(new ApiError(413, 'file_too_large', 'no'))).toBe(false);
    expect(isRetryableUploadError(new ApiError(429, 'rate_limited', 'later'))).toBe(true);
    expect(isRetryableUploadError(new ApiError(502, 'api_unreachable', 'down'))).toBe(true);
    expect(isRetryableUploadError(new NetworkError())).toBe(true);
  });

  it('does not retry a rejected file', async () => {
    const { fetchImpl } = scriptedFetch(() => new Response(null, { status: 500 }));
    await expect(
      uploadFiles(apiWith(fetchImpl), {
        files: [image('notes.jpg')],
        options: OPTIONS,
        createXhr: xhrs(notAnImage, { status: 202, body: { jobs: [] } }),
        wait: async () => undefined,
      }),
    ).rejects.toBeInstanceOf(ApiError);
    expect(FakeXhr.sent).toHaveLength(1);
  });
});

describe('per-file problems from error details', () => {
  const names = ['a.png', 'b.jpg', 'a.png'];

  it('matches list entries by index, then by file name', () => {
    const problems = fileProblemsFromDetails(
      [
        { index: 2, filename: 'a.png', code: 'file_too_large', message: 'too big' },
        { filename: 'b.jpg', code: 'not_an_image', reason: 'not an image' },
      ],
      names,
    );
    expect(problems.get(2)).toEqual({ code: 'file_too_large', message: 'too big' });
    expect(problems.get(1)).toEqual({ code: 'not_an_image', message: 'not an image' });
    expect(problems.has(0)).toBe(false);
  });

  it('accepts a wrapped list, nested errors, a map by name, and ignores junk', () => {
    expect(
      fileProblemsFromDetails({ files: [{ file: 'b.jpg', error: { code: 'x', message: 'm' } }] }, names).get(1),
    ).toEqual({ code: 'x', message: 'm' });
    expect(fileProblemsFromDetails({ 'b.jpg': 'broken' }, names, 'invalid_files').get(1)).toEqual({
      code: 'invalid_files',
      message: 'broken',
    });
    expect(fileProblemsFromDetails({ 'b.jpg': { code: 'empty_file' } }, names).get(1)).toEqual({
      code: 'empty_file',
      message: 'Empty file',
    });
    expect(fileProblemsFromDetails(null, names).size).toBe(0);
    expect(fileProblemsFromDetails([1, 'x', { index: 9, message: 'm' }], names).size).toBe(0);
    // Two problems for the same name go to the two files of that name.
    const twice = fileProblemsFromDetails(
      [
        { filename: 'a.png', message: 'first' },
        { filename: 'a.png', message: 'second' },
      ],
      names,
    );
    expect([twice.get(0)?.message, twice.get(2)?.message]).toEqual(['first', 'second']);
  });

  it('falls back to the top-level message when details do not name the file', () => {
    const error = new ApiError(413, 'request_too_large', 'The request is too large.');
    expect(problemForFile(error, 'x.png')).toEqual({ code: 'request_too_large', message: 'The request is too large.' });
    expect(problemForFile(new NetworkError(), 'x.png').code).toBe('network_error');
  });
});

describe('client-side checks', () => {
  it('refuses empty, oversized and non-image files, and files beyond the batch limit', () => {
    const limits = { ...DEFAULT_LIMITS, maxFiles: 2 };
    const files = [
      image('ok.png'),
      image('empty.png', 0),
      image('huge.jpg', DEFAULT_LIMITS.maxFileBytes + 1, 'image/jpeg'),
      image('doc.pdf', 10, 'application/pdf'),
      image('photo.HEIC', 10, ''),
      image('third.webp', 10, 'image/webp'),
    ];
    const { accepted, rejected } = checkBatch(files, limits);
    expect(accepted.map((f) => f.name)).toEqual(['ok.png', 'photo.HEIC']);
    expect(rejected.map((r) => [r.file.name, r.problem.code])).toEqual([
      ['empty.png', 'empty_file'],
      ['huge.jpg', 'file_too_large'],
      ['doc.pdf', 'unsupported_type'],
      ['third.webp', 'too_many_files'],
    ]);
    expect(rejected[1]?.problem.message).toContain('25 MB');
  });

  it('counts files already waiting against the limit', () => {
    const { accepted, rejected } = checkBatch([image('a.png'), image('b.png')], { ...DEFAULT_LIMITS, maxFiles: 3 }, 2);
    expect(accepted).toHaveLength(1);
    expect(rejected[0]?.problem.code).toBe('too_many_files');
  });
});

describe('upload list state', () => {
  const item = (id: string, status: UploadItem['status'] = 'ready'): UploadItem => ({
    id,
    file: image(`${id}.png`),
    status,
    progress: 0,
    problem: null,
  });

  it('tracks progress, drops accepted files and keeps refused ones with their reason', () => {
    let state = uploadReducer([], { type: 'add', items: [item('a'), item('b'), item('c', 'rejected')] });
    state = uploadReducer(state, { type: 'start', id: 'a' });
    state = uploadReducer(state, { type: 'progress', id: 'a', progress: 0.4 });
    state = uploadReducer(state, { type: 'progress', id: 'b', progress: 0.9 }); // not uploading
    expect(state.map((i) => [i.id, i.status, i.progress])).toEqual([
      ['a', 'uploading', 0.4],
      ['b', 'ready', 0],
      ['c', 'rejected', 0],
    ]);
    state = uploadReducer(state, { type: 'succeeded', id: 'a' });
    state = uploadReducer(state, { type: 'add', items: [item('d'), item('e')] });
    state = uploadReducer(state, { type: 'failed', id: 'b', problem: { code: 'not_an_image', message: 'no' }, retryable: false });
    state = uploadReducer(state, { type: 'failed', id: 'd', problem: { code: 'network_error', message: 'offline' }, retryable: true });
    expect(state.map((i) => [i.id, i.status])).toEqual([
      ['b', 'rejected'],
      ['c', 'rejected'],
      ['d', 'error'],
      ['e', 'ready'],
    ]);
    // Waiting files and failed sends go out on the next click; refused files never do.
    expect(sendableItems(state).map((i) => i.id)).toEqual(['d', 'e']);
    expect(uploadReducer(state, { type: 'clearProblems' }).map((i) => i.id)).toEqual(['e']);
  });

  it('runs at most `limit` uploads at once and finishes all despite failures', async () => {
    let running = 0;
    let peak = 0;
    const done: number[] = [];
    await runPool([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      running++;
      peak = Math.max(peak, running);
      await delay(5 + (n % 3) * 3);
      running--;
      if (n === 2) throw new Error('boom');
      done.push(n);
    });
    expect(peak).toBe(3);
    expect(done.sort()).toEqual([1, 3, 4, 5, 6, 7]);
  });
});
