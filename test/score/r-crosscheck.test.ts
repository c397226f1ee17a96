import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { segmentCustomers } from '../../src/score/pipeline.js';
import { readCsv } from '../helpers.js';

/**
 * Our quantile scores against the golden outputs of the R reference in test/r (the rfm package's
 * algorithm, run in R): every value, score, segment and break must be identical, not close.
 */
const FIXTURES = path.resolve('test/fixtures/rfm');
const fixtures = readdirSync(FIXTURES).filter((f) => f.endsWith('.csv'));

describe('quantile scoring matches R', () => {
  it('has fixtures', () => expect(fixtures.length).toBeGreaterThanOrEqual(14));

  for (const fixture of fixtures) {
    for (const map of ['default', 'rules'] as const) {
      it(`${fixture} with the ${map} segment map`, async () => {
        const name = fixture.replace(/\.csv$/, '');
        const expectedFile = path.join(FIXTURES, 'expected', `${name}.${map}.csv`);
        const expected = readCsv(readFileSync(expectedFile, 'utf8'));
        const breaks = JSON.parse(readFileSync(`${expectedFile}.breaks.json`, 'utf8')) as Record<
          string,
          number[]
        >;
        const config = configSchema.parse({
          source: {
            type: 'csv',
            path: path.join(FIXTURES, fixture),
            shape: name.startsWith('customers') ? 'customers' : 'orders',
          },
          scoring: { analysis_date: '2026-01-01', method: 'quantile' },
          segments: map === 'rules' ? { map: 'rules', other: 'Others' } : { map: 'default' },
        });
        const { customers, scores } = await segmentCustomers(config, { baseDir: FIXTURES });
        const ours = new Map(
          customers.ids.toArray().map((id, i) => [
            id,
            {
              recency_days: customers.recencyDays[i],
              frequency: customers.frequency[i],
              monetary: customers.value[i],
              r: scores.r[i],
              f: scores.f[i],
              m: scores.m[i],
              segment: scores.segments[scores.segment[i]!],
            },
          ]),
        );
        expect(ours.size).toBe(expected.length);
        for (const row of expected) {
          const got = ours.get(row.customer_id!);
          expect(got, `customer ${row.customer_id}`).toBeDefined();
          expect(got, `customer ${row.customer_id}`).toEqual({
            recency_days: Number(row.recency_days),
            frequency: Number(row.frequency),
            monetary: Number(row.monetary),
            r: Number(row.r),
            f: Number(row.f),
            m: Number(row.m),
            segment: row.segment,
          });
        }
        expect(scores.breaks).toEqual(breaks);
      });
    }
  }
});
