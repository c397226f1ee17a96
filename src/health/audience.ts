import { Queue } from 'bullmq';
import type { RedisClient } from '../redis-client.js';
import { lastRuns, type RunRecord } from '../../jobs/history.js';
import { keys, SYNC_QUEUE } from '../../jobs/queues.js';
import { nextRuns } from '../../jobs/schedules.js';
import { audienceNamesOf } from '../audience/audiences.js';
import type { AudienceStats, ConnectorClient } from '../connector.js';
import type { Config } from '../config/schema.js';
import { describeError } from '../errors.js';
import { StateStore } from '../record/store.js';
import type { Destination } from '../sync/run.js';
import { concludeDivergence, emptyFold, foldReadings, type DivergenceFold } from './divergence.js';
import { foldKey, readingOf, readingsKey, recordReadings, type Retention } from './readings.js';
import { audienceHealthSchema, type AudienceHealth, type LastRun, type Reading } from './schema.js';

/** Readings an audience's health shows (its divergence comes from the fold of them all). */
const RECENT = 48;
/** Runs looked through for the last completed one (its sizes are what we expect). */
const RUNS_LOOKED_AT = 20;

/** Per destination, its connector's processing time in minutes, as the worker last recorded it. */
const processingKey = (prefix: string) => `${prefix}:health:processing`;

export function retentionOf(config: Config): Retention {
  return { keepDays: config.health.keep_days, keepSamples: config.health.keep_samples };
}

/**
 * The health of one destination audience: what it should hold, what our state confirms, what the platform
 * counts (latest reading and recent ones), the last and next runs, and whether the platform's size diverges.
 * `queue` (the sync queue) gives the next run; without it one is opened on `redis` for the call.
 */
export async function audienceHealth(
  redis: RedisClient,
  prefix: string,
  config: Config,
  destination: string,
  audience: string,
  options: { now?: Date; queue?: Queue; store?: StateStore } = {},
): Promise<AudienceHealth> {
  const now = options.now ?? new Date();
  const runs = await lastRuns(redis, prefix, destination, audience, RUNS_LOOKED_AT);
  const completed = runs.find((r) => r.outcome === 'completed');
  const key = readingsKey(prefix, destination, audience);
  const [recent, paused, processing, next, stateFields] = await Promise.all([
    redis.zrange(key, -RECENT, -1),
    redis.exists(keys.paused(prefix, destination)),
    redis.hget(processingKey(prefix), destination),
    nextRunOf(redis, prefix, destination, audience, options.queue),
    stateOf(redis, config, destination, audience, options.store),
  ]);
  const series = recent.map((r) => JSON.parse(r) as Reading);
  const fold = await foldOf(
    redis,
    key,
    foldKey(prefix, destination, audience),
    {
      share: config.health.band,
      processingMinutes: Number(processing ?? 0),
    },
    config.health.keep_days,
  );
  const last = runs[0];
  return audienceHealthSchema.parse({
    destination,
    audience,
    remoteId: stateFields.remoteId ?? completed?.remoteId ?? null,
    paused: paused > 0,
    nextRun: next !== undefined ? new Date(next).toISOString() : null,
    segmentSize: completed?.segmentSize ?? null,
    expected: completed?.members ?? null,
    confirmed: stateFields.counts?.confirmed ?? null,
    state: stateFields.counts ?? null,
    platform: series.at(-1) ?? null,
    lastRun: last ? lastRunOf(last) : null,
    divergence: concludeDivergence(fold, now),
    readings: series,
  } satisfies AudienceHealth);
}

/**
 * The divergence rule folded over an audience's readings: the saved fold (when made with the same band
 * and processing time) with the readings newer than it, saved again when it moved. Readings come in time
 * order, so a saved fold is always a fold of every reading up to its own; readers racing write equal ones.
 */
async function foldOf(
  redis: RedisClient,
  key: string,
  saveAs: string,
  rule: { share: number; processingMinutes: number },
  keepDays: number,
): Promise<DivergenceFold> {
  const saved = await redis.get(saveAs);
  let fold = saved ? (JSON.parse(saved) as DivergenceFold) : undefined;
  if (fold && (fold.share !== rule.share || fold.processingMinutes !== rule.processingMinutes))
    fold = undefined;
  const newer = await redis.zrangebyscore(key, fold?.lastAt != null ? `(${fold.lastAt}` : '-inf', '+inf');
  if (fold && newer.length === 0) return fold;
  const next = foldReadings(
    newer.map((r) => JSON.parse(r) as Reading),
    fold ?? emptyFold(rule),
  );
  await redis.set(saveAs, JSON.stringify(next), 'PX', keepDays * 86_400_000);
  return next;
}

/** The health of every audience of every destination (or of one), in config order. */
export async function destinationHealth(
  redis: RedisClient,
  prefix: string,
  config: Config,
  options: { destination?: string; now?: Date; queue?: Queue; store?: StateStore } = {},
): Promise<AudienceHealth[]> {
  const out: AudienceHealth[] = [];
  const queue = options.queue ?? new Queue(SYNC_QUEUE, { connection: redis, prefix });
  try {
    for (const destination of Object.keys(config.destinations)) {
      if (options.destination !== undefined && destination !== options.destination) continue;
      for (const audience of audienceNamesOf(config, destination))
        out.push(await audienceHealth(redis, prefix, config, destination, audience, { ...options, queue }));
    }
  } finally {
    if (!options.queue) await queue.close();
  }
  return out;
}

/** The last run as health shows it (its platform text comes scrubbed from the run history). */
function lastRunOf(r: RunRecord): LastRun {
  return {
    run: r.run,
    at: r.at,
    full: r.full,
    reason: r.reason,
    outcome: r.outcome,
    error: r.error ?? null,
    added: r.added,
    removed: r.removed,
    unchanged: r.unchanged ?? null,
    rejected: r.rejected,
    rejectedReasons: r.rejectedReasons,
    failed: r.failed,
    inFlight: r.inFlight,
    skipped: r.skipped ?? null,
    durationMs: r.durationMs,
    held: r.held ?? null,
    replaced: r.replaced ?? null,
    policy: r.policy ?? [],
  };
}

async function nextRunOf(
  redis: RedisClient,
  prefix: string,
  destination: string,
  audience: string,
  given: Queue | undefined,
): Promise<number | undefined> {
  const queue = given ?? new Queue(SYNC_QUEUE, { connection: redis, prefix });
  try {
    return (await nextRuns(queue))
      .filter((n) => n.destination === destination && (n.audience === undefined || n.audience === audience))
      .map((n) => n.next)
      .sort((a, b) => a - b)[0];
  } finally {
    if (!given) await queue.close();
  }
}

async function stateOf(
  redis: RedisClient,
  config: Config,
  destination: string,
  audience: string,
  given: StateStore | undefined,
) {
  const state = (given ?? new StateStore(redis, config.sync.redis_prefix)).audience(destination, audience);
  const [remoteId, counts] = await Promise.all([state.remoteId(), state.counts()]);
  return { remoteId, counts };
}

/**
 * The readings of a run's audiences, from the stats the run read (`runRecordsOf`): of those whose run
 * failed too (nothing expected is known then), so that a platform's refusal shows at once.
 */
export async function recordRunReadings(
  redis: RedisClient,
  prefix: string,
  config: Config,
  store: StateStore,
  destination: Destination,
  run: { records: readonly RunRecord[]; failedStats?: ReadonlyMap<string, AudienceStats> },
  now = new Date(),
): Promise<void> {
  const readings = [];
  for (const r of run.records) {
    const stats = r.outcome === 'completed' ? r.stats : run.failedStats?.get(r.audience);
    if (stats === undefined) continue;
    const counts = await store.audience(r.destination, r.audience).counts();
    const expected = r.outcome === 'completed' ? r.members : null;
    readings.push({
      destination: r.destination,
      audience: r.audience,
      reading: readingOf(stats, { expected, counts, changed: r.added + r.removed > 0 }, 'run', now),
    });
  }
  await noteProcessing(redis, prefix, destination);
  await recordReadings(redis, prefix, readings, retentionOf(config));
}

/**
 * Reads the platform's size of every audience of a destination that has one there (a scheduled read),
 * and records the readings; a failed read is a reading of unknown size with its reason.
 */
export async function readDestination(
  redis: RedisClient,
  prefix: string,
  config: Config,
  store: StateStore,
  destination: Destination,
  client: ConnectorClient,
  now = (): Date => new Date(),
): Promise<Reading[]> {
  const readings = [];
  for (const audience of audienceNamesOf(config, destination.name)) {
    const state = store.audience(destination.name, audience);
    const remoteId = await state.remoteId();
    if (!remoteId) continue; // never synced: nothing on the platform to read
    const stats = await client
      .stats({ id: remoteId, name: audience })
      .catch((error: unknown) => ({ error: describeError(error) }));
    const runs = await lastRuns(redis, prefix, destination.name, audience, RUNS_LOOKED_AT);
    const expected = runs.find((r) => r.outcome === 'completed')?.members ?? null;
    const reading = readingOf(stats, { expected, counts: await state.counts() }, 'schedule', now());
    readings.push({ destination: destination.name, audience, reading });
  }
  await noteProcessing(redis, prefix, destination);
  await recordReadings(redis, prefix, readings, retentionOf(config));
  return readings.map((r) => r.reading);
}

async function noteProcessing(redis: RedisClient, prefix: string, destination: Destination): Promise<void> {
  const minutes = destination.connector.processingMinutes?.(destination.config) ?? 0;
  await redis.hset(processingKey(prefix), destination.name, minutes);
}
