import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { compareCodePoints, ntileScores } from '../../src/score/ntile.js';

describe('NTILE(5) semantics', () => {
  it('gives the first n mod 5 groups one extra row', () => {
    const values = Array.from({ length: 7 }, (_, i) => i);
    const ids = values.map((v) => `c${v}`);
    expect(Array.from(ntileScores(values, ids, true))).toEqual([1, 1, 2, 2, 3, 4, 5]);
  });

  it('breaks ties by customer id in byte order', () => {
    const ids = ['b', 'a', 'B', '10', '9'];
    const scores = ntileScores([1, 1, 1, 1, 1], ids, true);
    // byte order: '10' < '9' < 'B' < 'a' < 'b'
    expect(Array.from(scores)).toEqual([5, 4, 3, 1, 2]);
  });

  it('orders strings by code point, not UTF-16 unit', () => {
    expect(compareCodePoints('\u{1F600}', '\uFF01')).toBeGreaterThan(0);
    expect(compareCodePoints('a', 'ab')).toBeLessThan(0);
  });
});

describe('NTILE against PostgreSQL', () => {
  const client = new pg.Client({ connectionString: inject('postgresUrl') });
  beforeAll(async () => {
    await client.connect();
  });
  afterAll(async () => {
    await client.end();
  });

  for (const n of [1, 3, 5, 13, 1000, 4999]) {
    it(`matches NTILE(5) OVER (ORDER BY value, customer_id COLLATE "C") for ${n} rows with ties`, async () => {
      let seed = n * 7919;
      const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
      const ids = Array.from({ length: n }, (_, i) =>
        rand() < 0.3 ? `C${i}` : rand() < 0.5 ? `c-${i}ä` : String(i),
      );
      const values = ids.map(() => Math.floor(rand() * 20) / 2);
      const { rows } = await client.query<{ id: string; up: number; down: number }>(
        `SELECT id, NTILE(5) OVER (ORDER BY v, id COLLATE "C") AS up, NTILE(5) OVER (ORDER BY v DESC, id COLLATE "C") AS down
           FROM unnest($1::text[], $2::float8[]) AS t(id, v)`,
        [ids, values],
      );
      const expectedUp = new Map(rows.map((r) => [r.id, Number(r.up)]));
      const expectedDown = new Map(rows.map((r) => [r.id, Number(r.down)]));
      const up = ntileScores(values, ids, true);
      const down = ntileScores(values, ids, false);
      ids.forEach((id, i) => {
        expect(up[i], `ascending ${id}`).toBe(expectedUp.get(id));
        expect(down[i], `descending ${id}`).toBe(expectedDown.get(id));
      });
    });
  }
});
