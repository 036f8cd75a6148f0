/** Shapes of the API contract v1 (see issue 2, "API contract (v1)"). */

export const JOB_STATUSES = ['queued', 'processing', 'completed', 'failed', 'canceled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

const TERMINAL: ReadonlySet<JobStatus> = new Set(['completed', 'failed', 'canceled']);

/** True once a job can no longer change. */
export function isTerminal(status: JobStatus): boolean {
  return TERMINAL.has(status);
}

export interface JobError {
  code: string;
  message: string;
}

export interface JobLinks {
  self: string;
  result: string;
  source: string;
}

/** The API's `Job` schema (core JobView plus links); tests/unit/test_frontend_types.py keeps them
 * in step. */
export interface Job {
  id: string;
  status: JobStatus;
  filename: string;
  source_format: string;
  target_format: string;
  options: Record<string, unknown>;
  source_bytes: number;
  result_bytes: number | null;
  /** Of the result, once there is one. */
  width: number | null;
  height: number | null;
  /** Of the original. */
  source_width: number;
  source_height: number;
  /** Conversions started so far (a retry after a lost worker counts again). */
  attempts: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  error: JobError | null;
  links: JobLinks;
}

export interface JobPage {
  items: Job[];
  next_cursor: string | null;
}

export interface ConversionOptions {
  format: string;
  quality?: number;
  maxWidth?: number;
  maxHeight?: number;
  stripMetadata: boolean;
}

export interface Stats {
  queueDepth: number | null;
  workersOnline: number | null;
  jobsByStatus: Partial<Record<JobStatus, number>>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function firstNumber(source: Record<string, unknown>, keys: readonly string[]): number | null {
  for (const key of keys) {
    const value = source[key];
    if (typeof value === 'number' && Number.isFinite(value)) return value;
  }
  return null;
}

/** Read `/api/v1/stats` leniently: the contract names the figures but not their keys. */
export function parseStats(payload: unknown): Stats {
  if (!isRecord(payload)) return { queueDepth: null, workersOnline: null, jobsByStatus: {} };
  const queue = isRecord(payload.queue) ? payload.queue : {};
  const workers = isRecord(payload.workers) ? payload.workers : {};
  const byStatusRaw = isRecord(payload.jobs_by_status)
    ? payload.jobs_by_status
    : isRecord(payload.jobs)
      ? payload.jobs
      : {};
  const jobsByStatus: Partial<Record<JobStatus, number>> = {};
  for (const status of JOB_STATUSES) {
    const value = byStatusRaw[status];
    if (typeof value === 'number') jobsByStatus[status] = value;
  }
  return {
    queueDepth:
      firstNumber(payload, ['queue_depth', 'queued', 'backlog']) ??
      firstNumber(queue, ['depth', 'messages', 'size']),
    workersOnline:
      firstNumber(payload, ['workers_online', 'workers']) ??
      firstNumber(workers, ['online', 'count']),
    jobsByStatus,
  };
}
