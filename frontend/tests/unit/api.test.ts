import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ApiClient, filenameFromContentDisposition, memoryTokenStorage } from '@/lib/api/client';
import { apiErrorFromBody } from '@/lib/api/errors';
import { parseStats } from '@/lib/api/types';
import { limitsFromApi } from '@/lib/config';
import { apiBaseUrl, proxyToApi } from '@/lib/api-proxy';
import { resultFilename, uniqueNames } from '@/lib/jobs/files';
import { formatBytes, formatDimensions, savingPercent } from '@/lib/format';

describe('ApiClient', () => {
  it('asks for one token however many calls need it, and keeps it', async () => {
    let tokensIssued = 0;
    const storage = memoryTokenStorage();
    const client = new ApiClient({
      storage,
      fetch: async (input) => {
        if (String(input).endsWith('/tokens')) {
          tokensIssued++;
          await new Promise((resolve) => setTimeout(resolve, 5));
          return Response.json({ token: `tok${tokensIssued}` }, { status: 201 });
        }
        return Response.json({ items: [], next_cursor: null });
      },
    });
    await Promise.all([client.listJobs(), client.listJobs(), client.token()]);
    expect(tokensIssued).toBe(1);
    expect(storage.get()).toBe('tok1');
  });

  it('replaces a token the API no longer knows and retries once', async () => {
    const seen: string[] = [];
    const client = new ApiClient({
      storage: memoryTokenStorage('old'),
      fetch: async (input, init) => {
        if (String(input).endsWith('/tokens')) return Response.json({ token: 'new' }, { status: 201 });
        const auth = new Headers(init?.headers).get('Authorization') ?? '';
        seen.push(auth);
        return auth === 'Bearer new'
          ? Response.json({ items: [], next_cursor: null })
          : Response.json({ error: { code: 'unauthorized', message: 'unknown token' } }, { status: 401 });
      },
    });
    await client.listJobs({ status: 'completed', cursor: 'c1', limit: 5 });
    expect(seen).toEqual(['Bearer old', 'Bearer new']);
  });

  it('cancels with POST /jobs/{id}/cancel and deletes with DELETE /jobs/{id}', async () => {
    const calls: string[] = [];
    const client = new ApiClient({
      storage: memoryTokenStorage('tok'),
      fetch: async (input, init) => {
        calls.push(`${init?.method ?? 'GET'} ${String(input)}`);
        if (String(input).endsWith('/cancel')) return Response.json({ id: 'j1', status: 'canceled' });
        return new Response(null, { status: 204 });
      },
    });
    const canceled = await client.cancelJob('j1');
    await client.deleteJob('j1');
    expect(canceled.status).toBe('canceled');
    expect(calls).toEqual(['POST /api/v1/jobs/j1/cancel', 'DELETE /api/v1/jobs/j1']);
  });

  it('turns error bodies into ApiErrors with code, message and Retry-After', () => {
    const error = apiErrorFromBody(429, JSON.stringify({ error: { code: 'rate_limited', message: 'Slow down' } }), '3');
    expect([error.status, error.code, error.message, error.retryAfter]).toEqual([429, 'rate_limited', 'Slow down', 3]);
    const html = apiErrorFromBody(502, '<html>Bad gateway</html>');
    expect([html.code, html.message]).toEqual(['http_502', 'The API is unreachable.']);
  });

  it('reads file names from Content-Disposition', () => {
    expect(
      filenameFromContentDisposition(`attachment; filename="caf_.webp"; filename*=UTF-8''caf%C3%A9.webp`),
    ).toBe('café.webp');
    expect(filenameFromContentDisposition('attachment; filename="a b.png"')).toBe('a b.png');
    expect(filenameFromContentDisposition(null)).toBeNull();
  });

  it('reads stats and limits as the API sends them', () => {
    const raw = {
      queue_depth: 4,
      workers_online: 2,
      jobs_by_status: { queued: 4, completed: 10 },
      limits: { max_file_bytes: 1048576, max_files: 5, max_pixels: 1, max_frames: 1, formats: [] },
    };
    expect(parseStats(raw)).toEqual({ queueDepth: 4, workersOnline: 2, jobsByStatus: { queued: 4, completed: 10 } });
    expect(limitsFromApi(raw)).toEqual({ maxFileBytes: 1048576, maxFiles: 5 });
    expect(limitsFromApi({ limits: { max_files: 'x' } }).maxFiles).toBe(20);
    expect(parseStats({ queue_depth: null, workers_online: null })).toMatchObject({ queueDepth: null, workersOnline: null });
  });
});

describe('names and figures', () => {
  it('names a result after the original with the target extension', () => {
    expect(resultFilename({ filename: 'holiday photo.HEIC', target_format: 'jpeg' })).toBe('holiday photo.jpg');
    expect(resultFilename({ filename: '../../etc/passwd', target_format: 'png' })).toBe('passwd.png');
    expect(resultFilename({ filename: '.hidden', target_format: 'tif' })).toBe('hidden.tiff');
    expect(uniqueNames(['a.png', 'A.png', 'b', 'b'])).toEqual(['a.png', 'A (2).png', 'b', 'b (2)']);
  });

  it('formats sizes and savings', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.5 kB');
    expect(formatBytes(25 * 1024 * 1024)).toBe('25 MB');
    expect(savingPercent(1000, 250)).toBe(75);
    expect(savingPercent(1000, 1500)).toBe(-50);
    expect(savingPercent(null, 10)).toBeNull();
  });

  it('shows source and result dimensions when a resize changed them', () => {
    const base = { width: null, height: null, source_width: 800, source_height: 600 };
    expect(formatDimensions({ ...base, status: 'queued' })).toBe('800×600');
    expect(formatDimensions({ ...base, status: 'completed', width: 400, height: 300 })).toBe('800×600 → 400×300');
    expect(formatDimensions({ ...base, status: 'completed', width: 800, height: 600 })).toBe('800×600');
    expect(formatDimensions({ status: 'completed', width: 10, height: 5 })).toBe('10×5');
    expect(formatDimensions({ status: 'failed', width: null, height: null })).toBeNull();
  });
});

describe('API proxy (next start / standalone)', () => {
  let server: Server;
  let base = '';
  const received: { method?: string; url?: string; headers: IncomingMessage['headers']; body: string }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        received.push({ method: req.method, url: req.url, headers: req.headers, body });
        if (req.url?.startsWith('/api/v1/jobs/etag')) {
          res.writeHead(304, { ETag: '"v1"' });
          res.end();
          return;
        }
        res.writeHead(202, { 'Content-Type': 'application/json', Connection: 'keep-alive', Location: '/api/v1/jobs/1' });
        res.end(JSON.stringify({ ok: true }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('reads the API address from the environment at call time', () => {
    expect(apiBaseUrl({ IMGCONV_API_URL: 'http://api:9000/' })).toBe('http://api:9000');
    expect(apiBaseUrl({})).toBe('http://127.0.0.1:8000');
  });

  it('forwards method, path, query, headers and body, and passes the answer back', async () => {
    const request = new Request('http://front.example/api/v1/jobs?x=1', {
      method: 'POST',
      headers: { Authorization: 'Bearer t', 'Content-Type': 'text/plain', 'Idempotency-Key': 'k' },
      body: 'hello',
    });
    const response = await proxyToApi(request, { base, clientIp: '10.0.0.9' });
    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ ok: true });
    expect(response.headers.get('Location')).toBe('/api/v1/jobs/1');
    expect(response.headers.has('Connection')).toBe(false);
    const seen = received.at(-1)!;
    expect([seen.method, seen.url, seen.body]).toEqual(['POST', '/api/v1/jobs?x=1', 'hello']);
    expect(seen.headers.authorization).toBe('Bearer t');
    expect(seen.headers['idempotency-key']).toBe('k');
    expect(seen.headers['x-forwarded-for']).toBe('10.0.0.9');
    expect(seen.headers['x-forwarded-host']).toBe('front.example');
  });

  it('passes a 304 through with its ETag and no body', async () => {
    const response = await proxyToApi(
      new Request('http://front/api/v1/jobs/etag?wait=25', { headers: { 'If-None-Match': '"v1"' } }),
      { base },
    );
    expect(response.status).toBe(304);
    expect(response.headers.get('ETag')).toBe('"v1"');
    expect(received.at(-1)?.headers['if-none-match']).toBe('"v1"');
  });

  it('answers 502 in the API error format when the API is down', async () => {
    const response = await proxyToApi(new Request('http://front/api/v1/stats'), { base: 'http://127.0.0.1:9' });
    expect(response.status).toBe(502);
    expect(await response.json()).toMatchObject({ error: { code: 'api_unreachable' } });
  });
});
