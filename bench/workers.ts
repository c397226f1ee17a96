/**
 * Scenario 5, one share of the work of a worker process: reads the scores, then for its audiences
 * (share `part` of `parts`, by size) plans and records what a complete sync leaves in the state. Run pinned
 * to one core (`taskset`), alone with all audiences or two at once on distinct audiences.
 * `node dist/bench/workers.js <scores.csv> <redisUrl> <part> <parts>`; prints a JSON line.
 * `node dist/bench/workers.js spin`: the control, a fixed amount of pure CPU work.
 */
import { hash } from 'node:crypto';
import path from 'node:path';
import { Redis } from 'ioredis';
import { segmentCustomers } from '../src/score/pipeline.js';
import { StateStore } from '../src/record/store.js';
import { planDestination } from '../src/sync/run.js';
import { localFile, scoresConfig, shareOf, writeState } from './util.js';

if (process.argv[2] === 'spin') {
  // The control: pure CPU work (SHA-256 of short strings, nothing in memory), for how the two cores scale.
  const started = performance.now();
  let sink = 0;
  for (let i = 0; i < 3_000_000; i++) sink ^= hash('sha256', `customer-${i}@example.com`).charCodeAt(0);
  process.stdout.write(JSON.stringify({ seconds: (performance.now() - started) / 1000, sink }) + '\n');
  process.exit(0);
}

const [csv, redisUrl, partArg, partsArg] = process.argv.slice(2) as [string, string, string, string];
const [part, parts] = [Number(partArg), Number(partsArg)];
const started = performance.now();
const config = scoresConfig(csv);
const segmented = await segmentCustomers(config, { baseDir: path.dirname(csv) });
const readSeconds = (performance.now() - started) / 1000;
const redis = new Redis(redisUrl);
const store = new StateStore(redis, `bench-workers-${process.pid}`);
const mine = await shareOf(config, segmented, part, parts);
const planStarted = performance.now();
const plans = await planDestination(localFile, { segmented, audiences: mine, store });
await writeState(store, plans);
const members = plans.reduce((a, p) => a + p.add.length, 0);
const planSeconds = (performance.now() - planStarted) / 1000;
const keys = await redis.keys(`bench-workers-${process.pid}:*`);
for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
redis.disconnect();
process.stdout.write(
  JSON.stringify({
    audiences: mine.length,
    members,
    readSeconds,
    planSeconds,
    seconds: (performance.now() - started) / 1000,
  }) + '\n',
);
