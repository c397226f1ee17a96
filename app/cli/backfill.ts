import type { RedisClient } from '../../src/redis-client.js';
import { queuePrefix } from '../../jobs/queues.js';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError, ExitCode } from '../../src/errors.js';
import {
  scoredOf,
  GONE,
  latestSnapshot,
  listSnapshots,
  NEW,
  recordSnapshot,
  sourceIdOf,
  type Scored,
  type Snapshot,
} from '../../src/history/snapshots.js';
import type { Logger } from '../../src/log.js';
import { readOrderHistory } from '../../src/score/as-of.js';
import { dayNumber, formatDay, todayUtc } from '../../src/source/parse.js';
import { logReadReport } from '../../src/source/report.js';
import { progressBar, table, thousands } from './output.js';
import { connect, redisFor } from './sync.js';

export interface BackfillOptions {
  config?: string | undefined;
  from?: string;
  to?: string;
  every?: string;
  json?: boolean;
}

export const EVERY = ['month', 'week', 'day'] as const;
export type Every = (typeof EVERY)[number];
/** Dates one backfill scores at most: ten years of weeks, or under three of days. */
export const MAX_DATES = 1000;

/** One backfilled date, as printed. */
export interface BackfilledDate {
  date: string;
  customers: number;
  /** Customers without an order before the date before (null for the first snapshot, which has no movement). */
  new: number | null;
  gone: number | null;
  /** Customers whose segment changed since the date before. */
  moved: number | null;
  /** False when the date already had a snapshot, which is kept as it was. */
  recorded: boolean;
}

/**
 * Scores an orders source as of past dates (one read of the source) and records a segment snapshot for
 * each, with the movement from the date before: a year of history on the first day.
 */
export async function runBackfill(
  options: BackfillOptions,
  log: Logger,
  now = Date.now(),
): Promise<ExitCode> {
  if (!options.config)
    throw new ConfigError('backfill needs a config: pass --config FILE or create ./audience-sync.yaml');
  const every = everyOf(options.every);
  const from = dayOf(options.from, '--from');
  const today = todayUtc(now);
  const { config, dir } = loadConfig(options.config);
  const keepDays = config.history.keep_days;
  if (from > today)
    throw new ConfigError(
      `--from ${formatDay(from)} is after today (${formatDay(today)})`,
      'backfill scores past dates',
    );
  let to = options.to === undefined ? undefined : dayOf(options.to, '--to');
  if (to !== undefined && to > today)
    throw new ConfigError(
      `--to ${formatDay(to)} is after today (${formatDay(today)})`,
      'backfill scores past dates',
    );

  const source = sourceIdOf(config.source);
  const prefix = queuePrefix(config.sync.redis_prefix);
  const redis = redisFor();
  await connect(redis);
  try {
    let oldest: string | undefined;
    if (to === undefined) {
      oldest = (await listSnapshots(redis, prefix, source, { limit: 1 })).snapshots[0]?.date;
      to = oldest === undefined ? today - 1 : dayOf(oldest, 'the oldest snapshot') - 1;
    }
    if (from > to) {
      if (options.to !== undefined)
        throw new ConfigError(`--from ${formatDay(from)} is after --to ${formatDay(to)}`, 'swap them');
      const why = oldest
        ? `snapshots of this source start on ${oldest}, and --from is not before it`
        : '--from is today';
      if (options.json)
        process.stdout.write(JSON.stringify({ source, dates: [], recorded: 0, kept: 0 }) + '\n');
      else process.stdout.write(`nothing to backfill: ${why} (pass --to to score later dates)\n`);
      return ExitCode.ok;
    }
    const dates = datesBetween(from, to, every);
    // Snapshots are kept for history.keep_days days before the latest one, which is ours or a later one.
    const newest = Math.max(dates[dates.length - 1]!, await newestSnapshot(redis, prefix, source));
    if (from < newest - keepDays)
      throw new ConfigError(
        `--from ${formatDay(from)} is more than history.keep_days (${keepDays}) days before ${newest === dates[dates.length - 1] ? 'the last date backfilled' : 'the latest snapshot'} (${formatDay(newest)}): its snapshot would not be kept`,
        `pick --from ${formatDay(newest - keepDays)} or later, or raise history.keep_days in the config`,
      );

    const started = performance.now();
    const bar = progressBar('reading');
    let history: Awaited<ReturnType<typeof readOrderHistory>>;
    try {
      history = await readOrderHistory(config, {
        baseDir: dir,
        now,
        onProgress: (p) => bar.update(p.done, p.total, p.rows),
      });
    } finally {
      bar.stop();
    }
    if (!options.json) logReadReport(history.report, log);
    const asOfToday = formatDay(history.readDay);
    const done: BackfilledDate[] = [];
    let previous: Scored | undefined;
    for (const day of dates) {
      const segmented = history.segmentAsOf(day);
      const date = formatDay(day);
      const { recorded, snapshot, segments } = await recordSnapshot(
        redis,
        prefix,
        segmented,
        {
          source,
          by: 'backfill',
          method: config.scoring.method,
          note: `backfilled on ${asOfToday}: orders after ${date} left out; opt-outs and profiles are those of ${asOfToday}`,
        },
        { previous, keepDays, capacityShare: config.history.movement_capacity, now },
      );
      previous = segments ?? scoredOf(segmented);
      done.push({ date, customers: snapshot.customers, ...movedOf(snapshot), recorded });
      log.debug(`${date}: ${snapshot.customers} customers, ${recorded ? 'recorded' : 'kept'}`);
    }
    const seconds = Math.round(performance.now() - started) / 1000;
    print(done, { source, every, asOfToday, seconds, json: options.json === true });
    return ExitCode.ok;
  } finally {
    redis.disconnect();
  }
}

function print(
  done: BackfilledDate[],
  o: { source: string; every: Every; asOfToday: string; seconds: number; json: boolean },
): void {
  const recorded = done.filter((d) => d.recorded).length;
  const note = `opt-outs and profiles are today's (${o.asOfToday}): the source keeps no older ones`;
  if (o.json) {
    process.stdout.write(
      JSON.stringify({
        source: o.source,
        every: o.every,
        dates: done,
        recorded,
        kept: done.length - recorded,
        note,
        seconds: o.seconds,
      }) + '\n',
    );
    return;
  }
  const dash = (n: number | null) => (n === null ? '-' : thousands(n));
  process.stdout.write(
    table(
      ['date', 'customers', 'new', 'gone', 'moved', 'snapshot'],
      done.map((d) => [
        d.date,
        thousands(d.customers),
        dash(d.new),
        dash(d.gone),
        dash(d.moved),
        d.recorded ? 'recorded' : 'kept (existed)',
      ]),
    ) +
      `\n${recorded} of ${done.length} snapshots recorded, every ${o.every}, from one read of the source (${o.seconds} s).\n` +
      `Note: ${note}.\n`,
  );
}

/** The latest snapshot's analysis day, or -Infinity before the first. */
async function newestSnapshot(redis: RedisClient, prefix: string, source: string): Promise<number> {
  const latest = await latestSnapshot(redis, prefix, source);
  return latest ? dayOf(latest.date, 'the latest snapshot') : -Infinity;
}

/** New, gone and moved customers of a snapshot's movement, or null where it has none. */
function movedOf(snapshot: Snapshot): Pick<BackfilledDate, 'new' | 'gone' | 'moved'> {
  if (snapshot.movement.from === null) return { new: null, gone: null, moved: null };
  let arrived = 0;
  let left = 0;
  let moved = 0;
  for (const cell of snapshot.movement.cells) {
    if (cell.from === NEW) arrived += cell.customers;
    else if (cell.to === GONE) left += cell.customers;
    else if (cell.from !== cell.to) moved += cell.customers;
  }
  return { new: arrived, gone: left, moved };
}

function everyOf(value: string | undefined): Every {
  if (value === undefined) throw new ConfigError('backfill needs --every: month, week or day');
  if (!(EVERY as readonly string[]).includes(value))
    throw new ConfigError(`--every: expected month, week or day, got '${value}'`);
  return value as Every;
}

function dayOf(value: string | undefined, flag: string): number {
  if (value === undefined) throw new ConfigError(`backfill needs ${flag} YYYY-MM-DD`);
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  const day = m ? dayNumber(Number(m[1]), Number(m[2]), Number(m[3])) : undefined;
  if (day === undefined) throw new ConfigError(`${flag}: '${value}' is not a date`, 'write it as YYYY-MM-DD');
  return day;
}

/**
 * The dates from `from` to `to` (inclusive), ascending: every day, every seventh day, or the same day of
 * each month (the month's last day where it has fewer days: from Jan 31, Feb 28 then Mar 31).
 */
export function datesBetween(from: number, to: number, every: Every): number[] {
  const dates: number[] = [];
  const start = new Date(from * 86_400_000);
  const [y, m, d] = [start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate()];
  for (let k = 0; ; k++) {
    let day: number;
    if (every === 'month') {
      const last = new Date(Date.UTC(y, m + k + 1, 0)).getUTCDate();
      day = Date.UTC(y, m + k, Math.min(d, last)) / 86_400_000;
    } else day = from + k * (every === 'week' ? 7 : 1);
    if (day > to) return dates;
    if (dates.length === MAX_DATES)
      throw new ConfigError(
        `--from ${formatDay(from)} to ${formatDay(to)} every ${every} is more than ${MAX_DATES} dates`,
        `pick a later --from, an earlier --to, or a longer --every (month or week)`,
      );
    dates.push(day);
  }
}
