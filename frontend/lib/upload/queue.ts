/** The upload list: files waiting, uploading or refused, as a pure reducer plus a worker pool. */
import type { FileProblem } from '@/lib/api/errors';
import type { FileLike } from '@/lib/upload/validate';

export type UploadStatus = 'ready' | 'uploading' | 'error' | 'rejected';

export interface UploadItem<F extends FileLike = File> {
  id: string;
  file: F;
  status: UploadStatus;
  /** Fraction of the file sent, 0..1. */
  progress: number;
  /** Why it was refused (`rejected`: by the browser's checks or the API; sending it again
   * cannot help) or why sending failed (`error`: network or server trouble; it can be retried). */
  problem: FileProblem | null;
}

export type UploadAction<F extends FileLike = File> =
  | { type: 'add'; items: UploadItem<F>[] }
  | { type: 'start'; id: string }
  | { type: 'progress'; id: string; progress: number }
  /** Accepted by the API: the job list takes over, so the item leaves this list. */
  | { type: 'succeeded'; id: string }
  /** `retryable`: sending it again may work (network, 5xx); else the API refused the file. */
  | { type: 'failed'; id: string; problem: FileProblem; retryable: boolean }
  /** Back to waiting, e.g. after the user aborted it. */
  | { type: 'reset'; id: string }
  | { type: 'remove'; id: string }
  | { type: 'clearProblems' };

export function uploadReducer<F extends FileLike>(
  state: UploadItem<F>[],
  action: UploadAction<F>,
): UploadItem<F>[] {
  const update = (id: string, change: (item: UploadItem<F>) => UploadItem<F>) =>
    state.map((item) => (item.id === id ? change(item) : item));
  switch (action.type) {
    case 'add':
      return [...state, ...action.items];
    case 'start':
      return update(action.id, (item) => ({
        ...item,
        status: 'uploading',
        progress: 0,
        problem: null,
      }));
    case 'progress':
      return update(action.id, (item) =>
        item.status === 'uploading'
          ? { ...item, progress: Math.min(1, Math.max(0, action.progress)) }
          : item,
      );
    case 'succeeded':
      return state.filter((item) => item.id !== action.id);
    case 'failed':
      return update(action.id, (item) => ({
        ...item,
        status: action.retryable ? 'error' : 'rejected',
        progress: 0,
        problem: action.problem,
      }));
    case 'reset':
      return update(action.id, (item) => ({ ...item, status: 'ready', progress: 0, problem: null }));
    case 'remove':
      return state.filter((item) => item.id !== action.id);
    case 'clearProblems':
      return state.filter((item) => item.status !== 'error' && item.status !== 'rejected');
  }
}

/** Items that a "Convert" click would send: waiting ones and ones whose sending failed. */
export function sendableItems<F extends FileLike>(items: readonly UploadItem<F>[]): UploadItem<F>[] {
  return items.filter((item) => item.status === 'ready' || item.status === 'error');
}

/** Run `task` over `items` with at most `limit` at once; one failure does not stop the rest. */
export async function runPool<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      try {
        await task(item);
      } catch {
        // The task reports its own failure; the pool keeps going.
      }
    }
  });
  await Promise.all(lanes);
}
