import type { RedisClient } from '../redis-client.js';
import type { AudienceStats } from '../connector.js';
import { scrub } from '../redact.js';
import type { StateCounts } from '../record/store.js';
import { readingSchema, type Reading } from './schema.js';

/**
 * Readings of each audience's size on its platform, kept over time: a sorted set per audience scored by
 * the time of the reading, trimmed to `health.keep_days` and `health.keep_samples` at every write.
 */

export function readingsKey(prefix: string, destination: string, audience: string): string {
  return `${prefix}:health:${destination}:${audience}`;
}

/** The divergence rule folded over the audience's readings so far (see `foldOf`). */
export function foldKey(prefix: string, destination: string, audience: string): string {
  return `${prefix}:health-fold:${destination}:${audience}`;
}

export interface Retention {
  keepDays: number;
  keepSamples: number;
}

/** What we knew of the audience when the platform was read. */
export interface Ours {
  expected: number | null;
  counts: StateCounts | undefined;
  changed?: boolean;
}

/** Warnings and errors in a reading: scrubbed, and short. */
const brief = (text: string) => scrub(text).slice(0, 300);

/** A reading from the platform's stats (or the error that kept us from them) and what we knew then. */
export function readingOf(
  stats: AudienceStats | { error: string },
  ours: Ours,
  by: Reading['by'],
  at: Date,
): Reading {
  const read = 'error' in stats ? undefined : stats;
  const sent = ours.counts ? ours.counts.confirmed + ours.counts.addPending : null;
  return {
    at: at.toISOString(),
    by,
    // A size the platform does not show is unknown: never 0.
    size: read?.size !== undefined && Number.isFinite(read.size) && read.size >= 0 ? read.size : null,
    counts: read?.counts === 'identifiers' ? 'identifiers' : 'people',
    matchRate:
      read?.matchRate !== undefined && read.matchRate >= 0 && read.matchRate <= 1 ? read.matchRate : null,
    expected: ours.expected,
    sent,
    confirmed: ours.counts?.confirmed ?? null,
    changed: ours.changed ?? false,
    warnings: (read?.warnings ?? []).slice(0, 10).map(brief),
    problems: (read?.problems ?? []).slice(0, 10).map(brief),
    ...('error' in stats ? { error: brief(stats.error) } : {}),
  };
}

export async function recordReadings(
  redis: RedisClient,
  prefix: string,
  readings: readonly { destination: string; audience: string; reading: Reading }[],
  retention: Retention,
): Promise<void> {
  if (readings.length === 0) return;
  const tx = redis.multi();
  for (const { destination, audience, reading } of readings) {
    const key = readingsKey(prefix, destination, audience);
    const time = Date.parse(reading.at);
    tx.zadd(key, time, JSON.stringify(readingSchema.parse(reading)))
      .zremrangebyscore(key, '-inf', `(${time - retention.keepDays * 86_400_000}`)
      .zremrangebyrank(key, 0, -retention.keepSamples - 1)
      // An audience no longer configured or read leaves nothing behind.
      .pexpire(key, retention.keepDays * 86_400_000);
  }
  await tx.exec();
}

/** The latest `count` readings, oldest first. */
export async function latestReadings(
  redis: RedisClient,
  prefix: string,
  destination: string,
  audience: string,
  count: number,
): Promise<Reading[]> {
  const raw = await redis.zrange(readingsKey(prefix, destination, audience), -count, -1);
  return raw.map((r) => JSON.parse(r) as Reading);
}

/**
 * A page of readings in time order, from `from` to `to` (ISO times, inclusive); `cursor` continues a page
 * (the `next` of the one before).
 */
export async function listReadings(
  redis: RedisClient,
  prefix: string,
  destination: string,
  audience: string,
  page: { from?: string; to?: string; cursor?: string; limit?: number } = {},
): Promise<{ readings: Reading[]; next?: string }> {
  const limit = page.limit ?? 100;
  const start = page.cursor ?? (page.from ? String(Date.parse(page.from)) : '-inf');
  const end = page.to ? String(Date.parse(page.to)) : '+inf';
  const raw = await redis.zrangebyscore(
    readingsKey(prefix, destination, audience),
    start,
    end,
    'WITHSCORES',
    'LIMIT',
    0,
    limit + 1,
  );
  const readings: Reading[] = [];
  let next: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (readings.length === limit) {
      next = raw[i + 1]!;
      break;
    }
    readings.push(JSON.parse(raw[i]!) as Reading);
  }
  return { readings, ...(next !== undefined ? { next } : {}) };
}
