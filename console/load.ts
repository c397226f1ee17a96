import { useEffect, useState } from 'preact/hooks';

export type Loaded<T> =
  { state: 'loading' } | { state: 'ready'; data: T } | { state: 'failed'; error: string };

/** Runs `load` when `key` changes; its result or its error, for a section to show. */
export function useLoad<T>(key: unknown, load: () => Promise<T | undefined>): Loaded<T> {
  const [loaded, setLoaded] = useState<Loaded<T>>({ state: 'loading' });
  useEffect(() => {
    let current = true;
    setLoaded({ state: 'loading' });
    load().then(
      (data) => current && data !== undefined && setLoaded({ state: 'ready', data }),
      (error: unknown) => current && setLoaded({ state: 'failed', error: (error as Error).message }),
    );
    return () => {
      current = false;
    };
    // Reloads on the key alone: `load` is a new function at every render.
  }, [key]);
  return loaded;
}
