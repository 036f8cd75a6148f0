'use client';

import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Archive, Loader2, RefreshCw } from 'lucide-react';
import * as React from 'react';

import { JobCard } from '@/components/jobs/job-card';
import { jobFileQuery } from '@/components/jobs/use-job-actions';
import { useAnnounce } from '@/components/providers/announcer';
import { Button } from '@/components/ui/button';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '@/components/ui/card';
import { getApiClient } from '@/lib/api/client';
import type { Job } from '@/lib/api/types';
import { MAX_LONG_POLLS } from '@/lib/config';
import { RECENT_LIMIT, jobListKeys } from '@/lib/jobs/cache';
import { resultFilename, saveBlob, zipFiles } from '@/lib/jobs/files';
import { longPollSlots } from '@/lib/jobs/poll';

export function useRecentJobs() {
  return useQuery({
    queryKey: jobListKeys.recent,
    queryFn: ({ signal }) => getApiClient().listJobs({ limit: RECENT_LIMIT, signal }),
    staleTime: 30_000,
  });
}

function useDownloadAll(completed: readonly Job[]) {
  const queryClient = useQueryClient();
  const announce = useAnnounce();
  const [done, setDone] = React.useState(0);
  const mutation = useMutation({
    mutationFn: async () => {
      setDone(0);
      const files: { name: string; blob: Blob }[] = [];
      // One at a time: keeps connections free for polls and uploads.
      for (const job of completed) {
        const file = await queryClient.fetchQuery(jobFileQuery(job.id, 'result'));
        files.push({ name: resultFilename(job), blob: file.blob });
        setDone((count) => count + 1);
      }
      const [only] = files;
      if (files.length === 1 && only) {
        saveBlob(only.blob, only.name);
      } else {
        const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
        saveBlob(await zipFiles(files), `imgconv-${stamp}.zip`);
      }
    },
    onSuccess: () => announce(`Downloaded ${completed.length} converted images`),
    onError: (error) => announce(`Download failed: ${error.message}`),
  });
  return { ...mutation, done };
}

/** The client's recent conversions, live. */
export function RecentJobs() {
  const { data, isPending, isError, error, refetch, isFetching } = useRecentJobs();
  const jobs = React.useMemo(() => data?.items ?? [], [data]);
  const slots = React.useMemo(() => longPollSlots(jobs, MAX_LONG_POLLS), [jobs]);
  const completed = React.useMemo(() => jobs.filter((job) => job.status === 'completed'), [jobs]);
  const active = jobs.filter((job) => job.status === 'queued' || job.status === 'processing').length;
  const downloadAll = useDownloadAll(completed);

  return (
    <Card aria-labelledby="recent-jobs-title">
      <CardHeader className="flex-row flex-wrap items-center justify-between gap-2 space-y-0">
        <div className="flex flex-col gap-1.5">
          <CardTitle id="recent-jobs-title">Conversions</CardTitle>
          <CardDescription>
            {isPending
              ? 'Loading…'
              : jobs.length === 0
                ? 'Nothing yet.'
                : `${completed.length} completed${active ? `, ${active} in progress` : ''}`}
          </CardDescription>
        </div>
        <div className="flex gap-2">
          <Button
            variant="ghost"
            size="icon"
            onClick={() => void refetch()}
            aria-label="Refresh the list"
            disabled={isFetching}
          >
            <RefreshCw className={isFetching ? 'animate-spin motion-reduce:animate-none' : ''} aria-hidden />
          </Button>
          <Button
            variant="outline"
            size="sm"
            disabled={completed.length === 0 || downloadAll.isPending}
            onClick={() => downloadAll.mutate()}
            data-testid="download-all"
          >
            {downloadAll.isPending ? <Loader2 className="animate-spin" aria-hidden /> : <Archive aria-hidden />}
            {downloadAll.isPending
              ? `Preparing ${downloadAll.done}/${completed.length}`
              : `Download all${completed.length ? ` (${completed.length})` : ''}`}
          </Button>
        </div>
      </CardHeader>
      <CardContent>
        {isError ? (
          <div className="flex flex-col items-start gap-2 rounded-md border border-destructive/40 p-3 text-sm" role="alert">
            <p>Could not load your conversions: {error.message}</p>
            <Button size="sm" variant="outline" onClick={() => void refetch()}>
              Try again
            </Button>
          </div>
        ) : isPending ? (
          <ul className="flex flex-col gap-2" aria-busy="true" aria-label="Loading conversions">
            {[0, 1, 2].map((n) => (
              <li key={n} className="h-20 animate-pulse rounded-lg bg-muted" />
            ))}
          </ul>
        ) : jobs.length === 0 ? (
          <p className="rounded-md border border-dashed p-6 text-center text-sm text-muted-foreground">
            Converted images appear here. They stay after a reload.
          </p>
        ) : (
          <ul className="flex flex-col gap-2" data-testid="job-list">
            {jobs.map((job) => (
              <JobCard key={job.id} job={job} longPoll={slots.has(job.id)} />
            ))}
          </ul>
        )}
        {downloadAll.isError && (
          <p className="mt-2 text-sm text-destructive" role="alert">
            Download failed: {downloadAll.error.message}
          </p>
        )}
      </CardContent>
    </Card>
  );
}
