import type { RedisClient } from '../src/redis-client.js';
import type { AudienceStats, ConnectorClient, ErrorKind } from '../src/connector.js';
import { scrub } from '../src/redact.js';
import { describeError } from '../src/errors.js';
import { audienceNamesOf } from '../src/audience/audiences.js';
import type { Config } from '../src/config/schema.js';
import type { AudienceResult } from '../src/sync/run.js';
import { keys } from './queues.js';

/** Which run this was: its id, when it started, and why. */
export interface RunMeta {
  run: string;
  at: string;
  full: boolean;
  reason: string;
}

/** Fields that describe the audience as of a run: only a run that completed knows them. */
type SizeField =
  | 'segmentSize'
  | 'members'
  | 'unchanged'
  | 'waiting'
  | 'pending'
  | 'skipped'
  | 'plannedAdds'
  | 'plannedRemoves';

/** A run that completed for this audience: what it did and the sizes it left. */
export type CompletedRun = RunMeta &
  Omit<AudienceResult, 'error' | 'errorKind'> & {
    outcome: 'completed';
    stats?: AudienceStats | undefined;
    error?: undefined;
    errorKind?: undefined;
  };

/**
 * A run that failed for this audience: what it did before it stopped, and why; never sizes (a chart of
 * sizes shows a gap, not a drop to zero).
 */
export type FailedRun = RunMeta &
  Omit<AudienceResult, SizeField | 'error' | 'errorKind'> & {
    outcome: 'failed';
    error: string;
    errorKind?: ErrorKind | undefined;
  } & { [K in SizeField | 'stats']?: undefined };

/** One audience's part of one run, as kept in Redis (newest first). */
export type RunRecord = CompletedRun | FailedRun;

export const DEFAULT_RETENTION = 1000;

/** The record of a run's result for one audience: failed (without sizes) when it has an error. */
export function runRecord(result: AudienceResult, meta: RunMeta, stats?: AudienceStats): RunRecord {
  const { error, errorKind, ...rest } = result;
  if (error === undefined) return { ...meta, ...rest, outcome: 'completed', ...(stats ? { stats } : {}) };
  const {
    segmentSize: _segmentSize,
    members: _members,
    unchanged: _unchanged,
    waiting: _waiting,
    pending: _pending,
    skipped: _skipped,
    plannedAdds: _plannedAdds,
    plannedRemoves: _plannedRemoves,
    ...done
  } = rest;
  return { ...meta, ...done, outcome: 'failed', error, ...(errorKind ? { errorKind } : {}) };
}

/** The record of a run that failed for an audience before it had any result (the source could not be read, …). */
export function failedRun(
  destination: string,
  audience: string,
  meta: RunMeta,
  error: string,
  durationMs = 0,
): FailedRun {
  return {
    ...meta,
    destination,
    audience,
    outcome: 'failed',
    error,
    added: 0,
    removed: 0,
    rejected: 0,
    rejectedReasons: {},
    failed: 0,
    inFlight: 0,
    durationMs,
  };
}

/**
 * The records of a run's results, each completed one with the platform's size and match rate as the
 * client reads them now (a failed read is a warning, not a failure); and what the platform said of the
 * audiences whose run failed (`failedStats`, by audience), kept out of their records (a failed run has
 * no sizes) but read all the same: the failure may be the platform's refusal of the audience (Meta's 471).
 */
export async function runRecordsOf(
  client: ConnectorClient,
  results: readonly AudienceResult[],
  meta: RunMeta,
): Promise<{ records: RunRecord[]; failedStats: Map<string, AudienceStats> }> {
  const records: RunRecord[] = [];
  const failedStats = new Map<string, AudienceStats>();
  for (const r of results) {
    const stats = r.remoteId
      ? await client
          .stats({ id: r.remoteId, name: r.audience })
          .catch((error: unknown) => ({ warnings: [describeError(error)] }))
      : undefined;
    if (stats && r.error !== undefined) failedStats.set(r.audience, stats);
    records.push(runRecord(r, meta, r.error === undefined ? stats : undefined));
  }
  return { records, failedStats };
}

/**
 * A run that failed without results is a run all the same: status and the history show it, without
 * sizes, for every audience it covered. Recording is best effort: the failure itself is what matters.
 */
export async function recordFailedRun(
  redis: RedisClient,
  prefix: string,
  config: Config,
  run: { destination: string; audience?: string | undefined },
  meta: RunMeta,
  error: unknown,
  durationMs = 0,
): Promise<void> {
  const message = error instanceof Error ? error.message : String(error);
  const records = audienceNamesOf(config, run.destination, run.audience).map((a) =>
    failedRun(run.destination, a, meta, message, durationMs),
  );
  await recordRun(redis, prefix, records, config.sync.history_runs).catch(() => undefined);
}

export async function recordRun(
  redis: RedisClient,
  prefix: string,
  records: readonly RunRecord[],
  retention = DEFAULT_RETENTION,
): Promise<void> {
  const tx = redis.multi();
  for (const r of records) {
    const key = keys.history(prefix, r.destination, r.audience);
    tx.lpush(key, JSON.stringify(scrubbed(r))).ltrim(key, 0, retention - 1);
  }
  await tx.exec();
}

/** Reasons with counts, their text scrubbed (two that scrub alike are added up). */
function scrubbedReasons(counts: Record<string, number>): Record<string, number> {
  const reasons: Record<string, number> = {};
  for (const [reason, n] of Object.entries(counts))
    reasons[scrub(reason)] = (reasons[scrub(reason)] ?? 0) + n;
  return reasons;
}

/** A run as the history keeps it: its platform text (error, hold, reasons, warnings) scrubbed. */
function scrubbed(r: RunRecord): RunRecord {
  const text = {
    rejectedReasons: scrubbedReasons(r.rejectedReasons ?? {}),
    ...(r.held !== undefined ? { held: scrub(r.held) } : {}),
    ...(r.replaced !== undefined ? { replaced: scrub(r.replaced) } : {}),
    ...(r.policy !== undefined ? { policy: r.policy.map((f) => ({ ...f, message: scrub(f.message) })) } : {}),
  };
  if (r.outcome === 'failed') return { ...r, ...text, error: scrub(r.error) };
  const stats = r.stats && {
    ...r.stats,
    warnings: r.stats.warnings.map(scrub),
    ...(r.stats.problems ? { problems: r.stats.problems.map(scrub) } : {}),
  };
  // Records written before skipped reasons were kept may have none.
  const skipped = (r.skipped as Record<string, number> | undefined) && {
    skipped: scrubbedReasons(r.skipped),
  };
  return { ...r, ...text, ...skipped, ...(stats ? { stats } : {}) };
}

export async function lastRuns(
  redis: RedisClient,
  prefix: string,
  destination: string,
  audience: string,
  count = 1,
): Promise<RunRecord[]> {
  const raw = await redis.lrange(keys.history(prefix, destination, audience), 0, count - 1);
  return raw.map((r) => fromStored(JSON.parse(r) as StoredRun));
}

/** Records written before `outcome` existed: a failed one carried zero sizes, which are not sizes. */
type StoredRun = RunRecord | (Omit<CompletedRun, 'outcome'> & { outcome?: undefined; error?: string });

/** A stored run as readers get it: in today's shape, its text scrubbed (records from before scrubbing too). */
function fromStored(r: StoredRun): RunRecord {
  if (r.outcome !== undefined) return scrubbed(r);
  const { outcome: _outcome, error, ...result } = r;
  return scrubbed(runRecord({ ...result, ...(error !== undefined ? { error } : {}) }, r, r.stats));
}

/** Where the next page of a run history starts: the last run of the page before, by its id and start. */
interface RunCursor {
  run: string;
  at: string;
}

/** Reads a cursor from `runsPage`; undefined when it is not one (the caller answers 400). */
export function parseRunCursor(text: string): RunCursor | undefined {
  try {
    const c = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as Partial<RunCursor>;
    return typeof c.run === 'string' && typeof c.at === 'string' ? { run: c.run, at: c.at } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One page of an audience's run history, newest first, and the cursor of the next page (none at the end).
 * The cursor names the page's last run rather than a position: runs recorded meanwhile do not shift pages.
 * A cursor whose run has been trimmed away (history_runs) ends the history.
 */
export async function runsPage(
  redis: RedisClient,
  prefix: string,
  destination: string,
  audience: string,
  page: { cursor?: string | undefined; limit: number },
): Promise<{ runs: RunRecord[]; next?: string }> {
  const key = keys.history(prefix, destination, audience);
  let start = 0;
  if (page.cursor !== undefined) {
    const cursor = parseRunCursor(page.cursor);
    if (!cursor) throw new Error('not a cursor');
    const marker = (r: StoredRun) => r.run === cursor.run && r.at === cursor.at;
    // The run is where it was, or further down by the runs recorded since: look from there, in chunks.
    start = -1;
    for (let from = 0, chunk = 200; start < 0; from += chunk) {
      const raw = await redis.lrange(key, from, from + chunk - 1);
      if (raw.length === 0) return { runs: [] };
      const at = raw.findIndex((r) => marker(JSON.parse(r) as StoredRun));
      if (at >= 0) start = from + at + 1;
    }
  }
  const raw = await redis.lrange(key, start, start + page.limit);
  const runs = raw.slice(0, page.limit).map((r) => fromStored(JSON.parse(r) as StoredRun));
  const last = runs.at(-1);
  return raw.length > page.limit && last
    ? { runs, next: Buffer.from(JSON.stringify({ run: last.run, at: last.at })).toString('base64url') }
    : { runs };
}

/** Where the next page of the runs across audiences starts: the page's last run, by its place in the order. */
interface RecentCursor {
  at: string;
  run: string;
  destination: string;
  audience: string;
}

const recentKey = (r: RecentCursor) => [r.at, r.run, r.destination, r.audience] as const;

/** Newest first; runs that started at once in a fixed order (run, destination, audience). */
function newerFirst(a: RecentCursor, b: RecentCursor): number {
  const [x, y] = [recentKey(a), recentKey(b)];
  for (let k = 0; k < x.length; k++)
    if (x[k] !== y[k]) return (k < 2 ? x[k]! > y[k]! : x[k]! < y[k]!) ? -1 : 1;
  return 0;
}

/** Reads a cursor from `recentRuns`; undefined when it is not one (the caller answers 400). */
export function parseRecentCursor(text: string): RecentCursor | undefined {
  try {
    const c = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as Partial<RecentCursor>;
    return [c.at, c.run, c.destination, c.audience].every((v) => typeof v === 'string')
      ? (c as RecentCursor)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One page of the runs of many audiences merged newest first (only failed ones, if asked), and the cursor
 * of the next page. Reads each audience's whole kept history: `sync.history_runs` bounds it.
 */
export async function recentRuns(
  redis: RedisClient,
  prefix: string,
  audiences: readonly { destination: string; audience: string }[],
  page: { status: 'all' | 'failed'; cursor?: string | undefined; limit: number },
): Promise<{ runs: RunRecord[]; next?: string }> {
  const after = page.cursor === undefined ? undefined : parseRecentCursor(page.cursor);
  if (page.cursor !== undefined && !after) throw new Error('not a cursor');
  const tx = redis.multi();
  for (const a of audiences) tx.lrange(keys.history(prefix, a.destination, a.audience), 0, -1);
  const lists = ((await tx.exec()) ?? []).map(([error, raw]) => {
    if (error) throw error;
    return raw as string[];
  });
  const runs = lists
    .flatMap((raw) => raw.map((r) => fromStored(JSON.parse(r) as StoredRun)))
    .filter((r) => page.status === 'all' || r.outcome === 'failed')
    .filter((r) => !after || newerFirst(after, r) < 0)
    .sort(newerFirst);
  const shown = runs.slice(0, page.limit);
  const last = shown.at(-1);
  return runs.length > page.limit && last
    ? {
        runs: shown,
        next: Buffer.from(
          JSON.stringify({
            at: last.at,
            run: last.run,
            destination: last.destination,
            audience: last.audience,
          }),
        ).toString('base64url'),
      }
    : { runs: shown };
}
