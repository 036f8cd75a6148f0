'use client';

import { useQuery } from '@tanstack/react-query';
import { Activity, Cpu, Layers } from 'lucide-react';

import { getApiClient } from '@/lib/api/client';
import { cn } from '@/lib/utils';

export const statsKey = ['stats'] as const;

/** Shared by the strip and the upload limits. */
export function useStats() {
  return useQuery({
    queryKey: statsKey,
    queryFn: ({ signal }) => getApiClient().stats(signal),
    refetchInterval: 10_000,
    staleTime: 5_000,
  });
}

/** Queue depth and workers online from `GET /api/v1/stats`. */
export function StatusStrip({ className }: { className?: string }) {
  const { data, isError, isPending } = useStats();
  const workers = data?.stats.workersOnline ?? null;
  const queue = data?.stats.queueDepth ?? null;
  const tone = isError
    ? 'bg-destructive'
    : workers === null
      ? 'bg-muted-foreground'
      : workers > 0
        ? 'bg-success'
        : 'bg-warning';
  return (
    <div
      className={cn('flex items-center gap-3 text-xs text-muted-foreground', className)}
      role="group"
      aria-label="Service status"
      data-testid="status-strip"
    >
      <span className="inline-flex items-center gap-1.5">
        <span className={cn('h-2 w-2 rounded-full', tone)} aria-hidden />
        {isPending ? (
          'Connecting…'
        ) : isError ? (
          <span>API unreachable</span>
        ) : (
          <>
            <Cpu className="h-3.5 w-3.5" aria-hidden />
            <span>
              {workers ?? '?'} worker{workers === 1 ? '' : 's'} online
            </span>
          </>
        )}
      </span>
      {!isPending && !isError && (
        <span className="inline-flex items-center gap-1.5">
          <Layers className="h-3.5 w-3.5" aria-hidden />
          <span>{queue ?? '?'} in queue</span>
        </span>
      )}
      {!isPending && !isError && data?.stats.jobsByStatus.processing !== undefined && (
        <span className="hidden items-center gap-1.5 md:inline-flex">
          <Activity className="h-3.5 w-3.5" aria-hidden />
          <span>{data.stats.jobsByStatus.processing} converting</span>
        </span>
      )}
    </div>
  );
}
