'use client';

import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { ThemeProvider } from 'next-themes';
import * as React from 'react';

import { isPermanentPollError, pausePollingWhileHidden } from '@/lib/jobs/poll';
import { AnnouncerProvider } from '@/components/providers/announcer';

function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        staleTime: 10_000,
        retry: (failureCount, error) => !isPermanentPollError(error) && failureCount < 3,
      },
    },
  });
}

export function AppProviders({ children }: { children: React.ReactNode }) {
  const [queryClient] = React.useState(makeQueryClient);
  React.useEffect(() => pausePollingWhileHidden(queryClient), [queryClient]);
  return (
    <ThemeProvider attribute="class" defaultTheme="system" enableSystem disableTransitionOnChange>
      <QueryClientProvider client={queryClient}>
        <AnnouncerProvider>{children}</AnnouncerProvider>
      </QueryClientProvider>
    </ThemeProvider>
  );
}
