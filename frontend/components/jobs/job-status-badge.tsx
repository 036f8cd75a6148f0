import { Ban, CheckCircle2, Clock, Loader2, XCircle } from 'lucide-react';

import { Badge, type BadgeProps } from '@/components/ui/badge';
import type { JobStatus } from '@/lib/api/types';
import { cn } from '@/lib/utils';

export const STATUS_LABELS: Record<JobStatus, string> = {
  queued: 'Queued',
  processing: 'Processing',
  completed: 'Completed',
  failed: 'Failed',
  canceled: 'Canceled',
};

const STYLES: Record<JobStatus, { variant: BadgeProps['variant']; Icon: typeof Clock }> = {
  queued: { variant: 'secondary', Icon: Clock },
  processing: { variant: 'default', Icon: Loader2 },
  completed: { variant: 'success', Icon: CheckCircle2 },
  failed: { variant: 'destructive', Icon: XCircle },
  canceled: { variant: 'warning', Icon: Ban },
};

export function JobStatusBadge({ status, className }: { status: JobStatus; className?: string }) {
  const { variant, Icon } = STYLES[status];
  return (
    <Badge variant={variant} className={className} data-status={status} data-testid="job-status">
      <Icon className={cn(status === 'processing' && 'animate-spin motion-reduce:animate-none')} aria-hidden />
      {STATUS_LABELS[status]}
    </Badge>
  );
}
