'use client';

import * as React from 'react';

type Announce = (message: string) => void;

const AnnouncerContext = React.createContext<Announce>(() => undefined);

/** Say something to screen readers through the page's one polite live region. */
export function useAnnounce(): Announce {
  return React.useContext(AnnouncerContext);
}

/**
 * A visually hidden `aria-live` region. Messages arriving close together are read as one, and
 * the region is emptied first so a repeated message is read again.
 */
export function AnnouncerProvider({ children }: { children: React.ReactNode }) {
  const [text, setText] = React.useState('');
  const pending = React.useRef<string[]>([]);
  const timer = React.useRef<ReturnType<typeof setTimeout> | null>(null);

  const announce = React.useCallback<Announce>((message) => {
    pending.current.push(message);
    if (timer.current) return;
    setText('');
    timer.current = setTimeout(() => {
      timer.current = null;
      setText(pending.current.join('. '));
      pending.current = [];
    }, 250);
  }, []);

  React.useEffect(
    () => () => {
      if (timer.current) clearTimeout(timer.current);
    },
    [],
  );

  return (
    <AnnouncerContext.Provider value={announce}>
      {children}
      <div role="status" aria-live="polite" aria-atomic="true" className="sr-only" data-testid="live-region">
        {text}
      </div>
    </AnnouncerContext.Provider>
  );
}
