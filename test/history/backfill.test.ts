import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import pg from 'pg';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { datesBetween, MAX_DATES } from '../../app/cli/backfill.js';
import { loadConfig } from '../../src/config/load.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { generateShop } from '../../src/example/generate.js';
import { listSnapshots, sourceIdOf } from '../../src/history/snapshots.js';
import { readOrderHistory } from '../../src/score/as-of.js';
import type { Segmented } from '../../src/score/pipeline.js';
import { readCsv, tempDir } from '../helpers.js';
import { cli } from '../sync/harness.js';

/**
 * Backfill scores an orders source as of past dates from one read. Each date's result is checked against
 * an oracle that never calls our pipeline: the R reference scorer (test/r) run on the orders up to that
 * date, or values worked out by hand in the test.
 */

const DAY = 86_400_000;
const dayOf = (date: string): number => Date.parse(`${date}T00:00:00Z`) / DAY;

interface Expected {
  recency_days: number;
  frequency: number;
  monetary: number;
  r: number;
  f: number;
  m: number;
  segment: string;
}

/** Per customer id, what we scored as of that date. */
function ours(segmented: Segmented): Map<string, Expected> {
  const { customers, scores } = segmented;
  return new Map(
    customers.ids.toArray().map((id, i) => [
      id!,
      {
        recency_days: customers.recencyDays[i]!,
        frequency: customers.frequency[i]!,
        monetary: customers.value[i]!,
        r: scores.r[i]!,
        f: scores.f[i]!,
        m: scores.m[i]!,
        segment: scores.segments[scores.segment[i]!]!,
      },
    ]),
  );
}

/** The orders file with only the orders on or before `date` (rows kept as written), for R. */
function ordersUpTo(file: string, date: string, dir: string): string {
  const text = readFileSync(file, 'utf8');
  const rows = parse(text, { raw: true, columns: true }) as { record: Record<string, string>; raw: string }[];
  const header = text.slice(0, text.indexOf('\n'));
  const kept = rows.filter((r) => r.record.order_date! <= date).map((r) => r.raw.replace(/\r?\n$/, ''));
  const out = path.join(dir, `orders-${date}.csv`);
  writeFileSync(out, [header, ...kept].join('\n') + '\n');
  return out;
}

/** The R reference's scores (the rfm package's algorithm) for an orders file as of a date. */
function rScores(file: string, date: string): Map<string, Expected> {
  const out = `${file}.scores.csv`;
  const r = spawnSync(
    'Rscript',
    [
      'test/r/rfm_reference.R',
      '--input',
      file,
      '--shape',
      'orders',
      '--analysis-date',
      date,
      '--segments',
      'default',
      '--out',
      out,
    ],
    { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C.UTF-8' } },
  );
  expect(r.status, r.stderr).toBe(0);
  return new Map(
    readCsv(readFileSync(out, 'utf8')).map((row) => [
      row.customer_id!,
      {
        recency_days: Number(row.recency_days),
        frequency: Number(row.frequency),
        monetary: Number(row.monetary),
        r: Number(row.r),
        f: Number(row.f),
        m: Number(row.m),
        segment: row.segment!,
      },
    ]),
  );
}

/** Customers per segment of an expectation (segments with none left out). */
function countBySegment(expected: Map<string, { segment: string }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of expected.values()) out[e.segment] = (out[e.segment] ?? 0) + 1;
  return out;
}

function sizesOf(segmented: Segmented): Record<string, number> {
  return Object.fromEntries(
    segmented.sizes.filter((s) => s.customers > 0).map((s) => [s.segment, s.customers]),
  );
}

function config(raw: Record<string, unknown>): Config {
  return configSchema.parse(raw);
}

describe('scoring a generated shop as of past dates, from one read', () => {
  const dir = tempDir('audience-sync-backfill-');
  const dates = ['2023-06-30', '2024-02-29', '2025-01-31', '2025-12-31'];
  let orders: string;
  let optedOut: Set<string>;
  beforeAll(async () => {
    await generateShop(path.join(dir, 'shop'), { customers: 400, seed: 11, analysisDate: '2026-01-01' });
    orders = path.join(dir, 'shop', 'orders.csv');
    const people = parse(readFileSync(path.join(dir, 'shop', 'customers.csv')), { columns: true }) as Record<
      string,
      string
    >[];
    optedOut = new Set(people.filter((p) => /^(true|yes|1)$/i.test(p.opted_out!)).map((p) => p.customer_id!));
    expect(optedOut.size).toBeGreaterThan(0);
  });

  it('gives, for each date, the R reference scores of the orders up to that date', async () => {
    const history = await readOrderHistory(
      config({
        source: { type: 'csv', path: orders },
        profiles: { type: 'csv', path: path.join(dir, 'shop', 'customers.csv') },
      }),
      { baseDir: dir },
    );
    const lines = readFileSync(orders, 'utf8').trim().split('\n').slice(1);
    for (const date of dates) {
      const segmented = history.segmentAsOf(dayOf(date));
      const expected = rScores(ordersUpTo(orders, date, dir), date);
      expect(expected.size).toBeGreaterThan(10);
      expect(segmented.analysisDay).toBe(dayOf(date));
      expect(ours(segmented)).toEqual(expected);
      expect(sizesOf(segmented)).toEqual(countBySegment(expected));
      // Opt-outs are today's (the profiles table's), counted among each segment's customers of that date.
      const opted: Record<string, number> = {};
      for (const [id, e] of expected) if (optedOut.has(id)) opted[e.segment] = (opted[e.segment] ?? 0) + 1;
      for (const s of segmented.sizes) expect(s.optedOut, `${date} ${s.segment}`).toBe(opted[s.segment] ?? 0);
      // Customers in order of their first order on or before the date, as a read as of that date lists them.
      const firstSeen = [
        ...new Set(
          lines
            .map((l) => l.split(','))
            .filter((c) => c[1]! <= date)
            .map((c) => c[0]!),
        ),
      ];
      expect(segmented.customers.ids.toArray()).toEqual(firstSeen);
      expect(segmented.report.future).toMatchObject({
        count: lines.filter((l) => l.split(',')[1]! > date).length,
        after: date,
        what: 'orders',
      });
    }
  });

  it('gives the R reference scores for rows in any order, and for dates in any order', async () => {
    // Rows shuffled (deterministically): a customer's later rows can hold its earlier orders.
    const lines = readFileSync(orders, 'utf8').trim().split('\n');
    const rows = lines.slice(1);
    let seed = 7;
    for (let i = rows.length - 1; i > 0; i--) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const j = seed % (i + 1);
      [rows[i], rows[j]] = [rows[j]!, rows[i]!];
    }
    const shuffled = path.join(dir, 'shuffled.csv');
    writeFileSync(shuffled, [lines[0], ...rows].join('\n') + '\n');
    const history = await readOrderHistory(config({ source: { type: 'csv', path: shuffled } }), {
      baseDir: dir,
    });
    for (const date of [dates[1]!, dates[3]!, dates[0]!, dates[2]!]) {
      const expected = rScores(ordersUpTo(shuffled, date, dir), date);
      expect(ours(history.segmentAsOf(dayOf(date))), date).toEqual(expected);
    }
  });

  it('ntile: five equal groups by value, ties by customer id, per date', async () => {
    const history = await readOrderHistory(
      config({ source: { type: 'csv', path: orders }, scoring: { method: 'ntile' } }),
      { baseDir: dir },
    );
    for (const date of dates.slice(1, 3)) {
      const values = rScores(ordersUpTo(orders, date, dir), date);
      const ids = [...values.keys()];
      /** NTILE(5) over (value, id): the first n mod 5 groups one larger. */
      const ntile = (value: (id: string) => number, higherIsBetter: boolean) => {
        const sorted = [...ids].sort((a, b) => {
          const d = (value(a) - value(b)) * (higherIsBetter ? 1 : -1);
          return d !== 0 ? d : Buffer.compare(Buffer.from(a), Buffer.from(b));
        });
        const n = sorted.length;
        const sizes = [0, 1, 2, 3, 4].map((k) => Math.floor(n / 5) + (k < n % 5 ? 1 : 0));
        const tile = new Map<string, number>();
        let at = 0;
        sizes.forEach((size, k) => sorted.slice(at, (at += size)).forEach((id) => tile.set(id, k + 1)));
        return tile;
      };
      const r = ntile((id) => values.get(id)!.recency_days, false);
      const f = ntile((id) => values.get(id)!.frequency, true);
      const m = ntile((id) => values.get(id)!.monetary, true);
      const got = ours(history.segmentAsOf(dayOf(date)));
      expect(got.size).toBe(ids.length);
      for (const id of ids)
        expect([got.get(id)?.r, got.get(id)?.f, got.get(id)?.m], id).toEqual([
          r.get(id),
          f.get(id),
          m.get(id),
        ]);
    }
  });

  it('has no customers as of a date before the first order', async () => {
    const history = await readOrderHistory(config({ source: { type: 'csv', path: orders } }), {
      baseDir: dir,
    });
    const segmented = history.segmentAsOf(dayOf('2020-01-01'));
    expect(segmented.customers.ids.length).toBe(0);
    expect(segmented.sizes.every((s) => s.customers === 0)).toBe(true);
  });
});

/**
 * A hand-made shop: six customers, amounts in whole units so every sum is exact. As of each date the values
 * and the quantile scores are worked out below by hand (R's type-7 quantiles at 0.2 … 0.8, plus 1).
 */
const SMALL = `customer_id,order_date,amount,opted_out
a,2025-01-10,10,false
b,2025-02-01,40,false
a,2025-03-05,30,false
c,2025-03-20,5,true
b,2025-04-01,20,false
d,2025-04-15,100,false
a,2025-05-01,20,false
e,2025-05-02,abc,false
e,2025-05-20,60,false
f,2025-06-30,8,false
b,2025-06-30,not-a-number,false
`;

/**
 * [recency, frequency, monetary] by hand. As of 2025-03-31: a (10+30, 2 orders, last 03-05), b (40, 1,
 * 02-01), c (5, 1, 03-20). As of 2025-05-31: a (10+30+20, 3, 05-01), b (40+20, 2, 04-01), c, d (100, 1,
 * 04-15), e (60, 1, 05-20; its 05-02 row is bad).
 */
const SMALL_EXPECTED: Record<string, Record<string, [number, number, number]>> = {
  '2025-03-31': { a: [26, 2, 40], b: [58, 1, 40], c: [11, 1, 5] },
  '2025-05-31': { a: [30, 3, 60], b: [60, 2, 60], c: [72, 1, 5], d: [46, 1, 100], e: [11, 1, 60] },
};
const SMALL_SCORES: Record<string, Record<string, [number, number, number]>> = {
  // recency sorted [11, 26, 58] → breaks 1 + [17, 23, 32.4, 45.2]: a 26 → bin 3 → r 3; b 58 → r 1; c 11 → r 5.
  // frequency sorted [1, 1, 2] → 1 + [1, 1, 1.2, 1.6]: a 2 → bin 3; b, c 1 → bin 1.
  // monetary sorted [5, 40, 40] → 1 + [19, 33, 40, 40]: a, b 40 → bin 3; c 5 → bin 1.
  '2025-03-31': { a: [3, 3, 3], b: [1, 1, 3], c: [5, 1, 1] },
  // recency sorted [11, 30, 46, 60, 72] → 1 + [26.2, 39.6, 51.6, 62.4]: a 30 → r 4; b 60 → r 2; c 72 → r 1;
  //   d 46 → r 3; e 11 → r 5.
  // frequency sorted [1, 1, 1, 2, 3] → 1 + [1, 1, 1.4, 2.2]: a 3 → 4; b 2 → 3; c, d, e 1 → 1.
  // monetary sorted [5, 60, 60, 60, 100] → 1 + [49, 60, 60, 68]: a, b, e 60 → 2; c 5 → 1; d 100 → 5.
  '2025-05-31': { a: [4, 4, 2], b: [2, 3, 2], c: [1, 1, 1], d: [3, 1, 5], e: [5, 1, 2] },
};

function checkSmall(history: Awaited<ReturnType<typeof readOrderHistory>>): void {
  for (const [date, values] of Object.entries(SMALL_EXPECTED)) {
    const segmented = history.segmentAsOf(dayOf(date));
    const got = ours(segmented);
    expect([...got.keys()], date).toEqual(Object.keys(values));
    for (const [id, [recency, frequency, monetary]] of Object.entries(values)) {
      expect(got.get(id), `${date} ${id}`).toMatchObject({ recency_days: recency, frequency, monetary });
      const [r, f, m] = SMALL_SCORES[date]![id]!;
      expect(got.get(id), `${date} ${id}`).toMatchObject({ r, f, m });
    }
    // c opted out (today's flag); the other customers did not.
    const cSegment = got.get('c')!.segment;
    for (const s of segmented.sizes) expect(s.optedOut).toBe(s.segment === cSegment ? 1 : 0);
  }
}

describe('scoring a hand-made shop as of past dates', () => {
  const dir = tempDir('audience-sync-backfill-small-');
  const file = path.join(dir, 'orders.csv');
  writeFileSync(file, SMALL);

  it('leaves out later orders, counts recency to the date, and reads bad rows once', async () => {
    const history = await readOrderHistory(
      config({ source: { type: 'csv', path: file, max_bad_row_share: 0.5 } }),
      { baseDir: dir },
    );
    checkSmall(history);
    // Bad rows are the read's, whatever the date: e's 'abc' and b's 'not-a-number'.
    expect(history.report.source).toMatchObject({ rows: 11, bad: 2 });
    // On the day of the first order: that customer alone, 0 days since it; the day before, nobody.
    const first = ours(history.segmentAsOf(dayOf('2025-01-10')));
    expect([...first]).toEqual([
      ['a', { recency_days: 0, frequency: 1, monetary: 10, r: 5, f: 1, m: 1, segment: expect.any(String) }],
    ]);
    expect(history.segmentAsOf(dayOf('2025-01-09')).customers.ids.length).toBe(0);
    // The orders read after the date: rows 5, 6, 7, 9 and 10 (8 and 11 are bad).
    expect(history.segmentAsOf(dayOf('2025-03-31')).report.future).toMatchObject({
      count: 5,
      rows: [5, 6, 7, 9, 10],
    });
  });

  it('monetary mean divides each date’s sum by that date’s orders', async () => {
    const history = await readOrderHistory(
      config({ source: { type: 'csv', path: file, max_bad_row_share: 0.5 }, scoring: { monetary: 'mean' } }),
      { baseDir: dir },
    );
    const got = ours(history.segmentAsOf(dayOf('2025-05-31')));
    expect(Object.fromEntries([...got].map(([id, e]) => [id, e.monetary]))).toEqual({
      a: 20,
      b: 30,
      c: 5,
      d: 100,
      e: 60,
    });
  });

  it('sums a third dimension other than money the same way (duration)', async () => {
    const history = await readOrderHistory(
      config({
        source: { type: 'csv', path: file, max_bad_row_share: 0.5 },
        scoring: { third_dimension: 'duration', duration: 'amount' },
      }),
      { baseDir: dir },
    );
    for (const [date, values] of Object.entries(SMALL_EXPECTED)) {
      const got = ours(history.segmentAsOf(dayOf(date)));
      for (const [id, [, , total]] of Object.entries(values))
        expect(got.get(id)?.monetary, `${date} ${id}`).toBe(total);
    }
  });

  it('stops on too many bad rows, once, as a scoring run does', async () => {
    await expect(
      readOrderHistory(config({ source: { type: 'csv', path: file } }), { baseDir: dir }),
    ).rejects.toThrow(/source: 2 of 11 rows are bad/);
  });

  it('refuses a customers or scores source, naming source.shape', async () => {
    const customers = path.join(dir, 'customers.csv');
    writeFileSync(customers, 'customer_id,last_order_date,order_count,total_revenue\na,2025-05-01,3,60\n');
    await expect(
      readOrderHistory(config({ source: { type: 'csv', path: customers, shape: 'customers' } }), {
        baseDir: dir,
      }),
    ).rejects.toThrow(/source\.shape is customers: .*order history/);
    // Recognised from the columns, before any row is read.
    await expect(
      readOrderHistory(config({ source: { type: 'csv', path: customers } }), { baseDir: dir }),
    ).rejects.toThrow(/source\.shape is customers \(recognised from the columns\): .*order history/);
  });
});

describe('scoring a PostgreSQL orders source as of past dates', () => {
  const url = inject('postgresUrl');
  const client = new pg.Client({ connectionString: url });
  beforeAll(async () => {
    await client.connect();
    const rows = parse(SMALL, { columns: true }) as Record<string, string>[];
    await client.query(`DROP TABLE IF EXISTS backfill_orders;
      CREATE TABLE backfill_orders (id serial, customer_id text, ordered_at timestamptz, amount text, opted_out boolean)`);
    for (const r of rows)
      await client.query(
        'INSERT INTO backfill_orders (customer_id, ordered_at, amount, opted_out) VALUES ($1, $2, $3, $4)',
        [r.customer_id, `${r.order_date} 12:00+00`, r.amount, r.opted_out === 'true'],
      );
  });
  afterAll(async () => {
    await client.end();
  });

  it('gives the same as-of scores as the file', async () => {
    const history = await readOrderHistory(
      config({
        source: {
          type: 'postgres',
          url,
          query: 'SELECT customer_id, ordered_at, amount, opted_out FROM backfill_orders ORDER BY id',
          columns: { order_date: 'ordered_at' },
          max_bad_row_share: 0.5,
        },
      }),
      { baseDir: '/' },
    );
    checkSmall(history);
  });
});

describe('TextColumn.select (the ids and profiles of one date, without copying their bytes)', () => {
  it('picks entries in the given order, in every storage mode, and stays independent of its source', async () => {
    const { TextColumn } = await import('../../src/source/text.js');
    const long = 'é'.repeat(200);
    const packed = TextColumn.from([...Array.from({ length: 300 }, (_, i) => `id-${i}`), long, undefined]);
    const few = TextColumn.from(['x', undefined, 'y', 'x']);
    const picked = packed.select([301, 300, 5, 299]);
    expect(picked.toArray()).toEqual([undefined, long, 'id-5', 'id-299']);
    expect(few.select([3, 1, 2]).toArray()).toEqual(['x', undefined, 'y']);
    picked.set(2, 'changed');
    expect(picked.get(2)).toBe('changed');
    expect(packed.get(5)).toBe('id-5');
    const dictionary = few.select([0]);
    dictionary.set(0, 'z');
    expect([dictionary.get(0), few.get(0)]).toEqual(['z', 'x']);
  });
});

describe('backfill dates', () => {
  const dates = (from: string, to: string, every: 'month' | 'week' | 'day') =>
    datesBetween(dayOf(from), dayOf(to), every).map((d) => new Date(d * DAY).toISOString().slice(0, 10));

  it('steps by month on the same day, clamped to the end of shorter months', () => {
    expect(dates('2025-01-31', '2025-05-30', 'month')).toEqual([
      '2025-01-31',
      '2025-02-28',
      '2025-03-31',
      '2025-04-30',
    ]);
    expect(dates('2024-01-29', '2024-03-29', 'month')).toEqual(['2024-01-29', '2024-02-29', '2024-03-29']);
  });

  it('steps by week and by day, up to and including --to', () => {
    expect(dates('2025-12-20', '2026-01-10', 'week')).toEqual([
      '2025-12-20',
      '2025-12-27',
      '2026-01-03',
      '2026-01-10',
    ]);
    expect(dates('2025-02-27', '2025-03-01', 'day')).toEqual(['2025-02-27', '2025-02-28', '2025-03-01']);
    expect(dates('2025-03-01', '2025-03-01', 'month')).toEqual(['2025-03-01']);
  });

  it(`stops at more than ${MAX_DATES} dates`, () => {
    expect(() => dates('2020-01-01', '2025-01-01', 'day')).toThrow(/more than 1000 dates/);
    expect(dates('2020-01-01', '2025-01-01', 'week')).toHaveLength(262);
  });
});

describe('audience-sync backfill', () => {
  const dir = tempDir('audience-sync-backfill-cli-');
  const prefix = `test-backfill-${path.basename(dir)}`;
  const configFile = path.join(dir, 'audience-sync.yaml');
  const monthly = Array.from({ length: 12 }, (_, k) => `2025-${String(k + 1).padStart(2, '0')}-15`);
  const redis = new Redis(inject('redisUrl'));
  let orders: string[][];
  beforeAll(async () => {
    await generateShop(path.join(dir, 'shop'), { customers: 300, seed: 5, analysisDate: '2026-01-01' });
    orders = (parse(readFileSync(path.join(dir, 'shop', 'orders.csv'))) as string[][]).slice(1);
    // Fixed past dates: a keep_days long enough that they stay retained whenever the test runs.
    writeFileSync(
      configFile,
      `source: { type: csv, path: shop/orders.csv }
profiles: { type: csv, path: shop/customers.csv }
history: { keep_days: 3650 }
sync: { redis_prefix: ${prefix} }
`,
    );
  });
  afterAll(() => redis.disconnect());

  const snapshots = async () => {
    const { config } = loadConfig(configFile);
    return (await listSnapshots(redis, `{${prefix}}`, sourceIdOf(config.source), { limit: 1000 })).snapshots;
  };
  /** Customers with an order on or before the date, counted from the file. */
  const customersBy = (date: string) => new Set(orders.filter((o) => o[1]! <= date).map((o) => o[0]!)).size;

  it('records a snapshot per month with its movement from the month before, then keeps them on a second run', async () => {
    const run = cli(
      [
        '--config',
        configFile,
        'backfill',
        '--from',
        '2025-01-15',
        '--to',
        '2025-12-20',
        '--every',
        'month',
        '--json',
      ],
      dir,
    );
    expect(run.code, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout) as {
      dates: { date: string; recorded: boolean; customers: number }[];
      note: string;
    };
    expect(out.dates.map((d) => [d.date, d.recorded])).toEqual(monthly.map((d) => [d, true]));
    expect(out.note).toMatch(/opt-outs and profiles are today's/);

    const stored = await snapshots();
    expect(stored.map((s) => s.date)).toEqual(monthly);
    stored.forEach((s, k) => {
      expect(s.by).toBe('backfill');
      expect(s.note).toMatch(/opt-outs and profiles are those of \d{4}-\d{2}-\d{2}/);
      expect(s.customers, s.date).toBe(customersBy(s.date));
      expect(s.segments.reduce((n, g) => n + g.customers, 0)).toBe(s.customers);
      // Customers only arrive in an order history: the new ones are those whose first order is in the month.
      const moved = s.movement.cells;
      if (k === 0) expect(s.movement.from).toBeNull();
      else {
        expect(s.movement.from).toBe(monthly[k - 1]);
        const arrived = moved.filter((c) => c.from === 'new').reduce((n, c) => n + c.customers, 0);
        expect(arrived, s.date).toBe(customersBy(s.date) - customersBy(monthly[k - 1]!));
        expect(moved.filter((c) => c.to === 'gone')).toEqual([]);
        expect(moved.reduce((n, c) => n + c.customers, 0)).toBe(s.customers);
      }
    });
    // One date against the R reference: segment sizes as a separate scoring of the orders up to it.
    const expected = countBySegment(
      rScores(ordersUpTo(path.join(dir, 'shop', 'orders.csv'), '2025-06-15', dir), '2025-06-15'),
    );
    const june = stored.find((s) => s.date === '2025-06-15')!;
    expect(
      Object.fromEntries(june.segments.filter((g) => g.customers > 0).map((g) => [g.segment, g.customers])),
    ).toEqual(expected);

    const again = cli(
      ['--config', configFile, 'backfill', '--from', '2025-01-15', '--to', '2025-12-20', '--every', 'month'],
      dir,
    );
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/0 of 12 snapshots recorded/);
    expect(again.stdout.match(/kept \(existed\)/g)).toHaveLength(12);
    expect(again.stdout).toMatch(/opt-outs and profiles are today's/);
    expect(await snapshots()).toEqual(stored);

    // Without --to: up to the day before the oldest snapshot, which is before --from here.
    const none = cli(['--config', configFile, 'backfill', '--from', '2025-01-15', '--every', 'week'], dir);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toMatch(/nothing to backfill: snapshots of this source start on 2025-01-15/);
    expect(await snapshots()).toEqual(stored);
  });

  it('names the flag, the setting or REDIS_URL in its errors', () => {
    const bad = (args: string[], env?: NodeJS.ProcessEnv) => {
      const r = spawnSync(
        process.execPath,
        [path.resolve('dist/app/cli/bin.js'), '--config', configFile, 'backfill', ...args],
        {
          cwd: dir,
          env: { ...process.env, CI: 'true', REDIS_URL: inject('redisUrl'), ...env },
          encoding: 'utf8',
        },
      );
      return { code: r.status, stderr: r.stderr };
    };
    expect(bad(['--from', '2025-01-15', '--every', 'year'])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--every: expected month, week or day, got 'year'/),
    });
    expect(bad(['--from', '2099-01-01', '--every', 'day'])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--from 2099-01-01 is after today/),
    });
    expect(bad(['--from', '2025-02-30', '--every', 'day'])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--from: '2025-02-30' is not a date/),
    });
    expect(bad(['--from', '2000-01-01', '--every', 'month'])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(
        /--from 2000-01-01 is more than history\.keep_days \(3650\) days before the (latest snapshot|last date backfilled)/,
      ),
    });
    expect(bad(['--from', '2025-01-01', '--to', '2099-01-01', '--every', 'month'])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--to 2099-01-01 is after today/),
    });
    expect(bad(['--from', '2018-01-01', '--to', '2025-12-31', '--every', 'day'])).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/more than 1000 dates/),
    });
    expect(
      bad(['--from', '2025-01-15', '--every', 'month'], { REDIS_URL: 'redis://127.0.0.1:1' }),
    ).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/cannot reach Redis at REDIS_URL \(redis:\/\/127\.0\.0\.1:1\)/),
    });
  });

  it('refuses a customers source before reading it, naming source.shape', () => {
    const other = path.join(dir, 'customers-source.yaml');
    writeFileSync(
      other,
      `source: { type: csv, path: shop/customers.csv, shape: customers }
history: { keep_days: 3650 }
sync: { redis_prefix: ${prefix}-customers }
`,
    );
    const r = cli(
      ['--config', other, 'backfill', '--from', '2025-01-15', '--to', '2025-03-15', '--every', 'month'],
      dir,
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/source\.shape is customers: scoring as of past dates needs the order history/);
  });
});
