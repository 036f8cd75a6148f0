'use client';

import { useMutation, useQueryClient } from '@tanstack/react-query';

import { useAnnounce } from '@/components/providers/announcer';
import { getApiClient } from '@/lib/api/client';
import { ApiError } from '@/lib/api/errors';
import { isTerminal, type Job } from '@/lib/api/types';
import { forgetJob, updateListedJob } from '@/lib/jobs/cache';
import { resultFilename, saveBlob } from '@/lib/jobs/files';
import { jobKeys, type JobSnapshot } from '@/lib/jobs/poll';

export const jobFileKey = (id: string, kind: 'result' | 'source') => ['job-file', id, kind] as const;

/** Fetch a job's converted or original bytes once and keep them for thumbnails and downloads. */
export function jobFileQuery(id: string, kind: 'result' | 'source') {
  return {
    queryKey: jobFileKey(id, kind),
    queryFn: ({ signal }: { signal: AbortSignal }) => getApiClient().file(id, kind, signal),
    staleTime: Infinity,
    gcTime: 10 * 60_000,
  };
}

/** Download, cancel and delete for one job. */
export function useJobActions(job: Job) {
  const queryClient = useQueryClient();
  const announce = useAnnounce();

  const download = useMutation({
    mutationFn: async () => {
      const file = await queryClient.fetchQuery(jobFileQuery(job.id, 'result'));
      saveBlob(file.blob, resultFilename(job));
    },
    onError: (error) => announce(`Download of ${job.filename} failed: ${error.message}`),
  });

  const remove = useMutation({
    mutationFn: async () => {
      const api = getApiClient();
      try {
        // A running job is canceled and stays listed with its final state; a finished one goes.
        if (!isTerminal(job.status)) return await api.cancelJob(job.id);
        await api.deleteJob(job.id);
      } catch (error) {
        // Already gone is what we wanted.
        if (!(error instanceof ApiError && error.status === 404)) throw error;
      }
      return null;
    },
    onSuccess: (updated) => {
      if (updated) {
        queryClient.setQueryData<JobSnapshot>(jobKeys.one(job.id), (previous) => ({
          job: updated,
          etag: previous?.etag ?? null,
        }));
        updateListedJob(queryClient, updated);
        if (!isTerminal(updated.status)) void queryClient.invalidateQueries({ queryKey: jobKeys.one(job.id) });
        announce(`${job.filename}: cancel requested`);
      } else {
        forgetJob(queryClient, job.id);
        announce(`${job.filename} deleted`);
      }
    },
    onError: (error) => announce(`Could not remove ${job.filename}: ${error.message}`),
  });

  return { download, remove };
}
