'use client';

import { useQuery, useQueryClient } from '@tanstack/react-query';
import { ArrowRight, Ban, Download, Loader2, Trash2 } from 'lucide-react';
import * as React from 'react';

import { JobStatusBadge, STATUS_LABELS } from '@/components/jobs/job-status-badge';
import { JobThumbnail } from '@/components/jobs/job-thumbnail';
import { useJobActions } from '@/components/jobs/use-job-actions';
import { useAnnounce } from '@/components/providers/announcer';
import { Button } from '@/components/ui/button';
import { getApiClient } from '@/lib/api/client';
import { ApiError } from '@/lib/api/errors';
import { isTerminal, type Job } from '@/lib/api/types';
import { formatBytes, formatDimensions, formatDuration, savingPercent } from '@/lib/format';
import { useNow } from '@/lib/hooks/use-now';
import { forgetJob, updateListedJob } from '@/lib/jobs/cache';
import { canonicalFormat } from '@/lib/jobs/files';
import { jobPollOptions } from '@/lib/jobs/poll';
import { cn } from '@/lib/utils';

function elapsedText(job: Job, now: number): string {
  const created = Date.parse(job.created_at);
  if (Number.isNaN(created)) return '';
  const started = job.started_at ? Date.parse(job.started_at) : null;
  const finished = job.finished_at ? Date.parse(job.finished_at) : null;
  switch (job.status) {
    case 'queued':
      return `waiting ${formatDuration(now - created)}`;
    case 'processing':
      return `converting ${formatDuration(now - (started ?? created))}`;
    default:
      return finished ? `took ${formatDuration(finished - created)}` : '';
  }
}

function SizeLine({ job }: { job: Job }) {
  const saving = savingPercent(job.source_bytes, job.result_bytes);
  if (job.status !== 'completed') {
    return <span>{formatBytes(job.source_bytes)}</span>;
  }
  return (
    <span className="inline-flex flex-wrap items-center gap-x-1">
      <span>{formatBytes(job.source_bytes)}</span>
      <ArrowRight className="h-3 w-3" aria-label="to" />
      <span>{formatBytes(job.result_bytes)}</span>
      {saving !== null && (
        <span
          className={cn('font-medium', saving >= 0 ? 'text-success' : 'text-warning')}
          data-testid="job-saving"
        >
          ({saving >= 0 ? `−${saving}` : `+${Math.abs(saving)}`}%)
        </span>
      )}
    </span>
  );
}

/** One conversion: thumbnails, status, sizes, and its actions. Polls itself until terminal. */
export function JobCard({ job: listed, longPoll }: { job: Job; longPoll: boolean }) {
  const queryClient = useQueryClient();
  const announce = useAnnounce();
  const { data, error } = useQuery(
    jobPollOptions(queryClient, getApiClient(), listed, { longPoll }),
  );
  const job = data?.job ?? listed;
  const terminal = isTerminal(job.status);
  const now = useNow(1000, !terminal);
  const { download, remove } = useJobActions(job);

  // Mirror news from the poll into the lists, and say it to screen readers.
  const lastStatus = React.useRef(job.status);
  React.useEffect(() => {
    if (data?.job && data.job !== listed) updateListedJob(queryClient, data.job);
  }, [data?.job, listed, queryClient]);
  // Deleted elsewhere (another tab, the retention sweep): it is gone here too.
  React.useEffect(() => {
    if (error instanceof ApiError && error.status === 404) forgetJob(queryClient, listed.id);
  }, [error, listed.id, queryClient]);
  React.useEffect(() => {
    if (lastStatus.current === job.status) return;
    lastStatus.current = job.status;
    const reason = job.status === 'failed' && job.error ? `: ${job.error.message}` : '';
    announce(`${job.filename}: ${STATUS_LABELS[job.status].toLowerCase()}${reason}`);
  }, [announce, job.error, job.filename, job.status]);

  const source = canonicalFormat(job.source_format).toUpperCase() || '?';
  const target = canonicalFormat(job.target_format).toUpperCase();
  const titleId = `job-${job.id}-title`;
  const dimensions = formatDimensions(job);

  return (
    <li
      className="flex gap-3 rounded-lg border bg-card p-3 shadow-sm"
      aria-labelledby={titleId}
      data-testid="job-card"
      data-job-id={job.id}
      data-status={job.status}
    >
      <div className="flex shrink-0 items-center gap-1.5">
        {/* Phones show one thumbnail: the result once there is one, else the original. */}
        <JobThumbnail
          job={job}
          kind="source"
          className={job.status === 'completed' ? 'hidden sm:flex' : undefined}
        />
        <ArrowRight className="hidden h-4 w-4 text-muted-foreground sm:block" aria-hidden />
        <JobThumbnail
          job={job}
          kind="result"
          className={job.status === 'completed' ? undefined : 'hidden sm:flex'}
        />
      </div>
      <div className="flex min-w-0 flex-1 flex-col gap-1">
        <div className="flex items-start justify-between gap-2">
          <h3 id={titleId} className="truncate text-sm font-medium" title={job.filename}>
            {job.filename}
          </h3>
          <JobStatusBadge status={job.status} className="shrink-0" />
        </div>
        <div className="flex flex-wrap items-center gap-x-3 gap-y-0.5 text-xs text-muted-foreground">
          <span>
            {source} → {target}
          </span>
          <SizeLine job={job} />
          {dimensions && <span data-testid="job-dimensions">{dimensions}</span>}
          <span className="tabular-nums">{elapsedText(job, now)}</span>
        </div>
        {job.status === 'failed' && job.error && (
          <p className="text-xs text-destructive" data-testid="job-error">
            {job.error.message}
          </p>
        )}
        <div className="mt-1 flex flex-wrap gap-2">
          {job.status === 'completed' && (
            <Button
              size="sm"
              variant="secondary"
              onClick={() => download.mutate()}
              disabled={download.isPending}
              aria-label={`Download ${job.filename} as ${target}`}
              data-testid="job-download"
            >
              {download.isPending ? <Loader2 className="animate-spin" aria-hidden /> : <Download aria-hidden />}
              Download
            </Button>
          )}
          {terminal ? (
            <Button
              size="sm"
              variant="ghost"
              onClick={() => remove.mutate()}
              disabled={remove.isPending}
              aria-label={`Delete ${job.filename}`}
              data-testid="job-delete"
            >
              <Trash2 aria-hidden />
              Delete
            </Button>
          ) : (
            <Button
              size="sm"
              variant="outline"
              onClick={() => remove.mutate()}
              disabled={remove.isPending}
              aria-label={`Cancel ${job.filename}`}
              data-testid="job-cancel"
            >
              <Ban aria-hidden />
              Cancel
            </Button>
          )}
        </div>
        {(download.isError || remove.isError) && (
          <p className="text-xs text-destructive" role="alert">
            {(download.error ?? remove.error)?.message}
          </p>
        )}
      </div>
    </li>
  );
}
