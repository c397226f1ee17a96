import { createHash, randomUUID } from 'node:crypto';
import { serversOf, type RedisClient } from '../redis-client.js';
import { z } from 'zod';
import type { Config, SourceConfig } from '../config/schema.js';
import { ConfigError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Segmented } from '../score/pipeline.js';
import { dayNumber, formatDay } from '../source/parse.js';
import {
  DEFAULT_CAPACITY_SHARE,
  decodeKept,
  encodeKept,
  isScored,
  keptFrom,
  keptShapeOf,
  MAX_SEGMENTS,
  movementCounts,
  scoredFrom,
  type Kept,
  type MovementCounts,
  type Scored,
} from './customers.js';
import type { FollowedKeys, KeyFollower } from './follow.js';
import { reusedLayout, type KeySketch, type SketchShape } from './sketch.js';

export type { Scored } from './customers.js';

/**
 * Segment snapshots: one per source and analysis date, aggregates only (sizes, breaks, the movement
 * matrix from the snapshot before). The latest snapshot alone keeps a segment per customer, to count
 * the next movement; older ones are a few hundred bytes each.
 */

const isoDay = z.string().regex(/^\d{4}-\d{2}-\d{2}$/);

export const NEW = 'new';
export const GONE = 'gone';

export const movementCellSchema = z.object({
  /** A segment of the earlier snapshot, or `new` for customers it did not have. */
  from: z.string(),
  /** A segment of the later snapshot, or `gone` for customers it does not have. */
  to: z.string(),
  customers: z.number().int().min(0),
});
export type MovementCell = z.infer<typeof movementCellSchema>;

export const snapshotSchema = z.object({
  /** Which source was scored (`sourceIdOf`): a digest of its location, never its credentials. */
  source: z.string(),
  /** The analysis date. */
  date: isoDay,
  recordedAt: z.string(),
  by: z.enum(['sync', 'worker', 'score', 'backfill']),
  method: z.string(),
  breaks: z
    .object({
      recency: z.array(z.number()),
      frequency: z.array(z.number()),
      monetary: z.array(z.number()),
    })
    .optional(),
  customers: z.number().int().min(0),
  segments: z.array(
    z.object({
      segment: z.string(),
      customers: z.number().int().min(0),
      /** Scored and counted, but kept out of every audience. */
      optedOut: z.number().int().min(0),
    }),
  ),
  movement: z.object({
    /** The snapshot these customers are counted from; null when none could be (the first, or no per-customer data). */
    from: isoDay.nullable(),
    /** Non-zero cells only. */
    cells: z.array(movementCellSchema),
    /** Why `from` is null where an earlier snapshot exists. */
    reason: z.string().optional(),
  }),
  /** What a reader should know about how it was made (a backfill scores past dates with today's profiles). */
  note: z.string().optional(),
});
export type Snapshot = z.infer<typeof snapshotSchema>;

export const movementStepSchema = z.object({ from: isoDay, to: isoDay, cells: z.array(movementCellSchema) });

export const movementSchema = z.object({
  from: isoDay,
  to: isoDay,
  /** True when every snapshot from \`from\` to \`to\` counted its movement from the one right before it. */
  exact: z.boolean(),
  /**
   * When exact: the matrix of each step, oldest first. A customer's path is not kept, so steps are not
   * summed into one matrix (A→B→A is not A→A); one step is the direct matrix.
   */
  steps: z.array(movementStepSchema).optional(),
  /** When not exact: which step is missing, and why. */
  reason: z.string().optional(),
});
export type Movement = z.infer<typeof movementSchema>;

export const DEFAULT_KEEP_DAYS = 400;

/** A stable name for a source: its kind and location, without credentials. */
export function sourceIdOf(source: SourceConfig): string {
  const where =
    source.type === 'csv' ? { path: source.path } : { query: source.query, url: withoutSecret(source.url) };
  return createHash('sha256')
    .update(JSON.stringify({ type: source.type, ...where }))
    .digest('hex')
    .slice(0, 16);
}

function withoutSecret(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    u.username = '';
    return u.toString();
  } catch {
    return '';
  }
}

const key = {
  /** Sorted set of analysis dates (score: day number). */
  dates: (prefix: string, source: string) => `${prefix}:snapshots:${source}`,
  snapshot: (prefix: string, source: string, date: string) => `${prefix}:snapshot:${source}:${date}`,
  /** Hash: which generation of per-customer segments is the latest snapshot's, with its date and names. */
  latest: (prefix: string, source: string) => `${prefix}:snapshots:${source}:latest`,
  /** Set of generations written (to clean up what a crash left behind). */
  generations: (prefix: string, source: string) => `${prefix}:snapshots:${source}:generations`,
  /** Up to SAMPLE_SIZE customer ids per segment of the latest snapshot (operators' samples; JSON). */
  sample: (prefix: string, source: string) => `${prefix}:snapshots:${source}:sample`,
  chunk: (prefix: string, source: string, generation: string, i: number) =>
    `${prefix}:snapshots:${source}:customers:${generation}:${i}`,
};

/** Per-customer segments of one scoring, in memory: what the next movement matrix needs. */
export function scoredOf(segmented: Segmented, followed?: FollowedKeys): Scored | undefined {
  return scoredFrom(
    formatDay(segmented.analysisDay),
    segmented.customers.ids,
    segmented.scores.segment,
    segmented.scores.segments,
    followed,
  );
}

export interface SnapshotMeta {
  source: string;
  by: Snapshot['by'];
  method: string;
  note?: string;
}

/**
 * Records the snapshot of a scoring, once per source and analysis date (`recorded: false` when one
 * existed: a second destination or a retried job scored the same date). The movement is counted from
 * `previous` when given (a backfill's date before), else from the stored latest snapshot when it is
 * earlier. A snapshot later than every other becomes the latest and keeps its per-customer segments.
 */
export async function recordSnapshot(
  redis: RedisClient,
  prefix: string,
  segmented: Segmented,
  meta: SnapshotMeta,
  options: {
    previous?: Scored | undefined;
    keepDays?: number;
    /** history.movement_capacity: the share of customers that may arrive or leave before the next scoring. */
    capacityShare?: number;
    /** The customers' keys, made while the source was read. */
    keys?: KeyFollower | undefined;
    now?: number;
  } = {},
): Promise<{ recorded: boolean; snapshot: Snapshot; segments?: Scored }> {
  const date = formatDay(segmented.analysisDay);
  const existing = await redis.get(key.snapshot(prefix, meta.source, date));
  if (existing !== null) return { recorded: false, snapshot: parseSnapshot(existing) };
  const keepDays = options.keepDays ?? DEFAULT_KEEP_DAYS;
  const [, newest] = await redis.zrevrange(key.dates(prefix, meta.source), 0, 0, 'WITHSCORES');
  if (newest !== undefined && segmented.analysisDay < Number(newest) - keepDays)
    throw new ConfigError(
      `the analysis date ${date} is more than ${keepDays} days before the latest snapshot (${formatDay(Number(newest))})`,
      'raise history.keep_days to keep older snapshots',
    );
  const latestMeta = await redis.hgetall(key.latest(prefix, meta.source));
  const latestDate = latestMeta.date;
  const later = latestDate === undefined || latestDate < date;
  const fromBackfill = options.previous && options.previous.date < date ? options.previous : undefined;
  const loading = !fromBackfill && latestDate !== undefined && later;
  // The kept header first (a few bytes): the new sketch's shape, so that the keys' thread sorts while the
  // rest of the latest's per-customer segments arrive and are read.
  const header = loading ? await readHeader(redis, prefix, meta.source, latestMeta) : undefined;
  const load = loading ? loadLatest(redis, prefix, meta.source, latestMeta) : undefined;
  load?.catch(() => undefined); // awaited below: a failure is thrown there, not left unhandled meanwhile
  // Per-customer segments are needed to count movement, or to be kept as the new latest.
  const needed = later || fromBackfill !== undefined;
  const shape = reusedLayout(
    Math.ceil((options.capacityShare ?? DEFAULT_CAPACITY_SHARE) * segmented.customers.ids.length),
    header,
  );
  const followed =
    needed && options.keys && segmented.scores.segments.length <= MAX_SEGMENTS
      ? await options.keys.finish(segmented.customers.ids, segmented.scores.segment, shape.layout)
      : undefined;
  const current = needed ? scoredOf(segmented, followed) : undefined;
  const previous = fromBackfill ?? (await load);
  const followedSketch = followed?.sketch;
  const earlier = await redis.zrevrangebyscore(
    key.dates(prefix, meta.source),
    `(${segmented.analysisDay}`,
    '-inf',
    'LIMIT',
    0,
    1,
  );
  const becomesLatest = current !== undefined && later;
  const generation = becomesLatest ? randomUUID() : undefined;
  const kept = generation && current ? keptFrom(current, shape, followedSketch) : undefined;
  const chunks = kept ? encodeKept(kept) : [];
  // Sent before the movement is counted, so that Redis takes them in meanwhile (on a core of its own).
  const written = generation ? writeChunks(redis, prefix, meta.source, generation, chunks) : undefined;
  written?.catch(() => undefined); // awaited below: a failure is thrown there
  const { movement, counts } = movementOf(previous, current, earlier[0], kept?.sketch ?? followedSketch);
  const snapshot: Snapshot = {
    source: meta.source,
    date,
    recordedAt: new Date(options.now ?? Date.now()).toISOString(),
    by: meta.by,
    method: meta.method,
    ...(segmented.scores.breaks ? { breaks: segmented.scores.breaks } : {}),
    customers: segmented.customers.ids.length,
    segments: segmented.sizes
      .slice()
      .sort(
        (a, b) => segmented.scores.segments.indexOf(a.segment) - segmented.scores.segments.indexOf(b.segment),
      )
      .map((s) => ({ segment: s.segment, customers: s.customers, optedOut: s.optedOut })),
    movement,
    ...(meta.note ? { note: meta.note } : {}),
  };

  await written;
  const recorded = (await redis.eval(
    RECORD,
    3,
    key.snapshot(prefix, meta.source, date),
    key.dates(prefix, meta.source),
    key.latest(prefix, meta.source),
    storedForm(snapshot),
    String(segmented.analysisDay),
    date,
    generation ?? '',
    String(chunks.length),
    JSON.stringify(current?.names ?? []),
  )) as number;
  if (recorded === 1 && generation && (await redis.hget(key.latest(prefix, meta.source), 'date')) === date)
    await redis.set(
      key.sample(prefix, meta.source),
      JSON.stringify({
        date,
        segments: samplesOf(segmented),
        movement: movementSamplesOf(segmented, previous?.names ?? [], counts),
      }),
    );
  await collectGenerations(redis, prefix, meta.source);
  await dropOld(redis, prefix, meta.source, keepDays);
  if (recorded === 0) {
    const stored = await redis.get(key.snapshot(prefix, meta.source, date));
    return { recorded: false, snapshot: stored ? parseSnapshot(stored) : snapshot };
  }
  const counted = later
    ? current
    : await relinkNext(redis, prefix, meta.source, segmented, current, latestMeta);
  // The per-customer segments counted here, for a caller scoring the next date (backfill) to pass back.
  return { recorded: true, snapshot, ...(counted ? { segments: counted } : {}) };
}

/**
 * A date recorded right before the latest snapshot (a backfill's last date) becomes the step the latest
 * counts its movement from: its per-customer segments are kept, so that step is exact. Returns the
 * per-customer segments of the date recorded, when they were computed.
 */
async function relinkNext(
  redis: RedisClient,
  prefix: string,
  source: string,
  segmented: Segmented,
  current: Scored | undefined,
  latestMeta: Record<string, string>,
): Promise<Scored | undefined> {
  const [next] = await redis.zrangebyscore(
    key.dates(prefix, source),
    `(${segmented.analysisDay}`,
    '+inf',
    'LIMIT',
    0,
    1,
  );
  if (next === undefined || next !== latestMeta.date) return current;
  const latest = await loadLatest(redis, prefix, source, latestMeta);
  const earlier = current ?? scoredOf(segmented);
  if (!latest || !earlier) return earlier;
  const { movement } = movementOf(earlier, latest, earlier.date);
  const snapshotKey = key.snapshot(prefix, source, next);
  await redis.watch(snapshotKey);
  const text = await redis.get(snapshotKey);
  const stored = text === null ? undefined : parseSnapshot(text);
  if (!stored || (stored.movement.from !== null && stored.movement.from >= earlier.date)) {
    await redis.unwatch();
    return earlier;
  }
  // A concurrent change of that snapshot wins (exec answers null); this step is then counted by it.
  await redis
    .multi()
    .set(snapshotKey, storedForm({ ...stored, movement }))
    .exec();
  return earlier;
}

/**
 * Atomically: the snapshot unless one exists for the date, its date in the index, and the latest
 * pointer when this date is later than the latest's (a concurrent later one keeps its place).
 */
const RECORD = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
if ARGV[4] ~= '' then
  local latest = redis.call('HGET', KEYS[3], 'date')
  if not latest or latest < ARGV[3] then
    redis.call('HSET', KEYS[3], 'date', ARGV[3], 'generation', ARGV[4], 'chunks', ARGV[5], 'names', ARGV[6])
  end
end
return 1`;

function movementOf(
  previous: Scored | Kept | undefined,
  current: Scored | Kept | undefined,
  earlier: string | undefined,
  sketch?: KeySketch,
): { movement: Snapshot['movement']; counts?: MovementCounts } {
  if (!previous || (earlier !== undefined && previous.date < earlier))
    return {
      movement: {
        from: null,
        cells: [],
        ...(earlier
          ? { reason: `no per-customer segments kept for ${earlier}: only the latest snapshot has them` }
          : {}),
      },
    };
  if (!current)
    return { movement: { from: null, cells: [], reason: 'more segments than per-customer history keeps' } };
  const counts = movementCounts(previous, current, { examples: SAMPLE_SIZE, sketch });
  if (!counts) {
    const kept = isScored(previous) ? (current as Kept) : previous;
    return {
      movement: {
        from: null,
        cells: [],
        reason: `more customers arrived or left between ${previous.date} and ${current.date} than the history kept enough to tell apart (about ${kept.capacity.toLocaleString('en-US')}, history.movement_capacity of the customers); raise history.movement_capacity to count such steps`,
      },
    };
  }
  const cells: MovementCell[] = [];
  previous.names.forEach((from, i) =>
    current.names.forEach((to, j) => {
      const n = counts.moved[i]![j]!;
      if (n > 0) cells.push({ from, to, customers: n });
    }),
  );
  current.names.forEach((to, j) => {
    if (counts.arrived[j]! > 0) cells.push({ from: NEW, to, customers: counts.arrived[j]! });
  });
  previous.names.forEach((from, i) => {
    if (counts.left[i]! > 0) cells.push({ from, to: GONE, customers: counts.left[i]! });
  });
  return { movement: { from: previous.date, cells }, counts };
}

async function writeChunks(
  redis: RedisClient,
  prefix: string,
  source: string,
  generation: string,
  chunks: readonly Buffer[],
): Promise<void> {
  // Sent back to back (one pipeline), not one round trip per chunk; Redis runs them in this order, so the
  // generation is listed (to be cleaned up after a crash) before any chunk of it is written.
  await Promise.all([
    redis.sadd(key.generations(prefix, source), generation),
    ...chunks.map((chunk, i) => redis.set(key.chunk(prefix, source, generation, i), chunk)),
  ]);
}

async function loadLatest(
  redis: RedisClient,
  prefix: string,
  source: string,
  meta: Record<string, string>,
): Promise<Kept | undefined> {
  const { date, generation, chunks, names } = meta;
  if (!date || !generation || !chunks || !names || chunks === '0') return undefined;
  const stored = await Promise.all(
    Array.from({ length: Number(chunks) }, (_, i) =>
      redis.getBuffer(key.chunk(prefix, source, generation, i)),
    ),
  );
  if (stored.some((chunk) => chunk === null)) return undefined;
  try {
    return decodeKept(date, JSON.parse(names) as string[], stored as Buffer[]);
  } catch {
    return undefined; // an older format (before this one): the next step's movement is not counted
  }
}

/** The sketch layout and capacity of the latest's per-customer segments, from the head of its first chunk. */
async function readHeader(
  redis: RedisClient,
  prefix: string,
  source: string,
  meta: Record<string, string>,
): Promise<SketchShape | undefined> {
  const { generation, chunks } = meta;
  if (!generation || !chunks || chunks === '0') return undefined;
  const head = await redis.getrangeBuffer(key.chunk(prefix, source, generation, 0), 0, 4095);
  return keptShapeOf(head);
}

/** Deletes the per-customer segments of every generation but the latest's (older ones, or a crash's). */
async function collectGenerations(redis: RedisClient, prefix: string, source: string): Promise<void> {
  const keep = await redis.hget(key.latest(prefix, source), 'generation');
  for (const generation of await redis.smembers(key.generations(prefix, source))) {
    if (generation === keep) continue;
    // Every server's share of the keys (a Cluster's masters each SCAN their own).
    for (const server of serversOf(redis)) {
      let cursor = '0';
      do {
        const [next, found] = await server.scan(
          cursor,
          'MATCH',
          key.chunk(prefix, source, generation, 0).replace(/:0$/, ':*'),
          'COUNT',
          100,
        );
        if (found.length) await redis.unlink(...found);
        cursor = next;
      } while (cursor !== '0');
    }
    await redis.srem(key.generations(prefix, source), generation);
  }
}

/**
 * Drops snapshots more than `keepDays` days older than the latest one (not today: a config scoring a
 * fixed date, like the example's, keeps its history).
 */
async function dropOld(redis: RedisClient, prefix: string, source: string, keepDays: number): Promise<void> {
  const [, newest] = await redis.zrevrange(key.dates(prefix, source), 0, 0, 'WITHSCORES');
  if (newest === undefined) return;
  const old = await redis.zrangebyscore(key.dates(prefix, source), '-inf', `(${Number(newest) - keepDays}`);
  if (old.length === 0) return;
  await redis
    .multi()
    .unlink(...old.map((d) => key.snapshot(prefix, source, d)))
    .zrem(key.dates(prefix, source), ...old)
    .exec();
}

/**
 * A snapshot as Redis keeps it: segments and movement cells as arrays, the cells' names listed once
 * (a month's steps with `new` and `gone` in every segment stay well under 4 KB).
 */
interface StoredSnapshot extends Omit<Snapshot, 'segments' | 'movement'> {
  segments: [string, number, number][];
  movement: Omit<Snapshot['movement'], 'cells'> & { names: string[]; cells: number[] };
}

function storedForm(snapshot: Snapshot): string {
  const names = [...new Set(snapshot.movement.cells.flatMap((c) => [c.from, c.to]))];
  const at = new Map(names.map((name, i) => [name, i]));
  const stored: StoredSnapshot = {
    ...snapshot,
    segments: snapshot.segments.map((s) => [s.segment, s.customers, s.optedOut]),
    movement: {
      ...snapshot.movement,
      names,
      cells: snapshot.movement.cells.flatMap((c) => [at.get(c.from)!, at.get(c.to)!, c.customers]),
    },
  };
  return JSON.stringify(stored);
}

/** A stored snapshot as readers see it (the form before this one, with objects, is read as it is). */
function readStored(text: string): Snapshot {
  const stored = JSON.parse(text) as StoredSnapshot | Snapshot;
  if (!('names' in stored.movement)) return stored as Snapshot;
  const { names, cells, ...movement } = stored.movement;
  const unpacked: MovementCell[] = [];
  for (let i = 0; i + 2 < cells.length; i += 3)
    unpacked.push({ from: names[cells[i]!]!, to: names[cells[i + 1]!]!, customers: cells[i + 2]! });
  return {
    ...stored,
    segments: (stored as StoredSnapshot).segments.map(([segment, customers, optedOut]) => ({
      segment,
      customers,
      optedOut,
    })),
    movement: { ...movement, cells: unpacked },
  };
}

function parseSnapshot(text: string): Snapshot {
  return snapshotSchema.parse(readStored(text));
}

export interface SnapshotPage {
  snapshots: Snapshot[];
  /** Pass as `cursor` for the next page; absent on the last. */
  next?: string;
}

/** Snapshots oldest first, between two dates (inclusive), a page at a time. */
export async function listSnapshots(
  redis: RedisClient,
  prefix: string,
  source: string,
  page: { from?: string; to?: string; cursor?: string; limit?: number } = {},
): Promise<SnapshotPage> {
  const limit = page.limit ?? 100;
  const low = page.cursor ?? page.from;
  const min = low ? (page.cursor ? `(${dayOf(low)}` : String(dayOf(low))) : '-inf';
  const max = page.to ? String(dayOf(page.to)) : '+inf';
  const dates = await redis.zrangebyscore(key.dates(prefix, source), min, max, 'LIMIT', 0, limit + 1);
  const shown = dates.slice(0, limit);
  const texts = shown.length ? await redis.mget(...shown.map((d) => key.snapshot(prefix, source, d))) : [];
  // Written by recordSnapshot from typed values; readers that answer users (the API) check the result.
  const snapshots = texts.flatMap((t) => (t === null ? [] : [readStored(t)]));
  return { snapshots, ...(dates.length > limit ? { next: shown[shown.length - 1]! } : {}) };
}

export async function getSnapshot(
  redis: RedisClient,
  prefix: string,
  source: string,
  date: string,
): Promise<Snapshot | undefined> {
  const text = await redis.get(key.snapshot(prefix, source, date));
  return text === null ? undefined : parseSnapshot(text);
}

/** The latest snapshot, or undefined before the first scoring. */
export async function latestSnapshot(
  redis: RedisClient,
  prefix: string,
  source: string,
): Promise<Snapshot | undefined> {
  const [date] = await redis.zrevrange(key.dates(prefix, source), 0, 0);
  return date === undefined ? undefined : getSnapshot(redis, prefix, source, date);
}

/**
 * Movement from one retained snapshot to a later one: the sum of the matrices between them, which is
 * exact only when each snapshot counted its movement from the one right before it. Otherwise `exact`
 * is false with the reason; no numbers are made up.
 */
export async function movementBetween(
  redis: RedisClient,
  prefix: string,
  source: string,
  from: string,
  to: string,
): Promise<Movement> {
  if (from >= to)
    return { from, to, exact: false, reason: `'from' (${from}) must be earlier than 'to' (${to})` };
  const chain = await listSnapshots(redis, prefix, source, { from, to, limit: 100_000 });
  const dates = chain.snapshots.map((s) => s.date);
  for (const [name, date] of [
    ['from', from],
    ['to', to],
  ] as const)
    if (!dates.includes(date))
      return { from, to, exact: false, reason: `no snapshot for ${date} ('${name}')` };
  const steps = chain.snapshots.slice(1);
  const broken = steps.find((s, k) => s.movement.from !== chain.snapshots[k]!.date);
  if (broken)
    return {
      from,
      to,
      exact: false,
      reason: `the snapshot of ${broken.date} counted no movement from ${dates[dates.indexOf(broken.date) - 1]}${broken.movement.reason ? ` (${broken.movement.reason})` : ''}`,
    };
  return {
    from,
    to,
    exact: true,
    steps: steps.map((s) => ({ from: s.movement.from!, to: s.date, cells: s.movement.cells })),
  };
}

function dayOf(date: string): number {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  const day = /^\d{4}-\d{2}-\d{2}$/.test(date) ? dayNumber(y, m, d) : undefined;
  if (day === undefined) throw new RangeError(`'${date}' is not a date: write it as YYYY-MM-DD`);
  return day;
}

/** Customer ids an operator may see per segment: a few to look up, never a list to export. */
export const SAMPLE_SIZE = 20;

/** The first SAMPLE_SIZE customers of each segment, in source order. */
function samplesOf(segmented: Segmented): Record<string, string[]> {
  const { segment, segments } = segmented.scores;
  const out: Record<string, string[]> = Object.fromEntries(segments.map((name) => [name, []]));
  let open = segments.length;
  for (let i = 0; i < segment.length && open > 0; i++) {
    const ids = out[segments[segment[i]!]!]!;
    if (ids.length >= SAMPLE_SIZE) continue;
    ids.push(segmented.customers.ids.get(i)!);
    if (ids.length === SAMPLE_SIZE) open--;
  }
  return out;
}

/**
 * The first SAMPLE_SIZE customers of each cell of the latest snapshot's movement (from a segment or
 * `new` to a segment), picked in no customer order. Customers who left have no id kept, so `gone` cells have none.
 */
function movementSamplesOf(
  segmented: Segmented,
  previousNames: readonly string[],
  counts: MovementCounts | undefined,
): MovementSample[] {
  if (!counts?.examples) return [];
  const names = segmented.scores.segments;
  return counts.examples.flatMap((row, o) =>
    row.flatMap((indexes, l) =>
      indexes.length === 0
        ? []
        : [
            {
              from: o < previousNames.length ? previousNames[o]! : NEW,
              to: names[l]!,
              customerIds: indexes.map((i) => segmented.customers.ids.get(i)!),
            },
          ],
    ),
  );
}

interface MovementSample {
  from: string;
  to: string;
  customerIds: string[];
}

interface StoredSamples {
  date: string;
  segments: Record<string, string[]>;
  movement?: MovementSample[];
}

/** Up to SAMPLE_SIZE customer ids of a segment in the latest snapshot; undefined before the first. */
export async function segmentSample(
  redis: RedisClient,
  prefix: string,
  source: string,
  segment: string,
): Promise<{ date: string; customerIds: string[] } | undefined> {
  const text = await redis.get(key.sample(prefix, source));
  if (text === null) return undefined;
  const stored = JSON.parse(text) as StoredSamples;
  return { date: stored.date, customerIds: stored.segments[segment] ?? [] };
}

/**
 * Up to SAMPLE_SIZE customer ids of one cell of the latest snapshot's movement (`from` a segment or
 * `new`, `to` a segment), with the date they were scored on; undefined before the first snapshot.
 */
export async function movementSample(
  redis: RedisClient,
  prefix: string,
  source: string,
  cell: { from: string; to: string },
): Promise<{ date: string; customerIds: string[] } | undefined> {
  const text = await redis.get(key.sample(prefix, source));
  if (text === null) return undefined;
  const stored = JSON.parse(text) as StoredSamples;
  const found = stored.movement?.find((c) => c.from === cell.from && c.to === cell.to);
  return { date: stored.date, customerIds: found?.customerIds ?? [] };
}

/** What became of a scoring's snapshot: recorded now, there already, or not recorded and why. */
export type SnapshotOutcome =
  | { status: 'recorded' | 'kept'; date: string; movementFrom: string | null }
  | { status: 'failed'; reason: string };

/**
 * The snapshot of a run's scoring, recorded best effort: history must never fail a sync, so an error
 * is an outcome to report, not a throw.
 */
export async function recordScoring(
  redis: RedisClient,
  prefix: string,
  config: Pick<Config, 'source' | 'scoring' | 'history'>,
  segmented: Segmented,
  by: Snapshot['by'],
  keys?: KeyFollower,
): Promise<SnapshotOutcome> {
  try {
    const { recorded, snapshot } = await recordSnapshot(
      redis,
      prefix,
      segmented,
      {
        source: sourceIdOf(config.source),
        by,
        method: segmented.customers.given ? 'given' : config.scoring.method,
      },
      { keepDays: config.history.keep_days, capacityShare: config.history.movement_capacity, keys },
    );
    return {
      status: recorded ? 'recorded' : 'kept',
      date: snapshot.date,
      movementFrom: snapshot.movement.from,
    };
  } catch (error) {
    return { status: 'failed', reason: describeError(error) };
  } finally {
    keys?.stop();
  }
}

/** One log line for a snapshot recorded now or not recorded; nothing when the date had one. */
export function logSnapshot(outcome: SnapshotOutcome, log: Logger): void {
  if (outcome.status === 'failed') log.warn(`segment snapshot not recorded: ${outcome.reason}`);
  else if (outcome.status === 'recorded')
    log.info(
      `segment snapshot of ${outcome.date} recorded${outcome.movementFrom ? ` (movement from ${outcome.movementFrom})` : ''}`,
    );
}
