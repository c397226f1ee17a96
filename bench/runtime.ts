/**
 * How the product runs (the container's entrypoint and environment, and what the README tells anyone who
 * starts the CLI or the worker themselves; test/cli/runtime.test.ts keeps them together): each scenario's
 * process runs as the product does.
 */

/** The V8 flag: a young generation of 64 MB per semi-space. */
export const RUNTIME = ['--max-semi-space-size=64'];

/**
 * glibc's malloc with a fixed mmap threshold: a buffer of 128 KB or more is mapped on its own and given back
 * when freed. By default the threshold rises to the largest buffer freed (up to 32 MB), and from then on
 * such buffers come from the heap, which keeps their pages after they are freed (a 10 M-customer worker's
 * RSS crept up by about 0.5 GB over its runs).
 */
export const RUNTIME_ENV = { MALLOC_MMAP_THRESHOLD_: '131072' } as const;
