/**
 * How the process should run, as the container image runs it (README, Performance): what to tell an operator
 * who starts the worker without it.
 */

/** The malloc setting the image sets: buffers of 128 KB or more mapped on their own, given back when freed. */
export const MALLOC_SETTING = { name: 'MALLOC_MMAP_THRESHOLD_', value: '131072' } as const;

/** Below this many customers, what glibc's default malloc keeps is not worth a warning. */
const ADVISE_FROM = 1_000_000;

/** The glibc this process runs on, or undefined (musl, macOS, Windows: the setting means nothing there). */
export function glibcVersion(): string | undefined {
  // `excludeNetwork` is Node's (20.13 and later), not yet in its types here.
  const report = process.report as (NodeJS.ProcessReport & { excludeNetwork?: boolean }) | undefined;
  if (!report) return undefined;
  // Without the network section: it looks up the names of open sockets' peers (Redis's), which can block.
  const excluded = report.excludeNetwork;
  report.excludeNetwork = true;
  try {
    const { header } = report.getReport() as { header?: { glibcVersionRuntime?: string } };
    return header?.glibcVersionRuntime;
  } finally {
    report.excludeNetwork = excluded;
  }
}

/**
 * A warning for a worker that read `customers` customers on glibc without the malloc setting, or undefined.
 * The setting is read when the process starts, so the operator must set it where the worker is started.
 */
export function mallocAdvice(
  customers: number,
  env: NodeJS.ProcessEnv = process.env,
  runtime: () => string | undefined = glibcVersion,
): string | undefined {
  // Set as the variable, or as glibc's own tunable for the same threshold.
  if (
    customers < ADVISE_FROM ||
    env[MALLOC_SETTING.name] !== undefined ||
    env.GLIBC_TUNABLES?.includes('glibc.malloc.mmap_threshold=')
  )
    return undefined;
  const glibc = runtime(); // a process report: asked only when it matters
  if (glibc === undefined) return undefined;
  return (
    `this worker runs on glibc ${glibc} without ${MALLOC_SETTING.name}=${MALLOC_SETTING.value}: with ` +
    `${customers.toLocaleString('en-US')} customers its memory will creep up run after run (glibc keeps freed ` +
    `buffers: up to 1.7 GB against 1.5 GB at 10 M in the bench). Set ${MALLOC_SETTING.name}=${MALLOC_SETTING.value} ` +
    `in the environment the worker starts with, as the container image does (README, Performance)`
  );
}
