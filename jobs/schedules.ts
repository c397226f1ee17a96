import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue } from 'bullmq';
import type { RedisClient } from '../src/redis-client.js';
import { audiencesOf } from '../src/audience/audiences.js';
import { closest } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { ConfigError } from '../src/errors.js';
import { buildSegmentMap } from '../src/segment/maps.js';
import { Lease } from './lease.js';
import { keys, STATS_JOB_OPTIONS, SYNC_JOB_OPTIONS, type AdminJob, type SyncJob } from './queues.js';

/** A schedule's id is its content: the same entry always maps to the same BullMQ job scheduler. */
export function scheduleId(s: Config['schedules'][number]): string {
  const digest = createHash('sha256')
    .update(JSON.stringify([s.destination, s.audience ?? null, s.cron, s.tz, s.full]))
    .digest('hex')
    .slice(0, 24);
  return `schedule-${digest}`;
}

/**
 * What the config schema cannot see about schedules: an audience the destination does not have (its
 * names come from the segment map). Each problem names the entry.
 */
export function scheduleProblems(config: Config): string[] {
  let segments: readonly string[];
  try {
    segments = buildSegmentMap(config.segments).names;
  } catch {
    return []; // the segment map's own error is reported where it is built
  }
  const audiences = audiencesOf(config, segments);
  return config.schedules.flatMap((s, k) => {
    if (s.audience === undefined) return [];
    const names = audiences.filter((a) => a.destinations.includes(s.destination)).map((a) => a.name);
    if (names.includes(s.audience)) return [];
    const near = closest(s.audience, names);
    return [
      `schedules[${k}].audience: no audience '${s.audience}' on destination '${s.destination}'${near ? `; did you mean '${near}'?` : ` (its audiences: ${names.join(', ')})`}`,
    ];
  });
}

/** Throws a ConfigError naming every schedule entry that cannot run. */
export function checkSchedules(config: Config): void {
  const problems = scheduleProblems(config);
  if (problems.length > 0)
    throw new ConfigError(problems.join('\n'), 'see "Schedules" in README.md, or config/example.yaml');
}

/**
 * Which schedules a config holds, to order configs that disagree: `schedules_version` first (absent is
 * 0), then, at equal versions, a content never applied before is newer than one Redis has replaced.
 */
export interface ScheduleVersion {
  version: number;
  /** Digest of the schedule entries (their ids, sorted). */
  content: string;
}

/** A version as recorded in Redis when it was applied. */
export interface AppliedVersion extends ScheduleVersion {
  at: string;
  by: string;
}

export function scheduleVersion(config: Config): ScheduleVersion {
  const ids = config.schedules.map(scheduleId).sort();
  return {
    version: config.schedules_version ?? 0,
    content: createHash('sha256').update(ids.join('\n')).digest('hex').slice(0, 8),
  };
}

export function describeVersion(v: ScheduleVersion | AppliedVersion): string {
  const version = v.version > 0 ? `schedules_version ${v.version}` : 'no schedules_version';
  const applied = 'at' in v ? `, applied ${v.at} by ${v.by}` : '';
  return `${version}, content ${v.content}${applied}`;
}

export interface Reconciled {
  /** `applied`: Redis holds this config's schedules; `older`: Redis holds a newer config's, left as they are. */
  outcome: 'applied' | 'older';
  mine: ScheduleVersion;
  /** The version Redis held before (none: first time, or Redis lost it). */
  previous?: AppliedVersion | undefined;
  kept: string[];
  added: string[];
  removed: string[];
}

/** The warning for a config whose schedules are older than Redis's: both versions, and how to roll back. */
export function olderMessage(r: Reconciled): string {
  return (
    `this config's schedules (${describeVersion(r.mine)}) are older than those in Redis ` +
    `(${describeVersion(r.previous!)}): leaving Redis's schedules as they are. To roll back on purpose, ` +
    'run `audience-sync schedules --force` with this config, or give it a higher schedules_version'
  );
}

/**
 * Makes the queue's job schedulers exactly the config's schedules, if the config is not older than the
 * one that set them (`force` skips that check: a deliberate rollback). Reconcilers take turns under a
 * lock, and ids are derived from content, so processes reconciling at once end with one scheduler per
 * entry; entries gone from the config are removed. `onlyMissing` upserts only the schedulers Redis lacks
 * (the periodic check), leaving the others' next runs alone.
 */
export async function reconcileSchedules(
  config: Config,
  queue: Queue,
  redis: RedisClient,
  options: { force?: boolean; onlyMissing?: boolean } = {},
): Promise<Reconciled> {
  checkSchedules(config);
  const prefix = queue.opts.prefix ?? '';
  return underScheduleLock(redis, prefix, async () => {
    const mine = scheduleVersion(config);
    const stored = await redis.get(keys.schedulesApplied(prefix));
    const previous = stored ? (JSON.parse(stored) as AppliedVersion) : undefined;
    const result: Reconciled = { outcome: 'applied', mine, previous, kept: [], added: [], removed: [] };
    if (!options.force && previous && previous.content !== mine.content) {
      const replacedBefore = (await redis.hexists(keys.schedulesReplaced(prefix), mine.content)) === 1;
      if (mine.version < previous.version || (mine.version === previous.version && replacedBefore))
        return { ...result, outcome: 'older' };
    }

    const desired = new Map(config.schedules.map((s) => [scheduleId(s), s]));
    const existing = new Set((await queue.getJobSchedulers(0, -1)).map((s) => s.key));
    for (const [id, s] of desired) {
      if (existing.has(id) && options.onlyMissing) {
        result.kept.push(id);
        continue;
      }
      const data: SyncJob = {
        destination: s.destination,
        full: s.full,
        reason: 'schedule',
        ...(s.audience ? { audience: s.audience } : {}),
      };
      await queue.upsertJobScheduler(
        id,
        { pattern: s.cron, tz: s.tz },
        { name: 'sync', data, opts: SYNC_JOB_OPTIONS },
      );
      (existing.has(id) ? result.kept : result.added).push(id);
    }
    for (const id of existing) {
      if (desired.has(id)) continue;
      await queue.removeJobScheduler(id);
      result.removed.push(id);
    }

    if (previous?.content !== mine.content || (previous && mine.version > previous.version)) {
      const applied: AppliedVersion = {
        ...mine,
        version: Math.max(mine.version, previous?.content === mine.content ? previous.version : 0),
        at: new Date().toISOString(),
        by: `${hostname()}:${process.pid}`,
      };
      const tx = redis.multi().set(keys.schedulesApplied(prefix), JSON.stringify(applied));
      if (previous && previous.content !== mine.content)
        tx.hset(keys.schedulesReplaced(prefix), previous.content, applied.at);
      await tx.exec();
    }
    return result;
  });
}

/** Runs `work` while holding the lock reconcilers of the schedules take turns under. */
async function underScheduleLock<T>(redis: RedisClient, prefix: string, work: () => Promise<T>): Promise<T> {
  let lease: Lease | undefined;
  for (
    let waited = 0;
    !(lease = await Lease.acquire(redis, keys.reconcileLock(prefix), 30_000));
    waited += 100
  ) {
    if (waited > 60_000) throw new Error('another process has held the schedule lock for a minute');
    await sleep(100);
  }
  try {
    return await work();
  } finally {
    await lease.release();
  }
}

/** The job scheduler of a destination's periodic stats read (admin queue). */
export function statsScheduleId(destination: string): string {
  return `stats-${createHash('sha256').update(destination).digest('hex').slice(0, 16)}`;
}

/** `health.stats_minutes` as a cron pattern: BullMQ schedulers on `every` duplicate across workers. */
export function statsPattern(minutes: number): string {
  return minutes < 60 ? `*/${minutes} * * * *` : `0 */${minutes / 60} * * *`;
}

/**
 * Makes the admin queue's stats schedulers one per destination of the config, every
 * `health.stats_minutes`; a scheduler already on that pattern keeps its next run. Under the schedule lock.
 */
export async function reconcileStatsSchedules(
  config: Config,
  admin: Queue,
  redis: RedisClient,
): Promise<{ added: string[]; kept: string[]; removed: string[] }> {
  const prefix = admin.opts.prefix ?? '';
  const pattern = statsPattern(config.health.stats_minutes);
  return underScheduleLock(redis, prefix, async () => {
    const result = { added: [] as string[], kept: [] as string[], removed: [] as string[] };
    const desired = new Map(Object.keys(config.destinations).map((d) => [statsScheduleId(d), d]));
    const existing = new Map(
      (await admin.getJobSchedulers(0, -1))
        .filter((s) => s.key.startsWith('stats-'))
        .map((s) => [s.key, s.pattern]),
    );
    for (const [id, destination] of desired) {
      if (existing.get(id) === pattern) {
        result.kept.push(id);
        continue;
      }
      const data: AdminJob = { action: 'stats', destination };
      await admin.upsertJobScheduler(
        id,
        { pattern, tz: 'UTC' },
        { name: 'stats', data, opts: STATS_JOB_OPTIONS },
      );
      result.added.push(id);
    }
    for (const id of existing.keys()) {
      if (desired.has(id)) continue;
      await admin.removeJobScheduler(id);
      result.removed.push(id);
    }
    return result;
  });
}

/** When each destination (and audience) is next scheduled, in ms since the epoch. */
export async function nextRuns(
  queue: Queue,
): Promise<{ destination: string; audience?: string; next: number }[]> {
  const schedulers = await queue.getJobSchedulers(0, -1);
  return schedulers.flatMap((s) => {
    const data = (s.template?.data ?? {}) as Partial<SyncJob>;
    return data.destination && s.next
      ? [
          {
            destination: data.destination,
            ...(data.audience ? { audience: data.audience } : {}),
            next: s.next,
          },
        ]
      : [];
  });
}

/** The config's schedules, each with its id and when Redis's scheduler runs it next (none: not applied). */
export async function scheduledRuns(
  config: Config,
  queue: Queue,
): Promise<(Config['schedules'][number] & { id: string; next?: number })[]> {
  const next = new Map((await queue.getJobSchedulers(0, -1)).map((s) => [s.key, s.next]));
  return config.schedules.map((s) => {
    const id = scheduleId(s);
    const at = next.get(id);
    return { ...s, id, ...(at ? { next: at } : {}) };
  });
}
