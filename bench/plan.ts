/**
 * Scenario 2, identify + diff for one destination in its own process (peak RSS is its own): precomputed
 * scores (email and phone per customer) into the 11 default segments, one audience each. The first
 * run plans audience by audience against an empty state (everything is an add), each plan let go before
 * the next, as a sync does; the state a complete sync leaves is written (planned again, untimed); then the
 * next day's scores (1 % of customers changed) are planned against it. Yardstick: one thread of
 * crypto.hash('sha256') over exactly the normalised identifier strings the first run sends.
 * Prints a JSON line.
 */
import { hash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';
import { Redis } from 'ioredis';
import { fileConnector } from '../connectors/file/index.js';
import { identifyThread } from '../connectors/index.js';
import { audiencesOf } from '../src/audience/audiences.js';
import { configSchema } from '../src/config/schema.js';
import { normalizeEmail, normalizePhone } from '../src/identify/normalize.js';
import { segmentCustomers, type Segmented } from '../src/score/pipeline.js';
import { StateStore } from '../src/record/store.js';
import { plansOf, type Destination } from '../src/sync/run.js';
import { writeState } from './util.js';

const post = (session: Session, method: string) =>
  new Promise<unknown>((resolve, reject) =>
    session.post(method, (error, result) => (error ? reject(error) : resolve(result))),
  );

const [firstCsv, secondCsv, redisUrl] = process.argv.slice(2) as [string, string, string];
const configFor = (file: string) =>
  configSchema.parse({
    source: { type: 'csv', path: file },
    scoring: { analysis_date: '2026-01-01' },
    destinations: { local: { type: 'file', path: path.join(path.dirname(file), 'out') } },
  });
const seconds = (since: number) => (performance.now() - since) / 1000;
const rss: Record<string, number> = {};
const detail: Record<string, Record<string, number>> = {};
const mark = (label: string) => {
  const m = process.memoryUsage();
  const mb = (v: number) => Math.round(v / 2 ** 20);
  detail[label] = { heap: mb(m.heapUsed), arrayBuffers: mb(m.arrayBuffers), external: mb(m.external) };
  rss[label] = mb(m.rss);
};
const destination: Destination = {
  name: 'local',
  connector: fileConnector as unknown as Destination['connector'],
  config: fileConnector.configSchema.parse({ type: 'file', path: 'out' }),
};
const redis = new Redis(redisUrl);
const store = new StateStore(redis, `bench-${process.pid}`);

let t = performance.now();
let config = configFor(firstCsv);
let segmented: Segmented | undefined = await segmentCustomers(config, { baseDir: path.dirname(firstCsv) });
const loadSeconds = seconds(t);
const customers = segmented.customers.ids.length;
mark('loaded');
let audiences = audiencesOf(config, segmented.scores.segments);

// BENCH_PROFILE=file.cpuprofile: a CPU profile of one plan (main thread), the next day's unless
// BENCH_PROFILE_RUN=first.
const profiled = async <T>(run: 'first' | 'next', plan: () => Promise<T>): Promise<T> => {
  if (!process.env.BENCH_PROFILE || (process.env.BENCH_PROFILE_RUN ?? 'next') !== run) return plan();
  const profiler = new Session();
  profiler.connect();
  await post(profiler, 'Profiler.enable');
  await post(profiler, 'Profiler.start');
  const result = await plan();
  const { profile } = (await post(profiler, 'Profiler.stop')) as { profile: unknown };
  writeFileSync(process.env.BENCH_PROFILE, JSON.stringify(profile));
  profiler.disconnect();
  return result;
};

// The first run, audience by audience as a sync goes, each plan let go before the next.
let firstSeconds = 0;
let adds = 0;
await profiled('first', async () => {
  t = performance.now();
  for await (const plan of plansOf(destination, {
    segmented: segmented!,
    audiences,
    store,
    threads: identifyThread,
  }))
    adds += plan.add.length;
  firstSeconds = seconds(t);
});
mark('first plan');
// The memory target is for reading and the first run: the peak so far.
const maxRssFirstMb = process.resourceUsage().maxRSS / 1024;

// The state a complete first sync leaves: the same plans again, each written before the next is made.
t = performance.now();
const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
const memoryBefore = await usedMemory();
let storedHashes = 0;
for await (const plan of plansOf(destination, { segmented, audiences, store, threads: identifyThread }))
  storedHashes += await writeState(store, [plan]);
const stateSeconds = seconds(t);
// Scenario 4: Redis memory per member, and beyond the 32 bytes per identifier hash removals need.
const stateBytes = (await usedMemory()) - memoryBefore;
mark('state written');

// Yardstick: SHA-256 of exactly the normalised strings the first run sent, in slices (no big array).
const { profile, ids, optedOut } = segmented.customers;
let yardstickSeconds = 0;
let identifiers = 0;
let sink = 0;
for (let from = 0; from < ids.length; from += 100_000) {
  const strings: string[] = [];
  for (let i = from; i < Math.min(ids.length, from + 100_000); i++) {
    if (optedOut[i]) continue;
    const email = profile.email?.get(i);
    const phone = profile.phone?.get(i);
    const e = email ? normalizeEmail(email) : undefined;
    const p = phone ? normalizePhone(phone, profile.country?.get(i)?.trim() || 'US') : undefined;
    if (e) strings.push(e);
    if (p) strings.push(p);
  }
  t = performance.now();
  // As the issue defines it: crypto.hash('sha256', s), a hex digest (a Buffer digest is 2-3 times slower).
  for (const s of strings) sink ^= hash('sha256', s).charCodeAt(0);
  yardstickSeconds += seconds(t);
  identifiers += strings.length;
}
// Lets the first day's customers go before the second day is read.
segmented = undefined;

// The next day: 1 % of the customers changed.
t = performance.now();
config = configFor(secondCsv);
const next = await segmentCustomers(config, { baseDir: path.dirname(secondCsv) });
const reloadSeconds = seconds(t);
audiences = audiencesOf(config, next.scores.segments);
mark('reloaded');
let secondSeconds = 0;
let unchanged = 0;
let changes = 0;
await profiled('next', async () => {
  const plans = plansOf(destination, { segmented: next, audiences, store, threads: identifyThread });
  for (;;) {
    t = performance.now();
    const plan = await plans.next();
    secondSeconds += seconds(t);
    if (plan.done) break;
    unchanged += plan.value.unchanged;
    changes += plan.value.add.length + plan.value.remove.length;
  }
});
mark('second plan');

const keys = await redis.keys(`bench-${process.pid}:*`);
for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
redis.disconnect();
process.stdout.write(
  JSON.stringify({
    customers,
    audiences: audiences.length,
    adds,
    unchanged,
    changes,
    identifiers,
    loadSeconds,
    reloadSeconds,
    firstSeconds,
    stateSeconds,
    stateBytes,
    storedHashes,
    secondSeconds,
    yardstickSeconds,
    sink,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    maxRssFirstMb,
    rssMbAfter: rss,
    memoryMbAfter: detail,
  }) + '\n',
);
