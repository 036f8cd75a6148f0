// TanStack Query turns polling off when `window` is undefined (it assumes a server render).
// These tests drive its observers as a browser would, so give it a window.
const g = globalThis as { window?: unknown };
g.window ??= globalThis;
