/** Where jobs live in the TanStack Query cache, and how uploads and polls keep lists current. */
import type { QueryClient } from '@tanstack/react-query';

import type { Job, JobPage, JobStatus } from '@/lib/api/types';
import { jobKeys } from '@/lib/jobs/poll';

export const RECENT_LIMIT = 50;

export const jobListKeys = {
  all: ['jobs'] as const,
  recent: ['jobs', 'recent'] as const,
  history: (status: JobStatus | null, cursor: string | null, limit: number) =>
    ['jobs', 'history', status ?? 'all', cursor ?? '', limit] as const,
};

/** New jobs from an upload go to the top of the recent list. */
export function addRecentJobs(queryClient: QueryClient, jobs: readonly Job[]): void {
  queryClient.setQueryData<JobPage>(jobListKeys.recent, (page) => {
    const existing = page?.items ?? [];
    const ids = new Set(jobs.map((job) => job.id));
    return {
      items: [...jobs, ...existing.filter((job) => !ids.has(job.id))],
      next_cursor: page?.next_cursor ?? null,
    };
  });
}

/** A poll saw a new state: mirror it into every list that shows the job. */
export function updateListedJob(queryClient: QueryClient, job: Job): void {
  queryClient.setQueriesData<JobPage>({ queryKey: jobListKeys.all }, (page) => {
    if (!page || !page.items.some((item) => item.id === job.id)) return page;
    return { ...page, items: page.items.map((item) => (item.id === job.id ? job : item)) };
  });
}

export function forgetJob(queryClient: QueryClient, id: string): void {
  queryClient.setQueriesData<JobPage>({ queryKey: jobListKeys.all }, (page) =>
    page ? { ...page, items: page.items.filter((item) => item.id !== id) } : page,
  );
  queryClient.removeQueries({ queryKey: jobKeys.one(id) });
  queryClient.removeQueries({ queryKey: ['job-file', id] });
}
