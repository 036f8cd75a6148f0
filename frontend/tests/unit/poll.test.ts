import { QueryClient, QueryObserver, focusManager } from '@tanstack/react-query';
import { afterEach, describe, expect, it } from 'vitest';

import { ApiError } from '@/lib/api/errors';
import type { PollTiming } from '@/lib/config';
import {
  backoffDelay,
  jobPollOptions,
  longPollSlots,
  nextPollDelay,
  pausePollingWhileHidden,
  pollJob,
  type JobSnapshot,
} from '@/lib/jobs/poll';

import {
  apiWith,
  delay,
  errorResponse,
  eventually,
  jobResponse,
  makeJob,
  notModified,
  scriptedFetch,
  type Recorded,
} from './helpers';

const FAST: PollTiming = {
  longPollWaitSeconds: 25,
  longPollGapMs: 5,
  shortPollMs: 40,
  errorBaseMs: 10,
  errorMaxMs: 60,
  maxRetries: 3,
};

const cleanups: (() => void)[] = [];
afterEach(() => {
  cleanups.splice(0).forEach((cleanup) => cleanup());
  focusManager.setFocused(undefined);
});

function watch(fetchImpl: typeof fetch, job = makeJob(), longPoll = true) {
  const queryClient = new QueryClient();
  const api = apiWith(fetchImpl);
  const observer = new QueryObserver<JobSnapshot, Error, JobSnapshot, JobSnapshot, readonly string[]>(
    queryClient,
    jobPollOptions(queryClient, api, job, { longPoll, timing: FAST }),
  );
  const unsubscribe = observer.subscribe(() => undefined);
  const stopHidden = pausePollingWhileHidden(queryClient);
  cleanups.push(() => {
    unsubscribe();
    stopHidden();
    queryClient.clear();
  });
  return { observer, queryClient };
}

function waitParam(request: Recorded): string | null {
  return new URL(request.url, 'http://x').searchParams.get('wait');
}

/** A long poll the "server" holds until the client gives up. */
function heldUntilAborted(request: Recorded): Promise<Response> {
  return new Promise((_, reject) => {
    request.signal?.addEventListener('abort', () =>
      reject(new DOMException('aborted', 'AbortError')),
    );
  });
}

describe('pollJob', () => {
  it('sends the ETag and the wait, and reports a 304 as unchanged', async () => {
    const { fetchImpl, requests } = scriptedFetch(() => notModified('"v1"'));
    const outcome = await pollJob(apiWith(fetchImpl), 'abc', { etag: '"v1"', waitSeconds: 25 });
    expect(outcome).toEqual({ changed: false });
    expect(requests[0]?.url).toBe('/api/v1/jobs/abc?wait=25');
    expect(requests[0]?.headers.get('If-None-Match')).toBe('"v1"');
    expect(requests[0]?.headers.get('Authorization')).toBe('Bearer t1');
  });

  it('returns the new job and its ETag on 200', async () => {
    const job = makeJob({ status: 'processing' });
    const { fetchImpl, requests } = scriptedFetch(() => jobResponse(job, '"v2"'));
    const outcome = await pollJob(apiWith(fetchImpl), job.id, { etag: null, waitSeconds: 0 });
    expect(outcome).toEqual({ changed: true, job, etag: '"v2"' });
    expect(requests[0]?.headers.has('If-None-Match')).toBe(false);
    expect(waitParam(requests[0]!)).toBeNull();
  });
});

describe('job polling with TanStack Query', () => {
  it('long-polls with the ETag until the job is terminal, then stops', async () => {
    const job = makeJob();
    let call = 0;
    const { fetchImpl, requests } = scriptedFetch(() => {
      call++;
      if (call === 1) return jobResponse({ ...job, status: 'processing' }, '"v1"');
      if (call === 2) return notModified('"v1"');
      return jobResponse({ ...job, status: 'completed', result_bytes: 10 }, '"v2"');
    });
    const { observer } = watch(fetchImpl, job);

    await eventually(() => expect(observer.getCurrentResult().data?.job.status).toBe('completed'));
    await delay(150);

    expect(requests).toHaveLength(3);
    // First ask for the state now (no ETag yet), then hold with the ETag we got.
    expect(waitParam(requests[0]!)).toBeNull();
    expect(waitParam(requests[1]!)).toBe('25');
    expect(requests[1]?.headers.get('If-None-Match')).toBe('"v1"');
    expect(requests[2]?.headers.get('If-None-Match')).toBe('"v1"');
    expect(observer.getCurrentResult().data?.etag).toBe('"v2"');
  });

  it('keeps the data it has when the server answers 304', async () => {
    const job = makeJob({ status: 'processing' });
    let call = 0;
    const { fetchImpl } = scriptedFetch(() => {
      call++;
      return call === 1 ? jobResponse(job, '"v1"') : notModified('"v1"');
    });
    const { observer } = watch(fetchImpl, job);
    await eventually(() => expect(call).toBeGreaterThanOrEqual(4));
    expect(observer.getCurrentResult().data).toEqual({ job, etag: '"v1"' });
  });

  it('polls jobs without a long-poll slot with wait=0 at the short interval', async () => {
    const job = makeJob();
    const { fetchImpl, requests } = scriptedFetch(() => jobResponse(job, '"v1"'));
    const times: number[] = [];
    const timed: typeof fetch = (input, init) => {
      times.push(Date.now());
      return fetchImpl(input, init);
    };
    watch(timed, job, false);
    await eventually(() => expect(requests.length).toBeGreaterThanOrEqual(3));
    expect(requests.every((request) => waitParam(request) === null)).toBe(true);
    expect(requests[1]?.headers.get('If-None-Match')).toBe('"v1"');
    expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(FAST.shortPollMs - 5);
  });

  it('backs off and retries after server errors, then recovers', async () => {
    const job = makeJob();
    const times: number[] = [];
    const { fetchImpl, requests } = scriptedFetch(() => {
      times.push(Date.now());
      if (times.length <= 2) return errorResponse(503, 'service_unavailable', 'busy');
      return jobResponse({ ...job, status: 'completed' }, '"v3"');
    });
    const { observer } = watch(fetchImpl, job);
    await eventually(() => expect(observer.getCurrentResult().data?.job.status).toBe('completed'));
    expect(requests).toHaveLength(3);
    // Exponential with jitter: at least half of 10 ms, then half of 20 ms.
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(4);
    expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(9);
  });

  it('stops at once when the job is gone (404)', async () => {
    const { fetchImpl, requests } = scriptedFetch(() =>
      errorResponse(404, 'job_not_found', 'no such job'),
    );
    const { observer } = watch(fetchImpl);
    await eventually(() => expect(observer.getCurrentResult().status).toBe('error'));
    await delay(150);
    expect(requests).toHaveLength(1);
    expect(observer.getCurrentResult().error).toBeInstanceOf(ApiError);
  });

  it('does not poll terminal jobs at all', async () => {
    const { fetchImpl, requests } = scriptedFetch(() => {
      throw new Error('must not be called');
    });
    watch(fetchImpl, makeJob({ status: 'completed' }));
    await delay(80);
    expect(requests).toHaveLength(0);
  });

  it('aborts the long poll while the tab is hidden and resumes when it is shown', async () => {
    const job = makeJob();
    let call = 0;
    const { fetchImpl, requests } = scriptedFetch((request) => {
      call++;
      if (call === 1) return jobResponse({ ...job, status: 'processing' }, '"v1"');
      if (call === 2) return heldUntilAborted(request);
      return jobResponse({ ...job, status: 'completed' }, '"v2"');
    });
    const { observer } = watch(fetchImpl, job);
    await eventually(() => expect(requests).toHaveLength(2));
    expect(requests[1]?.signal?.aborted).toBe(false);

    focusManager.setFocused(false);
    await eventually(() => expect(requests[1]?.signal?.aborted).toBe(true));
    await delay(150);
    expect(requests).toHaveLength(2);

    focusManager.setFocused(true);
    await eventually(() => expect(observer.getCurrentResult().data?.job.status).toBe('completed'));
    expect(requests).toHaveLength(3);
  });
});

describe('polling decisions', () => {
  it('gives long-poll slots to processing jobs first, then the oldest queued', () => {
    const jobs = [
      makeJob({ id: 'new-queued', status: 'queued', created_at: '2026-11-28T04:00:03Z' }),
      makeJob({ id: 'done', status: 'completed', created_at: '2026-11-28T04:00:00Z' }),
      makeJob({ id: 'old-queued', status: 'queued', created_at: '2026-11-28T04:00:01Z' }),
      makeJob({ id: 'running', status: 'processing', created_at: '2026-11-28T04:00:02Z' }),
    ];
    expect([...longPollSlots(jobs, 2)]).toEqual(['running', 'old-queued']);
    expect(longPollSlots(jobs, 0).size).toBe(0);
  });

  it('stops on terminal jobs and permanent errors, slows down on others', () => {
    const snapshot = (status: 'queued' | 'completed') => ({ job: makeJob({ status }), etag: null });
    expect(nextPollDelay(snapshot('completed'), 'success', null, true, FAST)).toBe(false);
    expect(nextPollDelay(snapshot('queued'), 'success', null, true, FAST)).toBe(FAST.longPollGapMs);
    expect(nextPollDelay(snapshot('queued'), 'success', null, false, FAST)).toBe(FAST.shortPollMs);
    const gone = new ApiError(404, 'job_not_found', 'gone');
    expect(nextPollDelay(snapshot('queued'), 'error', gone, true, FAST)).toBe(false);
    const down = new ApiError(502, 'api_unreachable', 'down');
    expect(nextPollDelay(snapshot('queued'), 'error', down, true, FAST)).toBe(FAST.errorMaxMs);
  });

  it('backs off exponentially with jitter, capped, and honours Retry-After', () => {
    expect(backoffDelay(0, null, FAST, () => 1)).toBe(10);
    expect(backoffDelay(2, null, FAST, () => 1)).toBe(40);
    expect(backoffDelay(2, null, FAST, () => 0)).toBe(20);
    expect(backoffDelay(10, null, FAST, () => 1)).toBe(FAST.errorMaxMs);
    const limited = new ApiError(429, 'rate_limited', 'slow down', null, 0.05);
    expect(backoffDelay(0, limited, FAST, () => 0)).toBe(50);
  });
});
