import type { Metadata } from 'next';
import { Suspense } from 'react';

import { HistoryView } from '@/components/history/history-view';

export const metadata: Metadata = { title: 'History' };

export default function HistoryPage() {
  // useSearchParams needs a Suspense boundary to keep the page statically rendered.
  return (
    <Suspense fallback={<p className="text-sm text-muted-foreground">Loading…</p>}>
      <HistoryView />
    </Suspense>
  );
}
