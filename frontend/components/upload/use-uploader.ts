'use client';

import { useQueryClient } from '@tanstack/react-query';
import * as React from 'react';

import { useStats } from '@/components/layout/status-strip';
import { useAnnounce } from '@/components/providers/announcer';
import { getApiClient } from '@/lib/api/client';
import { problemForFile } from '@/lib/api/errors';
import type { ConversionOptions } from '@/lib/api/types';
import { UPLOAD_CONCURRENCY, limitsFromApi, type UploadLimits } from '@/lib/config';
import { addRecentJobs } from '@/lib/jobs/cache';
import { runPool, sendableItems, uploadReducer, type UploadItem } from '@/lib/upload/queue';
import { isRetryableUploadError, uploadFiles } from '@/lib/upload/send';
import { checkBatch } from '@/lib/upload/validate';

let nextItemId = 0;
const newItemId = () => `upload-${++nextItemId}`;

/** Limits as the API reports them, else the defaults in lib/config. */
export function useUploadLimits(): UploadLimits {
  const { data } = useStats();
  return React.useMemo(() => limitsFromApi(data?.raw), [data?.raw]);
}

/** The upload list and the actions on it. Each file is its own request, so one bad file
 * does not hold back the others and each gets its own progress and error. */
export function useUploader() {
  const [items, dispatch] = React.useReducer(uploadReducer<File>, []);
  const itemsRef = React.useRef<UploadItem<File>[]>(items);
  itemsRef.current = items;
  const controllers = React.useRef(new Map<string, AbortController>());
  const queryClient = useQueryClient();
  const announce = useAnnounce();
  const limits = useUploadLimits();

  React.useEffect(() => {
    const map = controllers.current;
    return () => map.forEach((controller) => controller.abort());
  }, []);

  const addFiles = React.useCallback(
    (files: readonly File[]) => {
      const waiting = itemsRef.current.filter((item) => item.status !== 'rejected').length;
      const { accepted, rejected } = checkBatch(files, limits, waiting);
      dispatch({
        type: 'add',
        items: [
          ...accepted.map((file) => ({
            id: newItemId(),
            file,
            status: 'ready' as const,
            progress: 0,
            problem: null,
          })),
          ...rejected.map(({ file, problem }) => ({
            id: newItemId(),
            file,
            status: 'rejected' as const,
            progress: 0,
            problem,
          })),
        ],
      });
      const parts = [`${accepted.length} file${accepted.length === 1 ? '' : 's'} ready`];
      if (rejected.length) parts.push(`${rejected.length} refused`);
      announce(parts.join(', '));
    },
    [announce, limits],
  );

  const uploadOne = React.useCallback(
    async (item: UploadItem<File>, options: ConversionOptions) => {
      const controller = new AbortController();
      controllers.current.set(item.id, controller);
      dispatch({ type: 'start', id: item.id });
      try {
        const jobs = await uploadFiles(getApiClient(), {
          files: [item.file],
          options,
          signal: controller.signal,
          onProgress: (progress) => dispatch({ type: 'progress', id: item.id, progress }),
        });
        addRecentJobs(queryClient, jobs);
        dispatch({ type: 'succeeded', id: item.id });
        announce(`${item.file.name} uploaded and queued`);
      } catch (error) {
        if (error instanceof DOMException && error.name === 'AbortError') {
          dispatch({ type: 'reset', id: item.id });
          return;
        }
        const problem = problemForFile(error, item.file.name);
        dispatch({ type: 'failed', id: item.id, problem, retryable: isRetryableUploadError(error) });
        announce(`${item.file.name} was not accepted: ${problem.message}`);
      } finally {
        controllers.current.delete(item.id);
      }
    },
    [announce, queryClient],
  );

  const start = React.useCallback(
    async (options: ConversionOptions) => {
      const batch = sendableItems(itemsRef.current);
      await runPool(batch, UPLOAD_CONCURRENCY, (item) => uploadOne(item, options));
    },
    [uploadOne],
  );

  const cancel = React.useCallback((id: string) => controllers.current.get(id)?.abort(), []);
  const remove = React.useCallback((id: string) => {
    controllers.current.get(id)?.abort();
    dispatch({ type: 'remove', id });
  }, []);
  const clearProblems = React.useCallback(() => dispatch({ type: 'clearProblems' }), []);

  return { items, limits, addFiles, start, cancel, remove, clearProblems };
}
