import { ConfigError, SourceError } from '../errors.js';
import type { ProfilesConfig, ScoringConfig, Shape, SourceConfig } from '../config/schema.js';
import { ColumnResolver, PROFILE_FIELDS, expectedColumns, type ProfileField } from './columns.js';
import { dateParser, formatDay, isInfinite, parseAmount, parseCount, parseFlag } from './parse.js';
import { delimiterNote, isUndecodable, openRows, undecodableReason, type RowStream } from './rows.js';
import { LongDoubleSums } from './sum.js';
import { TextColumn, TextIndex } from './text.js';

/**
 * Customers as columns: one entry per customer in order of first appearance. The dimension values
 * are what scoring needs; profile fields and attributes are carried for audiences downstream.
 */
export interface Customers {
  readonly shape: Shape;
  /** Customer ids, packed (see TextColumn). */
  readonly ids: TextColumn;
  /** Days from the last order to the analysis date. (This and the next two are empty for a *scores* source.) */
  readonly recencyDays: Float64Array;
  /** Number of orders. */
  readonly frequency: Float64Array;
  /** The third dimension: monetary value (sum or mean), engagement or duration. */
  readonly value: Float64Array;
  /** Scores given by a *scores* source (0 where only a segment was given). */
  readonly given?: { r: Uint8Array; f: Uint8Array; m: Uint8Array; segment?: TextColumn };
  readonly profile: Partial<Record<ProfileField, TextColumn>>;
  readonly attributes: Record<string, TextColumn>;
  /** 1 where the customer opted out (or gave no consent): scored, but in no audience. */
  readonly optedOut: Uint8Array;
}

export interface BadRows {
  rows: number;
  bad: number;
  byReason: Record<string, number>;
  /** The first few, with row numbers (row 1 is the first row after the header). */
  samples: { row: number; reason: string }[];
}

/** Rows left out because they are dated after the analysis date (`source.future_orders: skip`). */
export interface FutureRows {
  count: number;
  /** The first few row numbers. */
  rows: number[];
  /** The analysis date, YYYY-MM-DD. */
  after: string;
  /** What a row is: an order, or a customer (whose last order is after the date). */
  what: 'orders' | 'customers';
}

export interface ReadReport {
  source: BadRows;
  future: FutureRows;
  profiles?: BadRows & { unmatched: number; missing: number };
}

export interface ReadOptions {
  analysisDay: number;
  scoring: Pick<ScoringConfig, 'monetary' | 'third_dimension' | 'engagement' | 'duration'>;
  baseDir: string;
  onProgress?: (p: { rows: number; done: number; total?: number }) => void;
  /**
   * The customer ids read so far, now and then while reading and once at the end (entries never
   * change), with about how many there will be when the reader can tell.
   */
  onCustomers?: (ids: TextColumn, expected?: number) => void;
  /** Hand back every order read as well (`Orders`), for scoring as of past dates: the source must be of orders. */
  keepOrders?: boolean;
}

/** The orders behind `Customers`, one entry per order read, in row order (bad and future rows left out). */
export interface Orders {
  /** The order's customer: an index into `customers.ids`. */
  readonly customer: Uint32Array;
  /** Order date, in days since 1970-01-01. */
  readonly day: Int32Array;
  /** The order's amount, or its third-dimension value (engagement, duration). */
  readonly value: Float64Array;
  /** The order's row (row 1 is the first row after the header). */
  readonly row: Uint32Array;
}

const SAMPLE_LIMIT = 20;
const WRONG_FIELDS = 'wrong number of fields';
const PROGRESS_EVERY = 1 << 16;

/** Keeps a count and a few samples of rows that could not be read. */
class BadRowLog implements BadRows {
  rows = 0;
  bad = 0;
  byReason: Record<string, number> = {};
  samples: { row: number; reason: string }[] = [];

  add(row: number, reason: string, detail = ''): void {
    this.bad++;
    this.byReason[reason] = (this.byReason[reason] ?? 0) + 1;
    if (this.samples.length < SAMPLE_LIMIT)
      this.samples.push({ row, reason: detail ? `${reason}: ${detail}` : reason });
  }

  /**
   * Stops the run when too many rows are bad: nothing downstream may act on a broken extract. `split` is
   * how the rows were split (`delimiterNote`), named when rows have the wrong number of fields.
   */
  check(label: string, maxShare: number, configPath: string, split: string): void {
    if (this.rows === 0)
      throw new SourceError(`${label}: has a header but no rows`, 'check the export or query');
    if (this.bad / this.rows <= maxShare) return;
    const reasons = Object.entries(this.byReason)
      .sort((a, b) => b[1] - a[1])
      .map(([r, n]) => `${n} × ${r}`)
      .join(', ');
    const samples = this.samples.map((s) => `row ${s.row}: ${s.reason}`).join('; ');
    const fieldCounts = split !== '' && this.byReason[WRONG_FIELDS] !== undefined;
    const fixes = [
      ...(this.byReason[undecodableReason(configPath)] !== undefined
        ? [`set ${configPath}.encoding: latin1 or windows-1252 if the file was written in one of them`]
        : []),
      ...(fieldCounts
        ? [`set ${configPath}.delimiter if the fields are split by another character (',', ';', tab or '|')`]
        : []),
      `fix the extract, map the right columns in ${configPath}.columns, or raise ${configPath}.max_bad_row_share`,
    ];
    throw new SourceError(
      `${label}: ${this.bad} of ${this.rows} rows are bad (${pct(this.bad / this.rows)}, more than the allowed ${pct(maxShare)}): ${reasons}${fieldCounts ? ` (rows split on ${split})` : ''}. First: ${samples}`,
      fixes.join('; '),
    );
  }
}

export function pct(share: number): string {
  return `${(share * 100).toFixed(share < 0.001 && share > 0 ? 3 : 1)} %`;
}

/** Shows a value's form, not its content: letters as `a`, digits as `9` (a bad row may hold PII). */
export function shapeOf(text: string): string {
  const t = text.length > 24 ? `${text.slice(0, 24)}…` : text;
  return `'${t.replace(/\p{L}/gu, 'a').replace(/\d/g, '9')}'`;
}

type Typed = Float64Array | Uint32Array | Uint8Array;

/** A growable typed column: millions of numbers without a JS array's 8-plus bytes per element. */
class Column<A extends Typed> {
  private a: A;
  length = 0;
  constructor(private readonly make: (n: number) => A) {
    this.a = make(1024);
  }
  push(v: number): void {
    if (this.length === this.a.length) {
      const grown = this.make(Math.ceil(this.a.length * 1.5));
      grown.set(this.a);
      this.a = grown;
    }
    this.a[this.length++] = v;
  }
  get(i: number): number {
    return this.a[i]!;
  }
  set(i: number, v: number): void {
    this.a[i] = v;
  }
  /** The values, in an array of exactly their number. */
  done(): A {
    return this.a.length === this.length ? this.a : (this.a.slice(0, this.length) as A);
  }
}
const f64 = (n: number) => new Float64Array(n);

/** `Orders` as they are read: four columns in chunks (growing copies nothing), joined once at the end. */
class OrderColumns {
  private static readonly CHUNK = 1 << 16;
  private chunks: { customer: Uint32Array; day: Int32Array; value: Float64Array; row: Uint32Array }[] = [];
  private at = OrderColumns.CHUNK;
  private length = 0;

  push(customer: number, day: number, value: number, row: number): void {
    if (this.at === OrderColumns.CHUNK) {
      const n = OrderColumns.CHUNK;
      this.chunks.push({
        customer: new Uint32Array(n),
        day: new Int32Array(n),
        value: new Float64Array(n),
        row: new Uint32Array(n),
      });
      this.at = 0;
    }
    const chunk = this.chunks[this.chunks.length - 1]!;
    const k = this.at++;
    chunk.customer[k] = customer;
    chunk.day[k] = day;
    chunk.value[k] = value;
    chunk.row[k] = row;
    this.length++;
  }

  done(): Orders {
    const out = {
      customer: new Uint32Array(this.length),
      day: new Int32Array(this.length),
      value: new Float64Array(this.length),
      row: new Uint32Array(this.length),
    };
    this.chunks.forEach((chunk, i) => {
      const n = Math.min(OrderColumns.CHUNK, this.length - i * OrderColumns.CHUNK);
      const at = i * OrderColumns.CHUNK;
      out.customer.set(chunk.customer.subarray(0, n), at);
      out.day.set(chunk.day.subarray(0, n), at);
      out.value.set(chunk.value.subarray(0, n), at);
      out.row.set(chunk.row.subarray(0, n), at);
    });
    this.chunks = [];
    return out;
  }
}
const u32 = (n: number) => new Uint32Array(n);
const u8 = (n: number) => new Uint8Array(n);

/** Reads the scoring source (and the profiles table, when configured) into customers. */
export async function readCustomers(
  source: SourceConfig,
  profiles: ProfilesConfig | undefined,
  options: ReadOptions,
): Promise<{ customers: Customers; report: ReadReport; orders?: Orders }> {
  const rows = await openRows(source, options.baseDir, 'source');
  let result: { customers: Customers; log: BadRowLog; future: FutureRows; orders?: Orders };
  try {
    result = await readScoring(rows, source, options);
  } finally {
    await rows.close();
  }
  result.log.check('source', source.max_bad_row_share, 'source', delimiterNote(rows));
  if (source.future_orders === 'error' && result.future.count > 0) throw futureError(result.future);
  const report: ReadReport = { source: result.log, future: result.future };
  if (profiles) report.profiles = await joinProfiles(result.customers, profiles, options);
  return { customers: result.customers, report, ...(result.orders ? { orders: result.orders } : {}) };
}

async function readScoring(
  rows: RowStream,
  source: SourceConfig,
  options: ReadOptions,
): Promise<{ customers: Customers; log: BadRowLog; future: FutureRows; orders?: Orders }> {
  const cols = new ColumnResolver(rows.header, source.columns, rows.label, 'source', delimiterNote(rows));
  const shape = source.shape ?? cols.detectShape();
  if (!shape)
    throw new SourceError(
      `${rows.label}: cannot tell the input shape from its columns (${cols.columns()}); expected ${expectedColumns()}`,
      `set source.shape and map the columns in source.columns${cols.splitFix()}`,
    );
  if (options.keepOrders && shape !== 'orders')
    throw new ConfigError(
      `source.shape is ${shape}${source.shape ? '' : ' (recognised from the columns)'}: scoring as of past dates needs the order history, one row per order, and a ${shape} source holds only each customer's ${shape === 'scores' ? 'scores' : 'totals'} as of its export`,
      'point source at the orders (customer_id, order_date, amount) and set source.shape: orders',
    );
  const idCol = cols.require('customer_id', shape);
  const parseDate = dateParser(source.date_format);
  const { scoring, analysisDay } = options;
  const third = thirdDimension(cols, scoring, shape);
  const profileCols = profileColumns(cols);
  const attributeCols = source.attributes.map(
    (a, k) => [a, cols.column(a, `source.attributes[${k}]`)] as const,
  );
  const optOut = optOutColumn(cols);

  const log = new BadRowLog();
  const ids = new TextColumn();
  const index = new TextIndex(ids);
  // A scores source has no days, counts or amounts: nothing to keep for them.
  const measured = shape !== 'scores';
  const lastDay = new Column(f64);
  const frequency = new Column(f64);
  const values = new LongDoubleSums();
  const profile: Partial<Record<ProfileField, TextColumn>> = {};
  for (const [field] of profileCols) profile[field] = new TextColumn();
  const attributes: Record<string, TextColumn> = {};
  for (const [name] of attributeCols) attributes[name] = new TextColumn();
  const optedOut = new Column(u8);
  const given =
    shape === 'scores'
      ? { r: new Column(u8), f: new Column(u8), m: new Column(u8), segment: new TextColumn() }
      : undefined;
  const scoreCols = shape === 'scores' ? scoresColumns(cols, rows.label) : undefined;
  const firstRow = new Column(u32);
  const orders = options.keepOrders ? new OrderColumns() : undefined;
  const future: FutureRows = {
    count: 0,
    rows: [],
    after: formatDay(analysisDay),
    what: shape === 'orders' ? 'orders' : 'customers',
  };

  const dateCol = shape === 'orders' ? cols.require('order_date', shape) : undefined;
  const amountCol =
    shape === 'orders' && third.kind === 'monetary' ? cols.require('amount', shape) : undefined;
  const lastCol = shape === 'customers' ? cols.find('last_order_date') : undefined;
  const recencyCol =
    shape === 'customers' && lastCol === undefined ? cols.require('recency_days', shape) : undefined;
  const countCol = shape === 'customers' ? cols.require('order_count', shape) : undefined;
  const revenueCol =
    shape === 'customers' && third.kind === 'monetary' ? cols.require('total_revenue', shape) : undefined;
  const width = rows.header.length;

  let row = 0;
  for await (const batch of rows.batches)
    for (const rec of batch) {
      row++;
      log.rows++;
      if (row % PROGRESS_EVERY === 0) {
        const progress = rows.progress();
        options.onProgress?.({ rows: row, ...progress });
        options.onCustomers?.(
          ids,
          progress.total && progress.done > 0
            ? Math.ceil((ids.length * progress.total) / progress.done)
            : undefined,
        );
      }
      const id = idOf(rec, width, idCol, log, row, 'source');
      if (id === undefined) continue;
      let day = 0;
      let count = 1;
      let value = 0;
      if (shape === 'orders') {
        const d = parseDate(rec[dateCol!]!);
        if (d === undefined) {
          log.add(
            row,
            'unparseable order_date',
            `${shapeOf(rec[dateCol!]!)} (date_format ${source.date_format})`,
          );
          continue;
        }
        day = d;
      } else if (shape === 'customers') {
        if (lastCol !== undefined) {
          const d = parseDate(rec[lastCol]!);
          if (d === undefined) {
            log.add(
              row,
              'unparseable last_order_date',
              `${shapeOf(rec[lastCol]!)} (date_format ${source.date_format})`,
            );
            continue;
          }
          day = d;
        } else {
          const r = parseAmount(rec[recencyCol!]!);
          if (r === undefined) {
            log.add(row, 'non-numeric recency_days', shapeOf(rec[recencyCol!]!));
            continue;
          }
          day = analysisDay - r;
        }
        const c = parseCount(rec[countCol!]!);
        if (c === undefined) {
          log.add(row, 'order_count is not a whole number', shapeOf(rec[countCol!]!));
          continue;
        }
        count = c;
      }
      // Not scored as recent: left out and counted (or an error, by source.future_orders).
      if (day > analysisDay && measured) {
        if (future.rows.length < SAMPLE_LIMIT) future.rows.push(row);
        future.count++;
        continue;
      }
      if (shape !== 'scores') {
        const text = third.kind === 'monetary' ? rec[(amountCol ?? revenueCol)!]! : '';
        const v = third.kind === 'monetary' ? parseAmount(text) : third.read(rec);
        if (v === undefined || !Number.isFinite(v)) {
          if (v !== undefined || isInfinite(text))
            throw notFinite(row, third, rows.header[(amountCol ?? revenueCol)!] ?? '', shape);
          log.add(
            row,
            third.kind === 'monetary'
              ? `non-numeric ${shape === 'orders' ? 'amount' : 'total_revenue'}`
              : `non-numeric ${third.kind}`,
            third.kind === 'monetary' ? shapeOf(text) : '',
          );
          continue;
        }
        value = v;
      }
      let scores: [number, number, number, string | undefined] | undefined;
      if (scoreCols) {
        const read = scoreCols.read(rec);
        if (typeof read === 'string') {
          log.add(row, read);
          continue;
        }
        scores = read;
      }
      const optFlag = optedOutIn(rec, optOut, log, row);
      if (optFlag === undefined) continue;

      let i = index.get(id);
      if (i !== undefined && shape !== 'orders') {
        log.add(row, 'duplicate customer_id', `first seen at row ${firstRow.get(i)}`);
        continue;
      }
      const newest = i === undefined || !measured || day >= lastDay.get(i);
      if (i === undefined) {
        i = ids.length;
        ids.push(id);
        index.add(i, index.lastHash);
        // Where a row is a customer, a file's size tells about how many to expect: the index is sized once,
        // early, instead of doubling on the way (the bytes read so far are at least those parsed).
        if (i === 4095 && shape !== 'orders') {
          const { done, total } = rows.progress();
          if (total && done > 0) index.reserve(Math.ceil((row * total) / done));
        }
        firstRow.push(row);
        if (measured) {
          lastDay.push(day);
          frequency.push(count);
          values.push(value);
        }
        optedOut.push(optFlag ? 1 : 0);
        for (const [field] of profileCols) profile[field]!.push(undefined);
        for (const [name] of attributeCols) attributes[name]!.push(undefined);
        if (given && scores) {
          given.r.push(scores[0]);
          given.f.push(scores[1]);
          given.m.push(scores[2]);
          if (scoreCols!.named) given.segment.push(scores[3]);
        }
      } else {
        if (day > lastDay.get(i)) lastDay.set(i, day);
        frequency.set(i, frequency.get(i) + 1);
        if (!values.add(i, value)) throw notFinite(row, third, rows.header[amountCol!] ?? '', shape, true);
        if (optFlag) optedOut.set(i, 1);
      }
      orders?.push(i, day, value, row);
      // Identifiers and attributes: the most recent non-empty value wins.
      for (const [field, col] of profileCols) {
        const v = rec[col]!;
        if (v.trim() !== '' && (newest || !profile[field]!.has(i))) profile[field]!.set(i, v);
      }
      for (const [name, col] of attributeCols) {
        const v = rec[col]!;
        if (v.trim() !== '' && (newest || !attributes[name]!.has(i))) attributes[name]!.set(i, v);
      }
    }
  options.onProgress?.({ rows: row, ...rows.progress() });
  options.onCustomers?.(ids);

  const n = measured ? ids.length : 0;
  const recencyDays = new Float64Array(n);
  const value = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    recencyDays[i] = analysisDay - lastDay.get(i);
    value[i] = values.value(i);
    // A sum whose last addition stayed finite can still round past the largest double.
    if (!Number.isFinite(value[i]))
      throw notFinite(firstRow.get(i), third, rows.header[amountCol!] ?? '', shape, true);
    if (third.kind === 'monetary' && scoring.monetary === 'mean') value[i] = value[i]! / frequency.get(i);
  }
  const customers: Customers = {
    shape,
    ids,
    recencyDays,
    frequency: frequency.done(),
    value,
    profile,
    attributes,
    optedOut: optedOut.done(),
    ...(given
      ? {
          given: {
            r: given.r.done(),
            f: given.f.done(),
            m: given.m.done(),
            ...(scoreCols!.named ? { segment: given.segment } : {}),
          },
        }
      : {}),
  };
  return {
    customers,
    log,
    future,
    ...(orders ? { orders: orders.done() } : {}),
  };
}

/** An amount (or its customer's total) past ±1.8e308: no currency has such sums, so the column is wrong. */
function notFinite(
  row: number,
  third: ThirdDimension,
  column: string,
  shape: Shape,
  sum = false,
): SourceError {
  const monetary = third.kind === 'monetary';
  const field = monetary ? (shape === 'orders' ? 'amount' : 'total_revenue') : third.kind;
  const where = monetary ? `column '${column}'` : `scoring.${third.kind}`;
  const what = sum
    ? `the ${field}s of this row's customer (${where}) add up to a sum that`
    : `${field} (${where})`;
  return new SourceError(
    `source: row ${row}: ${what} is not a finite number (it is infinite, or beyond ±1.8e308)`,
    monetary
      ? `check that source.columns.${field} names the ${shape === 'orders' ? 'order amount' : "customer's revenue"} (values this large are not money), and fix the extract`
      : `check the columns and weights in scoring.${third.kind}, and fix the extract`,
  );
}

/** The error of `future_orders: error`: which rows, and the ways out. */
function futureError(future: FutureRows): SourceError {
  const one = future.count === 1;
  const rows = `${one ? 'row' : 'rows'} ${future.rows.join(', ')}${future.count > future.rows.length ? ', …' : ''}`;
  const what =
    future.what === 'orders'
      ? one
        ? 'order is'
        : 'orders are'
      : one
        ? "customer's last order is"
        : "customers' last orders are";
  return new SourceError(
    `source: ${future.count} ${what} after the analysis date ${future.after} (${rows})`,
    'fix the dates (or source.date_format), set scoring.analysis_date to a later date, or set source.future_orders: skip to leave them out',
  );
}

type ThirdDimension =
  { kind: 'monetary' } | { kind: 'engagement' | 'duration'; read: (rec: string[]) => number | undefined };

/** RFE and RFD read their third dimension from configured columns (a weighted sum for engagement). */
function thirdDimension(cols: ColumnResolver, scoring: ReadOptions['scoring'], shape: Shape): ThirdDimension {
  if (scoring.third_dimension === 'monetary' || shape === 'scores') return { kind: 'monetary' };
  const weights: [number, number][] =
    scoring.third_dimension === 'engagement'
      ? Object.entries(scoring.engagement ?? {}).map(([name, w]) => [
          cols.column(name, `scoring.engagement.${name}`),
          w,
        ])
      : scoring.duration
        ? [[cols.column(scoring.duration, 'scoring.duration'), 1]]
        : [];
  if (weights.length === 0)
    throw new SourceError(
      `scoring.third_dimension is ${scoring.third_dimension} but no column is configured for it`,
      scoring.third_dimension === 'engagement'
        ? 'set scoring.engagement, e.g. { sessions: 1, email_opens: 0.5 }'
        : 'set scoring.duration to the column holding time spent',
    );
  return {
    kind: scoring.third_dimension,
    read: (rec) => {
      let total = 0;
      for (const [col, w] of weights) {
        const text = rec[col]!;
        if (text.trim() === '') continue;
        const v = parseAmount(text);
        if (v === undefined) return isInfinite(text) ? Infinity : undefined;
        total += w * v;
      }
      return total;
    },
  };
}

function profileColumns(cols: ColumnResolver): [ProfileField, number][] {
  const out: [ProfileField, number][] = [];
  for (const field of PROFILE_FIELDS) {
    const i = cols.find(field);
    if (i !== undefined) out.push([field, i]);
  }
  return out;
}

/**
 * A row's customer id; undefined, and logged, when the row has the wrong number of fields (or bytes
 * its encoding does not allow, set by `configPath`.encoding) or no id.
 */
function idOf(
  rec: string[],
  width: number,
  idCol: number,
  log: BadRowLog,
  row: number,
  configPath: string,
): string | undefined {
  if (rec.length !== width) {
    if (isUndecodable(rec)) log.add(row, undecodableReason(configPath));
    else log.add(row, WRONG_FIELDS, `${rec.length} instead of ${width}`);
    return undefined;
  }
  const id = rec[idCol]!.trim();
  if (id === '') {
    log.add(row, 'missing customer_id');
    return undefined;
  }
  return id;
}

/** Whether a row opts its customer out (a consent column read the other way); undefined, and logged, when unreadable. */
function optedOutIn(
  rec: string[],
  optOut: ReturnType<typeof optOutColumn>,
  log: BadRowLog,
  row: number,
): boolean | undefined {
  if (!optOut) return false;
  const flag = parseFlag(rec[optOut.col]!);
  if (flag === undefined) {
    log.add(
      row,
      `${optOut.field} is not a flag`,
      `${shapeOf(rec[optOut.col]!)} (use true/false, yes/no, 1/0)`,
    );
    return undefined;
  }
  return optOut.field === 'opted_out' ? flag : !flag;
}

function optOutColumn(cols: ColumnResolver): { field: 'opted_out' | 'consent'; col: number } | undefined {
  const o = cols.find('opted_out');
  if (o !== undefined) return { field: 'opted_out', col: o };
  const c = cols.find('consent');
  return c !== undefined ? { field: 'consent', col: c } : undefined;
}

function scoresColumns(cols: ColumnResolver, label: string) {
  const r = cols.find('r');
  const f = cols.find('f');
  const m = cols.find('m');
  const code = cols.find('rfm_code');
  const segment = cols.find('segment');
  const haveRfm = r !== undefined && f !== undefined && m !== undefined;
  if (!haveRfm && code === undefined && segment === undefined)
    throw new SourceError(
      `${label}: a scores source needs r, f and m columns, an rfm_code column, or a segment column`,
      'map them in source.columns',
    );
  const digit = (text: string): number => {
    const t = text.trim();
    return t.length === 1 && t >= '1' && t <= '5' ? Number(t) : 0;
  };
  return {
    /** Whether the source names segments itself. */
    named: segment !== undefined,
    read(rec: string[]): [number, number, number, string | undefined] | string {
      const seg = segment !== undefined ? rec[segment]!.trim() || undefined : undefined;
      if (haveRfm) {
        const s: [number, number, number] = [digit(rec[r]!), digit(rec[f]!), digit(rec[m]!)];
        if (s.every((x) => x > 0)) return [...s, seg];
        if (!seg) return 'r, f and m must be whole numbers 1-5';
      } else if (code !== undefined) {
        const t = rec[code]!.trim();
        if (/^[1-5]{3}$/.test(t)) return [digit(t[0]!), digit(t[1]!), digit(t[2]!), seg];
        if (!seg) return 'rfm_code must be three digits 1-5, such as 543';
      }
      return seg ? [0, 0, 0, seg] : 'no segment and no scores';
    },
  };
}

/** Joins a one-row-per-customer table of identifiers, consent and attributes onto the customers. */
async function joinProfiles(
  customers: Customers,
  config: ProfilesConfig,
  options: ReadOptions,
): Promise<BadRows & { unmatched: number; missing: number }> {
  const rows = await openRows(config, options.baseDir, 'profiles');
  const log = new BadRowLog();
  const index = new TextIndex(customers.ids);
  for (let i = 0; i < customers.ids.length; i++) index.add(i);
  const seen = new Uint8Array(customers.ids.length);
  let unmatched = 0;
  try {
    const cols = new ColumnResolver(rows.header, config.columns, rows.label, 'profiles', delimiterNote(rows));
    const idCol = cols.require('customer_id', 'customers');
    const fields = profileColumns(cols);
    for (const [field] of fields)
      (customers.profile[field] ??= new TextColumn()).resize(customers.ids.length);
    const attributeCols = config.attributes.map(
      (a, k) => [a, cols.column(a, `profiles.attributes[${k}]`)] as const,
    );
    for (const [name] of attributeCols)
      (customers.attributes[name] ??= new TextColumn()).resize(customers.ids.length);
    const optOut = optOutColumn(cols);
    const width = rows.header.length;
    let row = 0;
    for await (const batch of rows.batches)
      for (const rec of batch) {
        row++;
        log.rows++;
        const id = idOf(rec, width, idCol, log, row, 'profiles');
        if (id === undefined) continue;
        const i = index.get(id);
        if (i === undefined) {
          unmatched++;
          continue;
        }
        if (seen[i]) {
          log.add(row, 'duplicate customer_id');
          continue;
        }
        const optFlag = optedOutIn(rec, optOut, log, row);
        if (optFlag === undefined) continue;
        seen[i] = 1;
        if (optFlag) customers.optedOut[i] = 1;
        for (const [field, col] of fields) {
          const v = rec[col]!;
          if (v.trim() !== '') customers.profile[field]!.set(i, v);
        }
        for (const [name, col] of attributeCols) {
          const v = rec[col]!;
          if (v.trim() !== '') customers.attributes[name]!.set(i, v);
        }
      }
  } finally {
    await rows.close();
  }
  log.check('profiles', config.max_bad_row_share, 'profiles', delimiterNote(rows));
  let missing = 0;
  for (const s of seen) if (!s) missing++;
  return { rows: log.rows, bad: log.bad, byReason: log.byReason, samples: log.samples, unmatched, missing };
}
