/**
 * The backfill scenario in its own process: `backfill.js score ORDERS` times one scoring run of the file;
 * `backfill.js backfill ORDERS REDIS_URL` times `audience-sync backfill` of 12 monthly dates (one read,
 * twelve scorings, twelve snapshots recorded in Redis). Prints a JSON line: { customers, rows, seconds, maxRssMb }.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { runBackfill } from '../app/cli/backfill.js';
import { configSchema } from '../src/config/schema.js';
import { createLogger } from '../src/log.js';
import { segmentCustomers } from '../src/score/pipeline.js';
import { tempDir } from './util.js';

const [kind, orders, redisUrl] = process.argv.slice(2) as [string, string, string | undefined];
let customers: number;
let rows: number;
const started = performance.now();
if (kind === 'score') {
  const config = configSchema.parse({ source: { type: 'csv', path: orders } });
  const result = await segmentCustomers(config, { baseDir: process.cwd() });
  customers = result.customers.ids.length;
  rows = result.report.source.rows;
} else {
  const file = path.join(tempDir('audience-sync-bench-backfill-'), 'audience-sync.yaml');
  // The shop's dates are fixed: a retention long enough to keep them whatever today is.
  writeFileSync(
    file,
    `source: { type: csv, path: ${JSON.stringify(orders)} }\nhistory: { keep_days: 36500 }\nsync: { redis_prefix: bench-backfill }\n`,
  );
  process.env.REDIS_URL = redisUrl;
  const write = process.stdout.write.bind(process.stdout);
  let printed = '';
  process.stdout.write = ((chunk: string) => ((printed += chunk), true)) as typeof process.stdout.write;
  try {
    await runBackfill(
      { config: file, from: '2025-01-01', to: '2025-12-01', every: 'month', json: true },
      createLogger({ level: 'warn' }),
    );
  } finally {
    process.stdout.write = write;
  }
  const out = JSON.parse(printed) as { dates: { customers: number; recorded: boolean }[] };
  if (out.dates.length !== 12 || !out.dates.every((d) => d.recorded))
    throw new Error(`expected 12 recorded dates, got ${printed}`);
  customers = out.dates[out.dates.length - 1]!.customers;
  rows = out.dates.length;
}
process.stdout.write(
  JSON.stringify({
    customers,
    rows,
    seconds: (performance.now() - started) / 1000,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
  }) + '\n',
);
