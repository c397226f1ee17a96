import type { Config } from '../config/schema.js';
import { ConfigError, SourceError } from '../errors.js';
import { buildSegmentMap, type SegmentMap } from '../segment/maps.js';
import { formatDay, todayUtc } from '../source/parse.js';
import {
  readCustomers,
  type Customers,
  type Orders,
  type ReadOptions,
  type ReadReport,
} from '../source/read.js';
import { LongDoubleSums } from '../source/sum.js';
import type { TextColumn } from '../source/text.js';
import type { Segmented } from './pipeline.js';
import { scoreCustomers, segmentSizes } from './rfm.js';

/** An orders source read once, to be scored as of any day up to the day it was read for. */
export interface OrderHistory {
  /** The day the source was read as of (today): its opt-outs and profiles are that day's. */
  readonly readDay: number;
  /** The read's report (bad rows, orders after `readDay`), checked once. */
  readonly report: ReadReport;
  readonly map: SegmentMap;
  /**
   * What `segmentCustomers` gives with `scoring.analysis_date` set to `day`: orders after it left out,
   * recency counted to it, customers without an order on or before it absent. Opt-outs and profiles
   * are `readDay`'s, for want of older ones.
   */
  segmentAsOf(day: number): Segmented;
}

/** Reads an orders source once, with every order kept, for scoring as of past days (`backfill`). */
export async function readOrderHistory(
  config: Pick<Config, 'source' | 'profiles' | 'scoring' | 'segments'>,
  options: { baseDir: string; onProgress?: ReadOptions['onProgress']; now?: number },
): Promise<OrderHistory> {
  if (config.source.shape !== undefined && config.source.shape !== 'orders')
    throw new ConfigError(
      `source.shape is ${config.source.shape}: scoring as of past dates needs the order history, one row per order, and a ${config.source.shape} source holds only each customer's ${config.source.shape === 'scores' ? 'scores' : 'totals'} as of its export`,
      'point source at the orders (customer_id, order_date, amount) and set source.shape: orders',
    );
  const map = buildSegmentMap(config.segments);
  const readDay = todayUtc(options.now);
  const read = await readCustomers(config.source, config.profiles, {
    analysisDay: readDay,
    scoring: config.scoring,
    baseDir: options.baseDir,
    keepOrders: true,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  const { customers: today, report } = read;
  const orders = read.orders!;
  const { method } = config.scoring;
  const mean = config.scoring.third_dimension === 'monetary' && config.scoring.monetary === 'mean';
  /** Per customer of `today`, its index in the customers of the day being scored (-1: none yet). */
  const local = new Int32Array(today.ids.length);

  return {
    readDay,
    report,
    map,
    segmentAsOf(day) {
      if (day > readDay)
        throw new ConfigError(
          `cannot score as of ${formatDay(day)}: the source was read as of ${formatDay(readDay)}`,
          'pick dates up to today',
        );
      const { customers, future } = customersAsOf(today, orders, day, local, mean);
      const scores = scoreCustomers(customers, method, map);
      return {
        analysisDay: day,
        customers,
        scores,
        map,
        sizes: segmentSizes(customers, scores, map),
        report: {
          ...report,
          future: {
            count: report.future.count + future.count,
            rows: mergeRows(report.future.rows, future.rows),
            after: formatDay(day),
            what: 'orders',
          },
        },
      };
    },
  };
}

const SAMPLE_LIMIT = 20;

/**
 * The reader's per-customer loop, replayed over the kept orders in row order with those after `day` left
 * out: customers in order of their first order on or before it, and sums added in row order (R's sums).
 */
function customersAsOf(
  today: Customers,
  orders: Orders,
  day: number,
  local: Int32Array,
  mean: boolean,
): { customers: Customers; future: { count: number; rows: number[] } } {
  local.fill(-1);
  const of = new Uint32Array(today.ids.length);
  const lastDay = new Int32Array(today.ids.length);
  const frequency = new Float64Array(today.ids.length);
  const sums = new LongDoubleSums();
  const futureRows: number[] = [];
  let futureCount = 0;
  let n = 0;
  const { customer, day: orderDay, value, row } = orders;
  for (let k = 0; k < customer.length; k++) {
    const d = orderDay[k]!;
    if (d > day) {
      if (futureRows.length < SAMPLE_LIMIT) futureRows.push(row[k]!);
      futureCount++;
      continue;
    }
    const c = customer[k]!;
    let i = local[c]!;
    if (i < 0) {
      i = local[c] = n++;
      of[i] = c;
      lastDay[i] = d;
      frequency[i] = 1;
      sums.push(value[k]!);
      continue;
    }
    if (d > lastDay[i]!) lastDay[i] = d;
    frequency[i]!++;
    if (!sums.add(i, value[k]!)) throw notFinite(row[k]!, day);
  }
  const ids = of.subarray(0, n);
  const recencyDays = new Float64Array(n);
  const totals = new Float64Array(n);
  const optedOut = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    recencyDays[i] = day - lastDay[i]!;
    totals[i] = sums.value(i);
    if (!Number.isFinite(totals[i])) throw notFinite(undefined, day);
    if (mean) totals[i] = totals[i]! / frequency[i]!;
    optedOut[i] = today.optedOut[ids[i]!]!;
  }
  const select = <K extends string>(columns: Partial<Record<K, TextColumn>>) =>
    Object.fromEntries(
      Object.entries<TextColumn | undefined>(columns).map(([name, column]) => [name, column?.select(ids)]),
    ) as Partial<Record<K, TextColumn>>;
  const customers: Customers = {
    shape: 'orders',
    ids: today.ids.select(ids),
    recencyDays,
    frequency: frequency.slice(0, n),
    value: totals,
    profile: select(today.profile),
    attributes: select(today.attributes) as Record<string, TextColumn>,
    optedOut,
  };
  return { customers, future: { count: futureCount, rows: futureRows } };
}

/** A customer's amounts that add up past ±1.8e308 as of an earlier day (the whole history's did not). */
function notFinite(row: number | undefined, day: number): SourceError {
  return new SourceError(
    `source: ${row === undefined ? 'a customer' : `row ${row}: its customer`}'s amounts as of ${formatDay(day)} add up to a sum that is not a finite number (beyond ±1.8e308)`,
    'check that source.columns.amount names the order amount (values this large are not money), and fix the extract',
  );
}

/** The first few of two ascending lists of row numbers, in order. */
function mergeRows(a: number[], b: number[]): number[] {
  return [...a, ...b].sort((x, y) => x - y).slice(0, SAMPLE_LIMIT);
}
