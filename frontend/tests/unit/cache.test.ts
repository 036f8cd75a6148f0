import { QueryClient } from '@tanstack/react-query';
import { describe, expect, it } from 'vitest';

import type { JobPage } from '@/lib/api/types';
import { addRecentJobs, forgetJob, jobListKeys, updateListedJob } from '@/lib/jobs/cache';
import { jobKeys, type JobSnapshot } from '@/lib/jobs/poll';

import { makeJob } from './helpers';

const a = makeJob({ id: 'a' });
const b = makeJob({ id: 'b' });

describe('job lists in the query cache', () => {
  it('puts uploaded jobs on top of the recent list without duplicates', () => {
    const client = new QueryClient();
    client.setQueryData<JobPage>(jobListKeys.recent, { items: [a], next_cursor: 'n' });
    addRecentJobs(client, [b, a]);
    const page = client.getQueryData<JobPage>(jobListKeys.recent);
    expect(page?.items.map((job) => job.id)).toEqual(['b', 'a']);
    expect(page?.next_cursor).toBe('n');
  });

  it('mirrors a polled job into every list that shows it', () => {
    const client = new QueryClient();
    client.setQueryData<JobPage>(jobListKeys.recent, { items: [a, b], next_cursor: null });
    client.setQueryData<JobPage>(jobListKeys.history(null, null, 20), { items: [b], next_cursor: null });
    client.setQueryData<JobPage>(jobListKeys.history('failed', null, 20), { items: [], next_cursor: null });
    const done = { ...b, status: 'completed' as const };
    updateListedJob(client, done);
    expect(client.getQueryData<JobPage>(jobListKeys.recent)?.items[1]?.status).toBe('completed');
    expect(client.getQueryData<JobPage>(jobListKeys.history(null, null, 20))?.items[0]?.status).toBe('completed');
    expect(client.getQueryData<JobPage>(jobListKeys.history('failed', null, 20))?.items).toEqual([]);
  });

  it('forgets a deleted job everywhere, its poll and its files included', () => {
    const client = new QueryClient();
    client.setQueryData<JobPage>(jobListKeys.recent, { items: [a, b], next_cursor: null });
    client.setQueryData<JobSnapshot>(jobKeys.one('a'), { job: a, etag: '"1"' });
    client.setQueryData(['job-file', 'a', 'result'], { blob: new Blob(), filename: null });
    forgetJob(client, 'a');
    expect(client.getQueryData<JobPage>(jobListKeys.recent)?.items.map((job) => job.id)).toEqual(['b']);
    expect(client.getQueryData(jobKeys.one('a'))).toBeUndefined();
    expect(client.getQueryData(['job-file', 'a', 'result'])).toBeUndefined();
  });
});
