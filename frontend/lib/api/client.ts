import { ApiError, NetworkError, apiErrorFromBody } from '@/lib/api/errors';
import { parseStats, type Job, type JobPage, type JobStatus, type Stats } from '@/lib/api/types';

export const API_PREFIX = '/api/v1';
const TOKEN_KEY = 'imgconv.token';

/** Where the client token lives between visits. */
export interface TokenStorage {
  get(): string | null;
  set(token: string): void;
  clear(): void;
}

export function localTokenStorage(key = TOKEN_KEY): TokenStorage {
  return {
    get: () => {
      try {
        return window.localStorage.getItem(key);
      } catch {
        return null;
      }
    },
    set: (token) => {
      try {
        window.localStorage.setItem(key, token);
      } catch {
        // Private mode or storage full: the token then lasts for this page only.
      }
    },
    clear: () => {
      try {
        window.localStorage.removeItem(key);
      } catch {
        // see set()
      }
    },
  };
}

export function memoryTokenStorage(initial: string | null = null): TokenStorage {
  let token = initial;
  return {
    get: () => token,
    set: (value) => {
      token = value;
    },
    clear: () => {
      token = null;
    },
  };
}

export interface ApiClientOptions {
  storage: TokenStorage;
  fetch?: typeof fetch;
}

export interface ListJobsParams {
  limit?: number;
  cursor?: string | null;
  status?: JobStatus | null;
  signal?: AbortSignal;
}

export interface DownloadedFile {
  blob: Blob;
  /** File name from Content-Disposition, if the server sent one. */
  filename: string | null;
}

/** Parse `filename*=UTF-8''...` or `filename="..."` out of a Content-Disposition header. */
export function filenameFromContentDisposition(header: string | null): string | null {
  if (!header) return null;
  const extended = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(header);
  if (extended?.[1]) {
    try {
      return decodeURIComponent(extended[1].trim().replace(/^"|"$/g, ''));
    } catch {
      // fall through to the plain form
    }
  }
  const plain = /filename\s*=\s*("([^"]*)"|[^;]+)/.exec(header);
  const value = plain?.[2] ?? plain?.[1];
  return value ? value.trim() : null;
}

/** Talks to the API on the same origin with the client's bearer token. */
export class ApiClient {
  private readonly storage: TokenStorage;
  private readonly fetchImpl: typeof fetch;
  private pendingToken: Promise<string> | null = null;

  constructor(options: ApiClientOptions) {
    this.storage = options.storage;
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** The stored token, or a new one from `POST /tokens` (one request even if many ask at once). */
  token(): Promise<string> {
    const stored = this.storage.get();
    if (stored) return Promise.resolve(stored);
    if (!this.pendingToken) {
      this.pendingToken = this.createToken().finally(() => {
        this.pendingToken = null;
      });
    }
    return this.pendingToken;
  }

  /** Forget a token the API refused and get a new one (unless another call already did). */
  renewToken(refused: string): Promise<string> {
    if (this.storage.get() === refused) this.storage.clear();
    return this.token();
  }

  private async createToken(): Promise<string> {
    const response = await this.send(`${API_PREFIX}/tokens`, { method: 'POST' });
    if (!response.ok) throw await errorFrom(response);
    const body = (await response.json()) as { token?: unknown };
    if (typeof body.token !== 'string' || !body.token) {
      throw new ApiError(response.status, 'bad_token_response', 'The server sent no token.');
    }
    this.storage.set(body.token);
    return body.token;
  }

  private async send(path: string, init: RequestInit): Promise<Response> {
    try {
      return await this.fetchImpl(path, init);
    } catch (error) {
      if (error instanceof DOMException && error.name === 'AbortError') throw error;
      if (error instanceof Error && error.name === 'AbortError') throw error;
      throw new NetworkError();
    }
  }

  /**
   * Fetch with the bearer token. A 401 renews the token once and retries. Any non-2xx answer
   * other than 304 becomes an ApiError.
   */
  async request(path: string, init: RequestInit = {}): Promise<Response> {
    let token = await this.token();
    for (let attempt = 0; ; attempt++) {
      const headers = new Headers(init.headers);
      headers.set('Authorization', `Bearer ${token}`);
      const response = await this.send(path, { ...init, headers });
      if (response.status === 401 && attempt === 0) {
        token = await this.renewToken(token);
        continue;
      }
      if (!response.ok && response.status !== 304) throw await errorFrom(response);
      return response;
    }
  }

  async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const response = await this.request(path, init);
    return (await response.json()) as T;
  }

  listJobs({ limit = 20, cursor, status, signal }: ListJobsParams = {}): Promise<JobPage> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set('cursor', cursor);
    if (status) query.set('status', status);
    return this.json<JobPage>(`${API_PREFIX}/jobs?${query.toString()}`, { signal });
  }

  getJob(id: string, signal?: AbortSignal): Promise<Job> {
    return this.json<Job>(`${API_PREFIX}/jobs/${encodeURIComponent(id)}`, { signal });
  }

  /** Cancel a queued or processing job; answers the job (`canceled`, or as it finished). */
  cancelJob(id: string): Promise<Job> {
    return this.json<Job>(`${API_PREFIX}/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
  }

  /** Delete a job and its images, whatever its state (`DELETE /jobs/{id}`). */
  async deleteJob(id: string): Promise<void> {
    await this.request(`${API_PREFIX}/jobs/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  async stats(signal?: AbortSignal): Promise<{ stats: Stats; raw: unknown }> {
    const raw = await this.json<unknown>(`${API_PREFIX}/stats`, { signal });
    return { stats: parseStats(raw), raw };
  }

  /** Download `/jobs/{id}/result` or `/source` (they need the bearer header, so not a plain link). */
  async file(id: string, kind: 'result' | 'source', signal?: AbortSignal): Promise<DownloadedFile> {
    const response = await this.request(
      `${API_PREFIX}/jobs/${encodeURIComponent(id)}/${kind}`,
      { signal },
    );
    const filename = filenameFromContentDisposition(response.headers.get('Content-Disposition'));
    return { blob: await response.blob(), filename };
  }
}

export async function errorFrom(response: Response): Promise<ApiError> {
  let text = '';
  try {
    text = await response.text();
  } catch {
    // body unreadable: the status alone has to do
  }
  return apiErrorFromBody(response.status, text, response.headers.get('Retry-After'));
}

let browserClient: ApiClient | null = null;

/** The page's one client (token in localStorage). */
export function getApiClient(): ApiClient {
  if (!browserClient) browserClient = new ApiClient({ storage: localTokenStorage() });
  return browserClient;
}
