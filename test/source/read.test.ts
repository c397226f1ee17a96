import { gzipSync } from 'node:zlib';
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { sourceSchema, profilesSchema, type SourceConfig } from '../../src/config/schema.js';
import { SourceError } from '../../src/errors.js';
import { readCustomers } from '../../src/source/read.js';
import { dayNumber } from '../../src/source/parse.js';
import { tempDir, writeTemp } from '../helpers.js';

const analysisDay = dayNumber(2026, 1, 1)!;
const scoring = { monetary: 'sum', third_dimension: 'monetary' } as const;
const csv = (file: string, extra: Record<string, unknown> = {}): SourceConfig =>
  sourceSchema.parse({ type: 'csv', path: file, ...extra });
const read = (source: SourceConfig, more: Partial<Parameters<typeof readCustomers>[2]> = {}) =>
  readCustomers(source, undefined, { analysisDay, scoring, baseDir: '/', ...more });

describe('orders shape', () => {
  it('aggregates orders per customer: last date, count, sum', async () => {
    const file = writeTemp(
      'orders.csv',
      'customer_id,order_date,amount\na,2025-12-01,10.5\nb,2025-06-01,255\na,2025-11-01,20\na,2025-12-31,0.1\n',
    );
    const { customers, report } = await read(csv(file));
    expect(customers.shape).toBe('orders');
    expect(customers.ids.toArray()).toEqual(['a', 'b']);
    expect(Array.from(customers.recencyDays)).toEqual([1, 214]);
    expect(Array.from(customers.frequency)).toEqual([3, 1]);
    expect(Array.from(customers.value)).toEqual([30.6, 255]);
    expect(report.source).toMatchObject({ rows: 4, bad: 0 });
  });

  it('recognises date/revenue column names, semicolons, a BOM and gzip', async () => {
    const text = '\uFEFFCustomer ID;Date;Revenue\nx;2025-12-31;5\nx;2025-12-30;7\n';
    const dir = tempDir();
    writeFileSync(`${dir}/o.csv.gz`, gzipSync(text));
    const { customers } = await read(csv(`${dir}/o.csv.gz`));
    expect(customers.ids.toArray()).toEqual(['x']);
    expect(Array.from(customers.value)).toEqual([12]);
  });

  it('uses mapped column names and date formats', async () => {
    const file = writeTemp('o.csv', 'kunde,datum,betrag\nk1,31.12.2025,3\n');
    const { customers } = await read(
      csv(file, {
        columns: { customer_id: 'kunde', order_date: 'datum', amount: 'betrag' },
        date_format: 'DD.MM.YYYY',
      }),
    );
    expect(Array.from(customers.recencyDays)).toEqual([1]);
  });

  it('counts bad rows with row numbers and reasons, and goes on under the limit', async () => {
    const rows = ['customer_id,order_date,amount'];
    for (let i = 0; i < 200; i++) rows.push(`c${i},2025-01-01,1`);
    rows.push('c1,not-a-date,5', 'c2,2025-01-02,12x', ',2025-01-01,3', 'c3,2025-01-01');
    const file = writeTemp('o.csv', rows.join('\n'));
    const { customers, report } = await read(csv(file, { max_bad_row_share: 0.05 }));
    expect(customers.ids.length).toBe(200);
    expect(report.source.bad).toBe(4);
    expect(report.source.byReason).toEqual({
      'unparseable order_date': 1,
      'non-numeric amount': 1,
      'missing customer_id': 1,
      'wrong number of fields': 1,
    });
    expect(report.source.samples.map((s) => s.row)).toEqual([201, 202, 203, 204]);
    // A bad value is shown by its form only: a misplaced email must not reach the logs.
    expect(report.source.samples[1]!.reason).toBe("non-numeric amount: '99a'");
  });

  it('stops above the allowed share of bad rows, naming the reasons', async () => {
    const file = writeTemp(
      'o.csv',
      'customer_id,order_date,amount\na,2025-01-01,1\nb,x,1\nc,2025-01-01,jane@example.com\n',
    );
    const error = await read(csv(file)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SourceError);
    expect((error as Error).message).toMatch(/2 of 3 rows are bad \(66\.7 %, more than the allowed 1\.0 %\)/);
    expect((error as Error).message).toMatch(/row 2: unparseable order_date/);
    expect((error as Error).message).not.toContain('jane');
    expect((error as SourceError).hint).toMatch(/max_bad_row_share/);
  });

  it('names a missing column and the columns that are there', async () => {
    const file = writeTemp('o.csv', 'customer_id,order_date,total_eur\na,2025-01-01,1\n');
    await expect(read(csv(file, { shape: 'orders' }))).rejects.toThrow(
      /no amount column.*columns are: customer_id, order_date, total_eur/,
    );
    await expect(read(csv(file, { columns: { amount: 'total_usd' } }))).rejects.toThrow(
      /column 'total_usd' \(from source\.columns\.amount\) is not in the header; did you mean 'total_eur'\?/,
    );
  });

  it('fails clearly on malformed CSV and on a missing file', async () => {
    const file = writeTemp('o.csv', 'customer_id,order_date,amount\na,2025-01-01,"1\n');
    await expect(read(csv(file))).rejects.toThrow(/malformed CSV/);
    await expect(read(csv('/nonexistent/orders.csv'))).rejects.toThrow(
      /cannot read \/nonexistent\/orders\.csv: ENOENT/,
    );
  });

  it('keeps the most recent identifiers and opt-out flags from order rows', async () => {
    const file = writeTemp(
      'o.csv',
      'customer_id,order_date,amount,email,opted_out,brand\na,2025-01-01,1,old@example.com,false,Acme\na,2025-06-01,1,new@example.com,false,\na,2025-03-01,1,mid@example.com,true,Globex\n',
    );
    const { customers } = await read(csv(file, { attributes: ['brand'] }));
    expect(customers.profile.email?.toArray()).toEqual(['new@example.com']);
    expect(customers.attributes.brand?.toArray()).toEqual(['Acme']);
    expect(Array.from(customers.optedOut)).toEqual([1]);
  });

  it('scores engagement (RFE) as a weighted sum of columns', async () => {
    const file = writeTemp(
      'o.csv',
      'customer_id,order_date,amount,sessions,opens\na,2025-01-01,1,3,2\na,2025-01-02,1,1,\n',
    );
    const { customers } = await read(csv(file), {
      scoring: { monetary: 'sum', third_dimension: 'engagement', engagement: { sessions: 1, opens: 0.5 } },
    });
    expect(Array.from(customers.value)).toEqual([5]);
  });

  it('computes mean monetary value when asked', async () => {
    const file = writeTemp('o.csv', 'customer_id,order_date,amount\na,2025-01-01,10\na,2025-01-02,20\n');
    const { customers } = await read(csv(file), {
      scoring: { monetary: 'mean', third_dimension: 'monetary' },
    });
    expect(Array.from(customers.value)).toEqual([15]);
  });
});

describe('customers and scores shapes', () => {
  it('reads pre-aggregated customers and reports duplicates as bad rows', async () => {
    const rows = ['customer_id,last_order_date,order_count,total_revenue'];
    for (let i = 0; i < 150; i++) rows.push(`c${i},2025-12-01,${(i % 7) + 1},${i * 3}`);
    rows.push('c5,2025-12-02,1,1');
    const file = writeTemp('c.csv', rows.join('\n'));
    const { customers, report } = await read(csv(file));
    expect(customers.shape).toBe('customers');
    expect(customers.ids.length).toBe(150);
    expect(customers.recencyDays[0]).toBe(31);
    expect(customers.frequency[3]).toBe(4);
    expect(report.source.samples[0]).toEqual({
      row: 151,
      reason: 'duplicate customer_id: first seen at row 6',
    });
  });

  it('accepts recency_days instead of a last order date', async () => {
    const file = writeTemp('c.csv', 'customer_id,recency_days,order_count,total_revenue\na,12,3,99.5\n');
    const { customers } = await read(csv(file));
    expect(Array.from(customers.recencyDays)).toEqual([12]);
  });

  it('reads precomputed scores or segment names', async () => {
    const file = writeTemp('s.csv', 'customer_id,r,f,m\na,5,5,5\nb,1,2,3\n');
    const { customers } = await read(csv(file));
    expect(customers.shape).toBe('scores');
    expect(Array.from(customers.given!.r)).toEqual([5, 1]);
    const seg = writeTemp('s.csv', 'customer_id,segment\na,VIP\nb,Champions\n');
    const { customers: bySegment } = await read(csv(seg));
    expect(bySegment.given!.segment?.toArray()).toEqual(['VIP', 'Champions']);
    const bad = writeTemp('s.csv', 'customer_id,rfm_code\na,555\nb,655\n');
    await expect(read(csv(bad))).rejects.toThrow(/rfm_code must be three digits 1-5/);
  });

  it('says which columns each shape needs when it cannot tell', async () => {
    const file = writeTemp('x.csv', 'id,when,what\n1,2,3\n');
    await expect(read(csv(file))).rejects.toThrow(
      /cannot tell the input shape.*orders: customer_id, order_date/,
    );
  });
});

describe('profiles', () => {
  it('joins identifiers, consent and attributes by customer id', async () => {
    const orders = writeTemp(
      'o.csv',
      'customer_id,order_date,amount\na,2025-01-01,1\nb,2025-01-01,1\nc,2025-01-01,1\n',
    );
    const profiles = writeTemp(
      'p.csv',
      'customer_id,email,phone,consent,favorite_brand\na,A@Example.com,,yes,Acme\nb,,+1 415 555 0100,no,Globex\nz,z@example.com,,yes,Acme\n',
    );
    const { customers, report } = await readCustomers(
      csv(orders),
      profilesSchema.parse({ type: 'csv', path: profiles, attributes: ['favorite_brand'] }),
      { analysisDay, scoring, baseDir: '/' },
    );
    expect(customers.profile.email?.toArray()).toEqual(['A@Example.com', undefined, undefined]);
    expect(customers.profile.phone?.toArray()).toEqual([undefined, '+1 415 555 0100', undefined]);
    expect(Array.from(customers.optedOut)).toEqual([0, 1, 0]);
    expect(customers.attributes.favorite_brand?.toArray()).toEqual(['Acme', 'Globex', undefined]);
    expect(report.profiles).toMatchObject({ rows: 3, unmatched: 1, missing: 1 });
  });
});

describe('PostgreSQL source', () => {
  const url = inject('postgresUrl');
  const client = new pg.Client({ connectionString: url });
  beforeAll(async () => {
    await client.connect();
    await client.query(`DROP TABLE IF EXISTS orders;
      CREATE TABLE orders (customer_id text, ordered_at timestamptz, amount numeric(12,2));
      INSERT INTO orders SELECT 'c' || (g % 5000), timestamptz '2025-01-01 00:00:00+00' + (g % 365) * interval '1 day' + interval '23 hours',
        (g % 997) / 10.0 FROM generate_series(1, 60000) g;`);
  });
  afterAll(async () => {
    await client.end();
  });

  const source = (query: string): SourceConfig =>
    sourceSchema.parse({ type: 'postgres', url, query, columns: { order_date: 'ordered_at' } });

  it('streams a query with COPY and gives the same customers as SQL aggregation', async () => {
    const { customers, report } = await read(source('SELECT customer_id, ordered_at, amount FROM orders;'));
    expect(report.source.rows).toBe(60000);
    const { rows } = await client.query<{ customer_id: string; last: string; n: string; total: string }>(
      `SELECT customer_id, max((ordered_at AT TIME ZONE 'UTC')::date)::text AS last, count(*) AS n, sum(amount)::text AS total FROM orders GROUP BY 1`,
    );
    expect(customers.ids.length).toBe(rows.length);
    const at = new Map(customers.ids.toArray().map((id, i) => [id, i]));
    for (const row of rows) {
      const i = at.get(row.customer_id)!;
      const [y, m, d] = row.last.split('-').map(Number) as [number, number, number];
      expect(customers.recencyDays[i]).toBe(analysisDay - dayNumber(y, m, d)!);
      expect(customers.frequency[i]).toBe(Number(row.n));
      expect(customers.value[i]).toBeCloseTo(Number(row.total), 6);
    }
  });

  it('reads quoted values, line breaks and multi-byte text from COPY', async () => {
    await client.query(`DROP TABLE IF EXISTS source_tricky;
      CREATE TABLE source_tricky (customer_id text, ordered_at timestamptz, amount numeric(12,2), note text);
      INSERT INTO source_tricky VALUES ('a,"1"', '2025-12-31 12:00+00', 1, E'two\\nlines, "quoted"'),
        ('Zoë 😀', '2025-12-30 12:00+00', 2, ''), ('a,"1"', '2025-12-01 12:00+00', 3, E'\\r\\n');`);
    const { customers, report } = await read(
      sourceSchema.parse({
        type: 'postgres',
        url,
        query: 'SELECT * FROM source_tricky',
        columns: { order_date: 'ordered_at' },
        attributes: ['note'],
      }),
    );
    expect(report.source).toMatchObject({ rows: 3, bad: 0 });
    expect(customers.ids.toArray()).toEqual(['a,"1"', 'Zoë 😀']);
    expect(Array.from(customers.value)).toEqual([4, 2]);
    expect(customers.attributes.note?.toArray()).toEqual(['two\nlines, "quoted"', undefined]);
  });

  it('reports a query error with its position', async () => {
    await expect(read(source('SELECT customer_id, ordered_at, amount FROM nowhere'))).rejects.toThrow(
      /PostgreSQL rejected the query: relation "nowhere" does not exist \(at character \d+\)/,
    );
  });

  it('reports a connection failure without the password', async () => {
    const bad = sourceSchema.parse({
      type: 'postgres',
      url: 'postgres://u:hunter2@127.0.0.1:1/db',
      query: 'select 1',
    });
    const error = (await read(bad).catch((e: unknown) => e)) as Error;
    expect(error.message).toMatch(/cannot connect to PostgreSQL at 127\.0\.0\.1:1\/db/);
    expect(error.message).not.toContain('hunter2');
  });
});
