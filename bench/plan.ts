/**
 * Identify + diff for one destination in its own process (peak RSS is its own): the first plan (an
 * empty state: everything is an add), then the plan against the state a complete sync leaves
 * (nothing changed). Yardstick: crypto.hash('sha256') over the same normalised identifier strings.
 * Prints a JSON line.
 */
import { hash } from 'node:crypto';
import path from 'node:path';
import { Redis } from 'ioredis';
import { fileConnector } from '../connectors/file/index.js';
import { audiencesOf } from '../src/audience/audiences.js';
import { configSchema } from '../src/config/schema.js';
import { normalizeEmail, normalizePhone } from '../src/identity/normalize.js';
import { segmentCustomers } from '../src/score/pipeline.js';
import { Status } from '../src/state/records.js';
import { StateStore } from '../src/state/store.js';
import { planDestination, type Destination } from '../src/sync/run.js';
import { Identities } from '../src/sync/plan.js';

const [shopDir, redisUrl] = process.argv.slice(2) as [string, string];
const config = configSchema.parse({
  source: { type: 'csv', path: path.join(shopDir, 'orders.csv') },
  profiles: { type: 'csv', path: path.join(shopDir, 'customers.csv') },
  scoring: { analysis_date: '2026-01-01' },
  destinations: { local: { type: 'file', path: path.join(shopDir, 'out') } },
});
const seconds = (since: number) => (performance.now() - since) / 1000;

let t = performance.now();
const segmented = await segmentCustomers(config, { baseDir: shopDir });
const scoreSeconds = seconds(t);
const rss: Record<string, number> = {};
const mark = (label: string) => (rss[label] = Math.round(process.memoryUsage().rss / 2 ** 20));
mark('scored');
const destination: Destination = {
  name: 'local',
  connector: fileConnector as unknown as Destination['connector'],
  config: fileConnector.configSchema.parse(config.destinations.local),
};
const audiences = audiencesOf(config, segmented.scores.segments);
const redis = new Redis(redisUrl);
const store = new StateStore(redis, `bench-${process.pid}`);

t = performance.now();
const first = await planDestination(destination, { segmented, audiences, store });
const firstSeconds = seconds(t);
const adds = first.reduce((a, p) => a + p.add.length, 0);
mark('first plan');

// The state a complete first sync leaves.
t = performance.now();
const identities = new Identities(
  segmented,
  (person) => fileConnector.identify(person, destination.config as never),
  2,
);
for (const plan of first) {
  const state = store.audience('local', plan.audience);
  for (let i = 0; i < plan.add.length; i += 10_000)
    await state.append(
      plan.add.slice(i, i + 10_000).map((c) => {
        identities.resolve(c);
        const m = identities.member(c);
        return { key: m.key, status: Status.confirmed, upload: 0, slots: [...m.slots] };
      }),
    );
  await state.checkpoint();
}
const stateSeconds = seconds(t);
mark('state written');
first.length = 0;

t = performance.now();
const second = await planDestination(destination, { segmented, audiences, store });
const secondSeconds = seconds(t);
const unchanged = second.reduce((a, p) => a + p.unchanged, 0);
const changes = second.reduce((a, p) => a + p.add.length + p.remove.length, 0);
mark('second plan');

// Yardstick: SHA-256 of exactly the normalised strings this destination hashes.
const strings: string[] = [];
const { profile, ids, optedOut } = segmented.customers;
for (let i = 0; i < ids.length; i++) {
  if (optedOut[i]) continue;
  const email = profile.email?.[i];
  const phone = profile.phone?.[i];
  const e = email ? normalizeEmail(email) : undefined;
  const p = phone ? normalizePhone(phone, profile.country?.[i]?.trim() || 'US') : undefined;
  if (e) strings.push(e);
  if (p) strings.push(p);
}
t = performance.now();
let sink = 0;
for (const s of strings) sink ^= hash('sha256', s, 'buffer')[0]!;
const yardstickSeconds = seconds(t);

const keys = await redis.keys(`bench-${process.pid}:*`);
for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
redis.disconnect();
process.stdout.write(
  JSON.stringify({
    customers: ids.length,
    audiences: audiences.length,
    adds,
    unchanged,
    changes,
    identifiers: strings.length,
    scoreSeconds,
    firstSeconds,
    stateSeconds,
    secondSeconds,
    yardstickSeconds,
    sink,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    rssMbAfter: rss,
  }) + '\n',
);
