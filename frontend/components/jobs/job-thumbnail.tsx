'use client';

import { useQuery } from '@tanstack/react-query';
import { ImageOff } from 'lucide-react';
import * as React from 'react';

import { jobFileQuery } from '@/components/jobs/use-job-actions';
import type { Job } from '@/lib/api/types';
import { BROWSER_DISPLAYABLE, MAX_THUMBNAIL_BYTES } from '@/lib/config';
import { useInView } from '@/lib/hooks/use-in-view';
import { useObjectUrl } from '@/lib/hooks/use-object-url';
import { canonicalFormat } from '@/lib/jobs/files';
import { cn } from '@/lib/utils';

interface JobThumbnailProps {
  job: Job;
  kind: 'source' | 'result';
  className?: string;
}

/** The original or converted image, fetched with the bearer token and shown from a blob URL. */
export function JobThumbnail({ job, kind, className }: JobThumbnailProps) {
  const format = canonicalFormat(kind === 'source' ? job.source_format : job.target_format);
  const bytes = kind === 'source' ? job.source_bytes : job.result_bytes;
  const displayable =
    BROWSER_DISPLAYABLE.has(format) && (bytes === null || bytes <= MAX_THUMBNAIL_BYTES);
  const [ref, inView] = useInView<HTMLElement>();
  const { data, isError } = useQuery({
    ...jobFileQuery(job.id, kind),
    // The original is there from the upload on (a cancel deletes it); the result once completed.
    enabled:
      (kind === 'source' ? job.status !== 'canceled' : job.status === 'completed') &&
      displayable &&
      inView,
  });
  const url = useObjectUrl(data?.blob);
  const [broken, setBroken] = React.useState(false);
  const label = kind === 'source' ? 'Original' : 'Converted';

  return (
    <figure
      ref={ref}
      className={cn(
        'relative flex h-16 w-16 shrink-0 items-center justify-center overflow-hidden rounded-md border bg-muted sm:h-20 sm:w-20',
        // A checkerboard shows transparency.
        'bg-[conic-gradient(hsl(var(--muted))_90deg,hsl(var(--background))_90deg_180deg,hsl(var(--muted))_180deg_270deg,hsl(var(--background))_270deg)] bg-[length:12px_12px]',
        className,
      )}
    >
      {url && !broken ? (
        // eslint-disable-next-line @next/next/no-img-element -- blob URLs, nothing to optimise
        <img
          src={url}
          alt={`${label}: ${job.filename}`}
          className="h-full w-full object-cover"
          onError={() => setBroken(true)}
          data-testid={`thumb-${kind}`}
        />
      ) : (
        <span className="flex flex-col items-center gap-0.5 text-[10px] font-medium uppercase text-muted-foreground">
          {!displayable || isError || broken ? <ImageOff className="h-4 w-4" aria-hidden /> : null}
          {format || '?'}
        </span>
      )}
      <figcaption className="sr-only">{label}</figcaption>
    </figure>
  );
}
