import { ApiClient, memoryTokenStorage } from '@/lib/api/client';
import type { Job, JobStatus } from '@/lib/api/types';

export function makeJob(overrides: Partial<Job> = {}): Job {
  const id = overrides.id ?? '00000000-0000-4000-8000-000000000001';
  return {
    id,
    status: 'queued' as JobStatus,
    filename: 'photo.jpg',
    source_format: 'jpeg',
    target_format: 'webp',
    options: {},
    source_bytes: 1000,
    result_bytes: null,
    width: 10,
    height: 10,
    source_width: 10,
    source_height: 10,
    attempts: 0,
    created_at: '2026-11-28T04:00:00Z',
    started_at: null,
    finished_at: null,
    error: null,
    links: {
      self: `/api/v1/jobs/${id}`,
      result: `/api/v1/jobs/${id}/result`,
      source: `/api/v1/jobs/${id}/source`,
    },
    ...overrides,
  };
}

export interface Recorded {
  url: string;
  method: string;
  headers: Headers;
  signal: AbortSignal | null;
}

type Responder = (request: Recorded) => Response | Promise<Response>;

/** A fetch that records requests and answers from a script; `/tokens` always issues "t1". */
export function scriptedFetch(responder: Responder) {
  const requests: Recorded[] = [];
  const fetchImpl: typeof fetch = async (input, init = {}) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const recorded: Recorded = {
      url,
      method: init.method ?? 'GET',
      headers: new Headers(init.headers),
      signal: init.signal ?? null,
    };
    if (url.endsWith('/api/v1/tokens')) {
      return Response.json({ token: 't1' }, { status: 201 });
    }
    requests.push(recorded);
    return responder(recorded);
  };
  return { fetchImpl, requests };
}

export function apiWith(fetchImpl: typeof fetch, token: string | null = 't1'): ApiClient {
  return new ApiClient({ storage: memoryTokenStorage(token), fetch: fetchImpl });
}

export function jobResponse(job: Job, etag: string): Response {
  return Response.json(job, { status: 200, headers: { ETag: etag, 'Retry-After': '1' } });
}

export function notModified(etag: string): Response {
  return new Response(null, { status: 304, headers: { ETag: etag } });
}

export function errorResponse(status: number, code: string, message: string, details: unknown = null, headers: Record<string, string> = {}): Response {
  return Response.json({ error: { code, message, details } }, { status, headers });
}

export const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wait until `check` passes or fail after `timeoutMs`. */
export async function eventually(check: () => void, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await delay(5);
    }
  }
}
