import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { queuePrefix } from '../../jobs/queues.js';
import { runRecordsOf, recordRun } from '../../jobs/history.js';
import { recordRunReadings } from '../../src/health/audience.js';
import type { Logger } from '../../src/log.js';
import type { StateStore } from '../../src/record/store.js';
import { prepareSync, type ConnectorRegistry } from '../../src/sync/prepare.js';
import { syncDestination } from '../../src/sync/run.js';
import { tempDir } from '../helpers.js';

export const SEGMENTS = ['Champions', 'At Risk', 'Lost'] as const;

/**
 * A scores file whose segments are given (shape `scores`, a `segment` column), so that what each audience
 * should hold is counted here from the rows themselves: customer i is in SEGMENTS[i % 3], has an email
 * unless i % 5 = 0, and is opted out when i % 7 = 0.
 */
export function scoresShop(customers: number, destinations: string, extra = '') {
  const dir = tempDir('audience-sync-health-');
  const rows = ['customer_id,segment,email,opted_out'];
  const expected = new Map<string, number>();
  for (let i = 1; i <= customers; i++) {
    const segment = SEGMENTS[i % 3]!;
    const email = i % 5 === 0 ? '' : `buyer${i}@example.com`;
    const optedOut = i % 7 === 0;
    rows.push(`c${i},${segment},${email},${optedOut ? 'true' : 'false'}`);
    if (email && !optedOut) expected.set(segment, (expected.get(segment) ?? 0) + 1);
  }
  writeFileSync(path.join(dir, 'scores.csv'), rows.join('\n') + '\n');
  const prefix = `health-${path.basename(dir)}`;
  const config = path.join(dir, 'audience-sync.yaml');
  const write = (more = extra) =>
    writeFileSync(
      config,
      `source: { type: csv, path: scores.csv, shape: scores }
audiences:
  per_segment: false
  list:
    - { name: Champions, segments: [Champions] }
    - { name: Slipping, segments: ["At Risk"] }
destinations:
${destinations}
sync: { redis_prefix: ${prefix}, lease_seconds: 5, max_removal_share: 1 }
${more}`,
    );
  write();
  const emails = rows.slice(1).flatMap((r) => r.split(',')[2] || []);
  return { dir, config, prefix, queuePrefix: queuePrefix(prefix), expected, emails, write };
}

/** One run of the destination as a worker does it: sync, run records with stats, readings at `at`. */
export async function runAsWorker(
  redis: Redis,
  configFile: string,
  registry: ConnectorRegistry,
  store: StateStore,
  log: Logger,
  at: Date,
) {
  const prepared = await prepareSync(configFile, registry);
  const destination = prepared.destinations[0]!;
  const prefix = queuePrefix(prepared.config.sync.redis_prefix);
  const client = destination.connector.create(destination.config, {
    destination: destination.name,
    baseDir: prepared.baseDir,
    log,
  });
  try {
    const results = await syncDestination(destination, client, {
      segmented: prepared.segmented,
      audiences: prepared.audiences,
      store,
      log,
      retry: { attempts: 2, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 100 },
    });
    const run = await runRecordsOf(client, results, {
      run: `test-${at.getTime()}`,
      at: at.toISOString(),
      full: false,
      reason: 'resync',
    });
    await recordRun(redis, prefix, run.records);
    await recordRunReadings(redis, prefix, prepared.config, store, destination, run, at);
    return results;
  } finally {
    await client.close?.();
  }
}
