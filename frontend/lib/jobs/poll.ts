/**
 * Watching jobs until they finish: long polls with ETags, built on TanStack Query's polling
 * recipe (`refetchInterval` returns false once the job is terminal).
 *
 * - A job with an ETag is polled with `?wait=N` + `If-None-Match`: the API holds the request
 *   until the job changes (200) or N seconds pass (304, data kept).
 * - Only a few jobs hold a long poll at once (browsers allow 6 connections per host over
 *   HTTP/1.1); the rest are polled with cheap `wait=0` ETag requests every few seconds.
 * - Errors retry with exponential backoff and jitter; permanent ones (404, 401...) stop.
 * - While the tab is hidden nothing is polled: TanStack skips interval refetches and retries,
 *   and `pausePollingWhileHidden` aborts the long polls in flight.
 */
import {
  focusManager,
  type Query,
  type QueryClient,
  type QueryObserverOptions,
} from '@tanstack/react-query';

import { API_PREFIX, type ApiClient } from '@/lib/api/client';
import { ApiError } from '@/lib/api/errors';
import { isTerminal, type Job } from '@/lib/api/types';
import { POLL_TIMING, type PollTiming } from '@/lib/config';

export interface JobSnapshot {
  job: Job;
  etag: string | null;
}

export type PollOutcome = { changed: true; job: Job; etag: string | null } | { changed: false };

export const jobKeys = {
  all: ['job'] as const,
  one: (id: string) => ['job', id] as const,
};

/** One poll of `GET /jobs/{id}`, conditional on the ETag we hold. */
export async function pollJob(
  api: ApiClient,
  id: string,
  { etag, waitSeconds, signal }: { etag: string | null; waitSeconds: number; signal?: AbortSignal },
): Promise<PollOutcome> {
  const query = waitSeconds > 0 ? `?wait=${Math.round(waitSeconds)}` : '';
  const headers = new Headers();
  if (etag) headers.set('If-None-Match', etag);
  const response = await api.request(`${API_PREFIX}/jobs/${encodeURIComponent(id)}${query}`, {
    headers,
    signal,
    // Our own conditional request: the browser must hand us the 304, not a cached 200.
    cache: 'no-store',
  });
  if (response.status === 304) return { changed: false };
  const job = (await response.json()) as Job;
  return { changed: true, job, etag: response.headers.get('ETag') };
}

/** Errors after which asking again cannot help. */
export function isPermanentPollError(error: unknown): boolean {
  return error instanceof ApiError && [400, 401, 403, 404, 410, 422].includes(error.status);
}

export function shouldRetryPoll(
  failureCount: number,
  error: unknown,
  timing: PollTiming = POLL_TIMING,
): boolean {
  return !isPermanentPollError(error) && failureCount < timing.maxRetries;
}

/** Exponential backoff with jitter (50-100 % of the step), capped; honours Retry-After. */
export function backoffDelay(
  attempt: number,
  error: unknown = null,
  timing: PollTiming = POLL_TIMING,
  random: () => number = Math.random,
): number {
  const step = Math.min(timing.errorMaxMs, timing.errorBaseMs * 2 ** Math.max(0, attempt));
  const jittered = Math.round(step * (0.5 + random() * 0.5));
  const hinted =
    error instanceof ApiError && error.retryAfter !== null ? error.retryAfter * 1000 : 0;
  return Math.min(timing.errorMaxMs, Math.max(jittered, hinted));
}

/** Delay before the next poll, or false to stop polling. */
export function nextPollDelay(
  snapshot: JobSnapshot | undefined,
  queryStatus: 'pending' | 'error' | 'success',
  error: unknown,
  longPoll: boolean,
  timing: PollTiming = POLL_TIMING,
): number | false {
  if (snapshot && isTerminal(snapshot.job.status)) return false;
  if (queryStatus === 'error') return isPermanentPollError(error) ? false : timing.errorMaxMs;
  return longPoll ? timing.longPollGapMs : timing.shortPollMs;
}

/**
 * Which active jobs get a long-poll slot: processing jobs first (they finish soonest), then
 * the oldest queued ones.
 */
export function longPollSlots(jobs: readonly Job[], max: number): Set<string> {
  const rank = (job: Job) => (job.status === 'processing' ? 0 : 1);
  const active = jobs
    .filter((job) => !isTerminal(job.status))
    .sort((a, b) => rank(a) - rank(b) || a.created_at.localeCompare(b.created_at));
  return new Set(active.slice(0, Math.max(0, max)).map((job) => job.id));
}

/** TanStack Query options that keep `['job', id]` up to date until the job is terminal. */
export function jobPollOptions(
  queryClient: QueryClient,
  api: ApiClient,
  initial: Job,
  { longPoll, timing = POLL_TIMING }: { longPoll: boolean; timing?: PollTiming },
): QueryObserverOptions<JobSnapshot, Error, JobSnapshot, JobSnapshot, readonly string[]> {
  const key = jobKeys.one(initial.id);
  const terminalQuery = (query: Query<JobSnapshot, Error, JobSnapshot, readonly string[]>) => {
    const data = query.state.data;
    return data !== undefined && isTerminal(data.job.status);
  };
  return {
    queryKey: key,
    queryFn: async ({ signal }) => {
      const previous = queryClient.getQueryData<JobSnapshot>(key) ?? { job: initial, etag: null };
      if (isTerminal(previous.job.status)) return previous;
      // Without an ETag the API cannot tell what we already know: ask for the state now.
      const waitSeconds = longPoll && previous.etag ? timing.longPollWaitSeconds : 0;
      const outcome = await pollJob(api, initial.id, {
        etag: previous.etag,
        waitSeconds,
        signal,
      });
      return outcome.changed ? { job: outcome.job, etag: outcome.etag } : previous;
    },
    initialData: { job: initial, etag: null },
    // The list answer may be old: treat it as stale so an active job is asked about at once.
    initialDataUpdatedAt: 0,
    staleTime: 0,
    enabled: !isTerminal(initial.status),
    refetchInterval: (query) =>
      nextPollDelay(query.state.data, query.state.status, query.state.error, longPoll, timing),
    refetchIntervalInBackground: false,
    refetchOnWindowFocus: (query) => !terminalQuery(query),
    refetchOnReconnect: (query) => !terminalQuery(query),
    retry: (failureCount, error) => shouldRetryPoll(failureCount, error, timing),
    retryDelay: (attempt, error) => backoffDelay(attempt, error, timing),
  };
}

/**
 * Abort the job polls in flight whenever the tab is hidden; TanStack resumes them on focus
 * (refetchOnWindowFocus). Returns the unsubscribe function.
 */
export function pausePollingWhileHidden(queryClient: QueryClient): () => void {
  return focusManager.subscribe((focused) => {
    if (!focused) void queryClient.cancelQueries({ queryKey: jobKeys.all });
  });
}
