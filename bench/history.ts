/**
 * Segment history, in its own process: what recording a snapshot adds to scoring (a first snapshot, and
 * the next day's, which counts the movement from the first), Redis memory per customer and per snapshot,
 * and how long reads of 400 snapshots take. Prints a JSON line.
 */
import { connectors } from '../connectors/index.js';
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { newToken } from '../src/api/auth.js';
import { configSchema } from '../src/config/schema.js';
import { createLogger } from '../src/log.js';
import {
  listSnapshots,
  latestSnapshot,
  movementBetween,
  recordSnapshot,
  scoredOf,
  sourceIdOf,
} from '../src/history/snapshots.js';
import { DEFAULT_CAPACITY_SHARE, keptFrom } from '../src/history/customers.js';
import { KeyFollower } from '../src/history/follow.js';
import { segmentCustomers, type Segmented } from '../src/score/pipeline.js';
import { formatDay } from '../src/source/parse.js';

const [firstCsv, secondCsv, redisUrl] = process.argv.slice(2) as [string, string, string];
const redis = new Redis(redisUrl);
const prefix = `{bench-${process.pid}}`;
const seconds = (since: number) => (performance.now() - since) / 1000;
const config = (file: string, date: string) =>
  configSchema.parse({ source: { type: 'csv', path: file }, scoring: { analysis_date: date } });
// Both files are one source as far as history goes: the same export, a day apart.
const source = sourceIdOf(config(firstCsv, '2026-01-01').source);
const meta = { source, by: 'sync' as const, method: 'quantile' };
/** Bytes Redis gives every key of the history (MEMORY USAGE, values and overhead). */
const historyMemory = async () => {
  let bytes = 0;
  for (const k of await redis.keys(`${prefix}:*`))
    bytes += Number(await redis.memory('USAGE', k, 'SAMPLES', 0));
  return bytes;
};

/** Scores a file as `sync` and `score` do: the snapshot's keys made on a thread while the file is read. */
async function scoring(file: string, date: string): Promise<{ segmented: Segmented; keys?: KeyFollower }> {
  const keys = KeyFollower.start();
  const segmented = await segmentCustomers(config(file, date), {
    baseDir: path.dirname(file),
    ...(keys ? { onCustomers: keys.follow } : {}),
  });
  return { segmented, ...(keys ? { keys } : {}) };
}

await redis.flushall();
let t = performance.now();
let scored = await scoring(firstCsv, '2026-01-01');
const scoreSeconds = seconds(t);
const customers = scored.segmented.customers.ids.length;
t = performance.now();
await recordSnapshot(redis, prefix, scored.segmented, meta, { keys: scored.keys });
const firstRecordSeconds = seconds(t);
// The same per-customer work on this thread alone (no thread to make the keys while the file is read).
t = performance.now();
keptFrom(scoredOf(scored.segmented)!, DEFAULT_CAPACITY_SHARE);
const inlineSeconds = seconds(t);

t = performance.now();
scored = await scoring(secondCsv, '2026-01-02');
const segmented = scored.segmented;
const nextScoreSeconds = seconds(t);
t = performance.now();
const next = await recordSnapshot(redis, prefix, segmented, meta, { keys: scored.keys });
const nextRecordSeconds = seconds(t);
const moved = next.snapshot.movement.cells
  .filter((c) => c.from !== c.to)
  .reduce((a, c) => a + c.customers, 0);
const historyBytes = await historyMemory();
const snapshotBytes = Number(await redis.memory('USAGE', `${prefix}:snapshot:${source}:2026-01-02`));

// 398 older snapshots (a backfill's worth), so reads see 400: their size does not depend on customers.
const sample = path.join(path.dirname(firstCsv), 'history-sample.csv');
const head = Buffer.alloc(1 << 18);
const fd = openSync(firstCsv, 'r');
readSync(fd, head, 0, head.length, 0);
closeSync(fd);
writeFileSync(sample, head.toString('utf8').split('\n').slice(0, 1001).join('\n') + '\n');
const small = await segmentCustomers(config(sample, '2026-01-01'), { baseDir: path.dirname(sample) });
for (let k = 1; k <= 398; k++) {
  small.analysisDay = segmented.analysisDay - 1 - k;
  await recordSnapshot(redis, prefix, small, { ...meta, by: 'backfill' }, { keepDays: 1000 });
}
const reads: Record<string, () => Promise<unknown>> = {
  'latest snapshot': () => latestSnapshot(redis, prefix, source),
  '400 snapshots (4 pages)': async () => {
    let cursor: string | undefined;
    do {
      const page = await listSnapshots(redis, prefix, source, { limit: 100, ...(cursor ? { cursor } : {}) });
      cursor = page.next;
    } while (cursor);
  },
  'movement, one step': () => movementBetween(redis, prefix, source, '2026-01-01', '2026-01-02'),
  [`movement, ${398} steps`]: () =>
    movementBetween(redis, prefix, source, formatDay(segmented.analysisDay - 399), '2026-01-02'),
};
/** Median milliseconds of 21 calls (one before them warms up). */
async function median(read: () => Promise<unknown>): Promise<number> {
  await read();
  const times: number[] = [];
  for (let k = 0; k < 21; k++) {
    const s = performance.now();
    await read();
    times.push(performance.now() - s);
  }
  return times.sort((a, b) => a - b)[10]!;
}
const readMs: Record<string, number> = {};
for (const [name, read] of Object.entries(reads)) readMs[name] = await median(read);

// The same reads through the HTTP API, as a console or a script would make them (a bearer token).
const { token, hash } = newToken();
const configFile = path.join(path.dirname(firstCsv), 'history-api.yaml');
writeFileSync(
  configFile,
  `source: { type: csv, path: ${JSON.stringify(firstCsv)} }
destinations: { local: { type: file, path: out } }
sync: { redis_prefix: ${JSON.stringify(prefix.slice(1, -1))} }
http: { tokens: [{ name: bench, role: viewer, token_hash: "${hash}" }] }
`,
);
process.env.REDIS_URL = redisUrl;
// Loaded after the scorings, so that nothing of the API is in the heap while they are timed.
const { startApi } = await import('../src/api/server.js');
const api = await startApi({ configFile, connectors, log: createLogger({ level: 'warn' }), port: 0 });
const get = (route: string) => async () => {
  const res = await fetch(`${api.url}${route}`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`${route}: ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
};
const apiReads: Record<string, () => Promise<unknown>> = {
  'GET /api/v1/segments': get('/api/v1/segments'),
  'GET /api/v1/snapshots?limit=100': get('/api/v1/snapshots?limit=100'),
  'GET /api/v1/movement': get('/api/v1/movement'),
  'GET /api/v1/destinations': get('/api/v1/destinations'),
};
const apiMs: Record<string, number> = {};
for (const [name, read] of Object.entries(apiReads)) apiMs[name] = await median(read);
await api.close();

await redis.flushall();
redis.disconnect();

process.stdout.write(
  JSON.stringify({
    customers,
    scoreSeconds,
    firstRecordSeconds,
    inlineSeconds,
    threads: scored.keys !== undefined,
    nextScoreSeconds,
    nextRecordSeconds,
    moved,
    historyBytes,
    snapshotBytes,
    readMs,
    apiMs,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
  }) + '\n',
);
