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
import { fileConnector } from '../connectors/file/index.js';
import { audiencesOf, membershipOf } from '../src/audience/audiences.js';
import { configSchema } from '../src/config/schema.js';
import { segmentCustomers } from '../src/score/pipeline.js';
import { StateStore } from '../src/record/store.js';
import { planDestination, type Destination } from '../src/sync/run.js';
import { writeState } from './util.js';

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
const config = configSchema.parse({
  source: { type: 'csv', path: csv },
  scoring: { analysis_date: '2026-01-01' },
  destinations: { local: { type: 'file', path: path.join(path.dirname(csv), 'out') } },
});
const segmented = await segmentCustomers(config, { baseDir: path.dirname(csv) });
const readSeconds = (performance.now() - started) / 1000;

const destination: Destination = {
  name: 'local',
  connector: fileConnector as unknown as Destination['connector'],
  config: fileConnector.configSchema.parse({ type: 'file', path: 'out' }),
};
const redis = new Redis(redisUrl);
const store = new StateStore(redis, `bench-workers-${process.pid}`);
// Audiences shared out by size, as an operator would place them on machines: the largest first, each to
// the process with the fewest members so far (every process computes the same split).
const all = audiencesOf(config, segmented.scores.segments).map((spec) => ({
  spec,
  size: membershipOf(spec, segmented).members.length,
}));
const loads = new Array<number>(parts).fill(0);
const mine = all
  .sort((a, b) => b.size - a.size)
  .filter(({ size }) => {
    const least = loads.indexOf(Math.min(...loads));
    loads[least]! += size;
    return least === part;
  })
  .map(({ spec }) => spec);
const planStarted = performance.now();
const plans = await planDestination(destination, { segmented, audiences: mine, store });
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
