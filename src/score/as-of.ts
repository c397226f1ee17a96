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
   * are `readDay`'s, for want of older ones, and the report's bad rows are the read's, counted once.
   */
  segmentAsOf(day: number): Segmented;
}

/**
 * Reads an orders source once, with every order kept, for scoring as of past days (`backfill`); a
 * customers or scores source is refused (by the reader, from its header) for want of an order history.
 */
export async function readOrderHistory(
  config: Pick<Config, 'source' | 'profiles' | 'scoring' | 'segments'>,
  options: { baseDir: string; onProgress?: ReadOptions['onProgress']; now?: number },
): Promise<OrderHistory> {
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
  const replay = new Replay(orders, today.ids.length);

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
      replay.to(day);
      const customers = replay.customers(today, day, mean);
      const scores = scoreCustomers(customers, method, map);
      const future = replay.future(day);
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
 * The reader's per-customer loop, replayed over the kept orders up to a day, moved forward a date at a
 * time: each order is taken in once, in row order among the orders of its step (which keeps customers'
 * arrays read in file order, not at random). What a read as of the day would give: customers
 * in order of their first row on or before it, and each sum added in row order (R's long-double sums): a
 * customer whose newly taken order comes before rows already summed has its sum added over again.
 */
class Replay {
  /** The orders on or before this day are taken in. */
  private upTo = -Infinity;
  private taken = 0;
  /** Per customer (index of the read's customers): its first and last order taken in (-1: none yet). */
  private readonly firstOrder: Int32Array;
  private readonly lastOrder: Int32Array;
  private readonly lastDay: Int32Array;
  private readonly frequency: Float64Array;
  private readonly sums = new LongDoubleSums();
  /** 1 at each customer's first order taken in: the customers' order is these, in row order. */
  private readonly isFirst: Uint8Array;
  private present = 0;
  /** 1 for a customer whose sum is to be added over again, in row order. */
  private readonly redo: Uint8Array;
  /** Each customer's orders in row order, built on the first sum to add over again. */
  private byCustomer?: { starts: Uint32Array; orders: Uint32Array };

  constructor(
    private readonly orders: Orders,
    customers: number,
  ) {
    this.firstOrder = new Int32Array(customers).fill(-1);
    this.lastOrder = new Int32Array(customers);
    this.lastDay = new Int32Array(customers);
    this.frequency = new Float64Array(customers);
    for (let c = 0; c < customers; c++) this.sums.push(0);
    this.isFirst = new Uint8Array(orders.day.length);
    this.redo = new Uint8Array(customers);
  }

  /** Takes in the orders up to `day` (starting over for a day before the last one). */
  to(day: number): void {
    if (day < this.upTo) {
      this.firstOrder.fill(-1);
      this.isFirst.fill(0);
      this.upTo = -Infinity;
      this.taken = 0;
      this.present = 0;
    }
    const after = this.upTo;
    this.upTo = day;
    const { customer, day: orderDay, value, row } = this.orders;
    const { firstOrder, lastOrder, lastDay, frequency, sums, isFirst, redo } = this;
    const again: number[] = [];
    for (let k = 0; k < orderDay.length; k++) {
      const d = orderDay[k]!;
      if (d > day || d <= after) continue;
      this.taken++;
      const c = customer[k]!;
      if (firstOrder[c]! < 0) {
        firstOrder[c] = lastOrder[c] = k;
        lastDay[c] = d;
        frequency[c] = 1;
        sums.restart(c, value[k]!);
        isFirst[k] = 1;
        this.present++;
        continue;
      }
      if (d > lastDay[c]!) lastDay[c] = d;
      frequency[c]!++;
      if (k < firstOrder[c]!) {
        isFirst[firstOrder[c]!] = 0;
        isFirst[k] = 1;
        firstOrder[c] = k;
      }
      if (redo[c]) continue;
      if (k > lastOrder[c]!) {
        if (!sums.add(c, value[k]!)) throw notFinite(row[k], day);
        lastOrder[c] = k;
      } else {
        redo[c] = 1;
        again.push(c);
      }
    }
    if (again.length === 0) return;
    const { starts, orders } = (this.byCustomer ??= groupedByCustomer(customer, firstOrder.length));
    for (const c of again) {
      redo[c] = 0;
      let first = true;
      for (let at = starts[c]!; at < starts[c + 1]!; at++) {
        const k = orders[at]!;
        if (orderDay[k]! > day) continue;
        if (first) sums.restart(c, value[k]!);
        else if (!sums.add(c, value[k]!)) throw notFinite(row[k], day);
        first = false;
        lastOrder[c] = k;
      }
    }
  }

  /** The customers as of the day taken in last, with the read's opt-outs, profiles and attributes. */
  customers(today: Customers, day: number, mean: boolean): Customers {
    const n = this.present;
    const ids = new Uint32Array(n);
    const { customer } = this.orders;
    for (let k = 0, i = 0; i < n; k++) if (this.isFirst[k]) ids[i++] = customer[k]!;
    const recencyDays = new Float64Array(n);
    const frequency = new Float64Array(n);
    const value = new Float64Array(n);
    const optedOut = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const c = ids[i]!;
      recencyDays[i] = day - this.lastDay[c]!;
      frequency[i] = this.frequency[c]!;
      value[i] = this.sums.value(c);
      // A sum whose last addition stayed finite can still round past the largest double.
      if (!Number.isFinite(value[i])) throw notFinite(undefined, day);
      if (mean) value[i] = value[i]! / frequency[i]!;
      optedOut[i] = today.optedOut[c]!;
    }
    const select = <K extends string>(columns: Partial<Record<K, TextColumn>>) =>
      Object.fromEntries(
        Object.entries<TextColumn | undefined>(columns).map(([name, column]) => [name, column?.select(ids)]),
      ) as Partial<Record<K, TextColumn>>;
    return {
      shape: 'orders',
      ids: today.ids.select(ids),
      recencyDays,
      frequency,
      value,
      profile: select(today.profile),
      attributes: select(today.attributes) as Record<string, TextColumn>,
      optedOut,
    };
  }

  /** The orders after the day taken in last: how many, and the first rows. */
  future(day: number): { count: number; rows: number[] } {
    const { day: orderDay, row } = this.orders;
    const rows: number[] = [];
    for (let k = 0; k < orderDay.length && rows.length < SAMPLE_LIMIT; k++)
      if (orderDay[k]! > day) rows.push(row[k]!);
    return { count: orderDay.length - this.taken, rows };
  }
}

/** Each customer's order indexes in row order: orders[starts[c], starts[c + 1]). */
function groupedByCustomer(customer: Uint32Array, customers: number) {
  const starts = new Uint32Array(customers + 1);
  for (const c of customer) starts[c + 1]!++;
  for (let c = 1; c <= customers; c++) starts[c]! += starts[c - 1]!;
  const at = starts.slice(0, customers);
  const orders = new Uint32Array(customer.length);
  for (let k = 0; k < customer.length; k++) orders[at[customer[k]!]!++] = k;
  return { starts, orders };
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
