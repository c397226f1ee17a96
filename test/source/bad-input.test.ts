import { describe, expect, it } from 'vitest';
import { sourceSchema, type SourceConfig } from '../../src/config/schema.js';
import { SourceError } from '../../src/errors.js';
import { readCustomers } from '../../src/source/read.js';
import { dayNumber } from '../../src/source/parse.js';
import { writeTemp } from '../helpers.js';

const analysisDay = dayNumber(2026, 1, 1)!;
const scoring = { monetary: 'sum', third_dimension: 'monetary' } as const;
const csv = (file: string, extra: Record<string, unknown> = {}): SourceConfig =>
  sourceSchema.parse({ type: 'csv', path: file, ...extra });
const read = (source: SourceConfig, monetary: 'sum' | 'mean' = 'sum') =>
  readCustomers(source, undefined, { analysisDay, scoring: { ...scoring, monetary }, baseDir: '/' });
const failure = (source: SourceConfig) =>
  read(source).then(
    () => undefined,
    (e: unknown) => e as SourceError,
  );

describe('amounts that are not finite numbers', () => {
  it('stops when a customer’s amounts add up past the largest double, naming the row and column', async () => {
    // 1e308 + 1e308 is 2e308: beyond Number.MAX_VALUE (1.797e308), in R's long double too once rounded.
    const file = writeTemp(
      'o.csv',
      'customer_id,order_date,total_eur\na,2025-06-01,1e308\nb,2025-06-01,5\na,2025-07-01,1e308\n',
    );
    const error = await failure(csv(file, { columns: { amount: 'total_eur' } }));
    expect(error).toBeInstanceOf(SourceError);
    expect(error!.message).toMatch(/row 3/);
    expect(error!.message).toMatch(/'total_eur'/);
    expect(error!.message).toMatch(/not a finite number/);
    expect(error!.hint).toMatch(/source\.columns\.amount/);
    // With the mean, the same sum is taken first.
    await expect(read(csv(file, { columns: { amount: 'total_eur' } }), 'mean')).rejects.toThrow(/row 3/);
  });

  it('stops on a single amount that is not finite: 1e400, Infinity, -inf', async () => {
    for (const amount of ['1e400', 'Infinity', '-inf', '-1E999']) {
      const file = writeTemp(
        'o.csv',
        `customer_id,order_date,amount\na,2025-06-01,3\nb,2025-06-01,${amount}\n`,
      );
      const error = await failure(csv(file));
      expect(error, amount).toBeInstanceOf(SourceError);
      expect(error!.message, amount).toMatch(/row 2: amount .*not a finite number/);
    }
  });

  it('stops on a total_revenue that is not finite, and on an engagement sum that overflows', async () => {
    const customers = writeTemp(
      'c.csv',
      'customer_id,last_order_date,order_count,total_revenue\na,2025-06-01,1,1e309\n',
    );
    await expect(read(csv(customers))).rejects.toThrow(/row 1: total_revenue .*not a finite number/);
    const orders = writeTemp(
      'o.csv',
      'customer_id,order_date,amount,sessions\na,2025-06-01,1,1e308\na,2025-06-02,1,1e308\n',
    );
    const error = await readCustomers(csv(orders), undefined, {
      analysisDay,
      scoring: { monetary: 'sum', third_dimension: 'engagement', engagement: { sessions: 2 } },
      baseDir: '/',
    }).catch((e: unknown) => e as SourceError);
    expect(error).toBeInstanceOf(SourceError);
    expect((error as Error).message).toMatch(/row 1: engagement .*not a finite number/);
  });

  it('keeps large finite sums exact (no false alarm near the limit)', async () => {
    const file = writeTemp(
      'o.csv',
      'customer_id,order_date,amount\na,2025-06-01,8e307\na,2025-06-01,8e307\na,2025-06-01,-1e307\n',
    );
    const { customers } = await read(csv(file));
    expect(customers.value[0]).toBe(1.5e308);
  });
});

describe('orders after the analysis date', () => {
  const rows = [
    'customer_id,order_date,amount',
    'a,2025-06-01,10',
    'a,2099-01-01,99', // row 2: after 2026-01-01
    'b,2025-12-31,5',
    'c,2026-01-02,7', // row 4: c's only order, the day after
    'b,2026-01-01,1', // on the analysis date itself: counts
  ].join('\n');

  it('leaves them out of recency, frequency and monetary, and counts them with their rows', async () => {
    const { customers, report } = await read(csv(writeTemp('o.csv', rows)));
    expect(customers.ids.toArray()).toEqual(['a', 'b']);
    expect(Array.from(customers.recencyDays)).toEqual([214, 0]);
    expect(Array.from(customers.frequency)).toEqual([1, 2]);
    expect(Array.from(customers.value)).toEqual([10, 6]);
    expect(report.future).toEqual({ count: 2, rows: [2, 4], after: '2026-01-01', what: 'orders' });
    // Not bad rows: they do not count against max_bad_row_share.
    expect(report.source.bad).toBe(0);
  });

  it('is an error with future_orders: error, naming the rows, the date and the settings', async () => {
    const error = await failure(csv(writeTemp('o.csv', rows), { future_orders: 'error' }));
    expect(error).toBeInstanceOf(SourceError);
    expect(error!.message).toMatch(/2 orders are after the analysis date 2026-01-01 \(rows 2, 4\)/);
    expect(error!.hint).toMatch(/scoring\.analysis_date/);
    expect(error!.hint).toMatch(/source\.future_orders: skip/);
  });

  it('treats a customers file the same: a last order after the analysis date, or a negative recency_days', async () => {
    const dates = writeTemp(
      'c.csv',
      'customer_id,last_order_date,order_count,total_revenue\na,2025-12-01,2,10\nb,2026-03-01,1,5\n',
    );
    const { customers, report } = await read(csv(dates));
    expect(customers.ids.toArray()).toEqual(['a']);
    expect(report.future).toMatchObject({ count: 1, rows: [2], what: 'customers' });
    const days = writeTemp(
      'c.csv',
      'customer_id,recency_days,order_count,total_revenue\na,3,2,10\nb,-4,1,5\nc,0,1,1\n',
    );
    const { customers: byDays, report: daysReport } = await read(csv(days));
    expect(byDays.ids.toArray()).toEqual(['a', 'c']);
    expect(daysReport.future).toMatchObject({ count: 1, rows: [2] });
    await expect(read(csv(days, { future_orders: 'error' }))).rejects.toThrow(
      /negative recency_days|after the analysis date/,
    );
  });
});

describe('hints that name the delimiter', () => {
  it('names the configured delimiter and source.delimiter when the header does not split into the columns', async () => {
    const file = writeTemp('o.csv', 'customer_id;order_date;amount\na;2025-06-01;1\n');
    const error = await failure(csv(file, { delimiter: ',', shape: 'orders' }));
    expect(error).toBeInstanceOf(SourceError);
    expect(error!.message).toMatch(/no customer_id column/);
    expect(`${error!.message} ${error!.hint}`).toMatch(/delimiter ','.*configured/);
    expect(`${error!.message} ${error!.hint}`).toMatch(/source\.delimiter/);
    // Without a shape, the shape cannot be told: the same hint.
    const unknown = await failure(csv(file, { delimiter: ',' }));
    expect(`${unknown!.message} ${unknown!.hint}`).toMatch(/delimiter ','.*source\.delimiter/);
  });

  it('names the detected delimiter when rows do not have the header’s number of fields', async () => {
    // The header splits on ';' (detected), the rows were written with ','.
    const lines = [
      'customer_id;order_date;amount',
      ...Array.from({ length: 20 }, (_, i) => `c${i},2025-06-01,1`),
    ];
    const error = await failure(csv(writeTemp('o.csv', lines.join('\n'))));
    expect(error).toBeInstanceOf(SourceError);
    expect(error!.message).toMatch(/20 of 20 rows are bad.*wrong number of fields/);
    expect(`${error!.message} ${error!.hint}`).toMatch(/delimiter ';' \(detected/);
    expect(error!.hint).toMatch(/source\.delimiter/);
  });

  it('says when the header has no delimiter at all', async () => {
    const file = writeTemp('o.csv', 'customer_id order_date amount\na 2025-06-01 1\n');
    const error = await failure(csv(file));
    expect(error!.message).toMatch(/delimiter ',' \(the default: the header has no ',', ';', tab or '\|'\)/);
    expect(error!.hint).toMatch(/source\.delimiter/);
  });

  it('writes a tab as "tab"', async () => {
    const file = writeTemp('o.csv', 'id\twhen\n1\t2\n');
    const error = await failure(csv(file));
    expect(`${error!.message} ${error!.hint}`).toMatch(/delimiter tab \(detected/);
  });
});
