/**
 * One scoring scenario in its own process, so that its peak RSS is its own.
 * Prints a JSON line: { customers, rows, seconds, maxRssMb }.
 */
import { configSchema } from '../src/config/schema.js';
import { segmentCustomers } from '../src/score/pipeline.js';

const [kind, target, method = 'quantile'] = process.argv.slice(2);
const source =
  kind === 'postgres'
    ? {
        type: 'postgres',
        url: process.env.BENCH_PG_URL,
        query: `SELECT customer_id, order_date, amount FROM ${target}`,
      }
    : { type: 'csv', path: target };
const config = configSchema.parse({ source, scoring: { analysis_date: '2026-01-01', method } });
const started = performance.now();
const result = await segmentCustomers(config, { baseDir: process.cwd() });
const seconds = (performance.now() - started) / 1000;
process.stdout.write(
  JSON.stringify({
    customers: result.customers.ids.length,
    rows: result.report.source.rows,
    seconds,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
  }) + '\n',
);
