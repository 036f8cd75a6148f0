'use client';

import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { ChevronLeft, ChevronRight, Download, Trash2 } from 'lucide-react';
import { usePathname, useRouter, useSearchParams } from 'next/navigation';
import * as React from 'react';

import { JobStatusBadge, STATUS_LABELS } from '@/components/jobs/job-status-badge';
import { useJobActions } from '@/components/jobs/use-job-actions';
import { Button } from '@/components/ui/button';
import { Card, CardContent, CardDescription, CardHeader } from '@/components/ui/card';
import { Label } from '@/components/ui/label';
import { NativeSelect } from '@/components/ui/native-select';
import { getApiClient } from '@/lib/api/client';
import { JOB_STATUSES, isTerminal, type Job, type JobStatus } from '@/lib/api/types';
import { formatBytes, formatDateTime, savingPercent } from '@/lib/format';
import { jobListKeys } from '@/lib/jobs/cache';
import { canonicalFormat } from '@/lib/jobs/files';

const PAGE_SIZE = 20;
const ALL = 'all';

/** `?per_page=` (1-100), for people who want longer pages; the default otherwise. */
function parsePageSize(value: string | null): number {
  const size = Number(value);
  return Number.isInteger(size) && size >= 1 && size <= 100 ? size : PAGE_SIZE;
}

function parseStatus(value: string | null): JobStatus | null {
  return (JOB_STATUSES as readonly string[]).includes(value ?? '') ? (value as JobStatus) : null;
}

function HistoryRow({ job }: { job: Job }) {
  const { download, remove } = useJobActions(job);
  const saving = savingPercent(job.source_bytes, job.result_bytes);
  return (
    <tr className="border-b last:border-0" data-testid="history-row" data-status={job.status}>
      <td className="max-w-[12rem] py-2.5 pr-3 sm:max-w-xs">
        <div className="truncate font-medium" title={job.filename}>
          {job.filename}
        </div>
        <div className="text-xs text-muted-foreground">
          {canonicalFormat(job.source_format).toUpperCase() || '?'} →{' '}
          {canonicalFormat(job.target_format).toUpperCase()}
          {job.error ? ` · ${job.error.message}` : ''}
        </div>
      </td>
      <td className="py-2.5 pr-3">
        <JobStatusBadge status={job.status} />
      </td>
      <td className="hidden py-2.5 pr-3 text-xs tabular-nums text-muted-foreground md:table-cell">
        {formatBytes(job.source_bytes)}
        {job.result_bytes !== null && (
          <>
            {' → '}
            {formatBytes(job.result_bytes)}
            {saving !== null && ` (${saving >= 0 ? '−' : '+'}${Math.abs(saving)}%)`}
          </>
        )}
      </td>
      <td className="hidden py-2.5 pr-3 text-xs text-muted-foreground sm:table-cell">
        <time dateTime={job.created_at}>{formatDateTime(job.created_at)}</time>
      </td>
      <td className="py-2.5 text-right">
        <div className="flex justify-end gap-1">
          {job.status === 'completed' && (
            <Button
              size="icon"
              variant="ghost"
              onClick={() => download.mutate()}
              disabled={download.isPending}
              aria-label={`Download ${job.filename}`}
            >
              <Download aria-hidden />
            </Button>
          )}
          <Button
            size="icon"
            variant="ghost"
            onClick={() => remove.mutate()}
            disabled={remove.isPending}
            aria-label={isTerminal(job.status) ? `Delete ${job.filename}` : `Cancel ${job.filename}`}
          >
            <Trash2 aria-hidden />
          </Button>
        </div>
      </td>
    </tr>
  );
}

/** Every job of this client, newest first, a page at a time (keyset cursor), by status. */
export function HistoryView() {
  const router = useRouter();
  const pathname = usePathname();
  const searchParams = useSearchParams();
  const status = parseStatus(searchParams.get('status'));
  const pageSize = parsePageSize(searchParams.get('per_page'));
  // Cursors of the pages before the current one; the API only pages forward.
  const [cursors, setCursors] = React.useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1] ?? null;
  const headingRef = React.useRef<HTMLHeadingElement>(null);

  React.useEffect(() => setCursors([null]), [status, pageSize]);

  const { data, isPending, isError, error, isFetching, refetch, isPlaceholderData } = useQuery({
    queryKey: jobListKeys.history(status, cursor, pageSize),
    queryFn: ({ signal }) => getApiClient().listJobs({ limit: pageSize, cursor, status, signal }),
    placeholderData: keepPreviousData,
    refetchInterval: (query) =>
      query.state.data?.items.some((job) => !isTerminal(job.status)) ? 5000 : false,
  });

  const setStatus = (value: string) => {
    const params = new URLSearchParams(searchParams.toString());
    if (value === ALL) params.delete('status');
    else params.set('status', value);
    const query = params.toString();
    router.replace(query ? `${pathname}?${query}` : pathname, { scroll: false });
  };

  const page = cursors.length;
  const go = (next: (string | null)[]) => {
    setCursors(next);
    headingRef.current?.focus();
  };

  return (
    <Card>
      <CardHeader className="flex-row flex-wrap items-end justify-between gap-3 space-y-0">
        <div className="flex flex-col gap-1.5">
          {/* The page's h1, focused after paging so screen readers start at the top. */}
          <h1
            ref={headingRef}
            tabIndex={-1}
            className="text-base font-semibold leading-none tracking-tight outline-none"
          >
            History
          </h1>
          <CardDescription>All your conversions, newest first.</CardDescription>
        </div>
        <div className="flex w-full flex-col gap-2 sm:w-48">
          <Label htmlFor="status-filter">Status</Label>
          <NativeSelect
            id="status-filter"
            value={status ?? ALL}
            onChange={(event) => setStatus(event.currentTarget.value)}
            data-testid="status-filter"
          >
            <option value={ALL}>All statuses</option>
            {JOB_STATUSES.map((value) => (
              <option key={value} value={value}>
                {STATUS_LABELS[value]}
              </option>
            ))}
          </NativeSelect>
        </div>
      </CardHeader>
      <CardContent>
        {isError ? (
          <div className="flex flex-col items-start gap-2 text-sm" role="alert">
            <p>Could not load the history: {error.message}</p>
            <Button size="sm" variant="outline" onClick={() => void refetch()}>
              Try again
            </Button>
          </div>
        ) : (
          <div className="overflow-x-auto" aria-busy={isPending || (isFetching && isPlaceholderData)}>
            <table className="w-full text-sm">
              <caption className="sr-only">
                Conversions{status ? ` with status ${STATUS_LABELS[status]}` : ''}, page {page}
              </caption>
              <thead>
                <tr className="border-b text-left text-xs text-muted-foreground">
                  <th scope="col" className="py-2 pr-3 font-medium">File</th>
                  <th scope="col" className="py-2 pr-3 font-medium">Status</th>
                  <th scope="col" className="hidden py-2 pr-3 font-medium md:table-cell">Size</th>
                  <th scope="col" className="hidden py-2 pr-3 font-medium sm:table-cell">Created</th>
                  <th scope="col" className="py-2 text-right font-medium">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody className={isPlaceholderData ? 'opacity-60' : undefined}>
                {isPending ? (
                  <tr>
                    <td colSpan={5} className="py-8 text-center text-muted-foreground">
                      Loading…
                    </td>
                  </tr>
                ) : data.items.length === 0 ? (
                  <tr>
                    <td colSpan={5} className="py-8 text-center text-muted-foreground">
                      No conversions{status ? ` with status “${STATUS_LABELS[status]}”` : ''}.
                    </td>
                  </tr>
                ) : (
                  data.items.map((job) => <HistoryRow key={job.id} job={job} />)
                )}
              </tbody>
            </table>
          </div>
        )}
        <nav className="mt-4 flex items-center justify-between gap-2" aria-label="Pages">
          <Button
            variant="outline"
            size="sm"
            disabled={page === 1}
            onClick={() => go(cursors.slice(0, -1))}
            data-testid="history-newer"
          >
            <ChevronLeft aria-hidden />
            Newer
          </Button>
          <span className="text-xs text-muted-foreground">Page {page}</span>
          <Button
            variant="outline"
            size="sm"
            disabled={!data?.next_cursor || isPlaceholderData}
            onClick={() => data?.next_cursor && go([...cursors, data.next_cursor])}
            data-testid="history-next"
          >
            Older
            <ChevronRight aria-hidden />
          </Button>
        </nav>
      </CardContent>
    </Card>
  );
}
