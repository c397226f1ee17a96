import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSnapshots, sourceIdOf } from '../../src/history/snapshots.js';
import { tempDir } from '../helpers.js';
import { cli, cliEnv } from '../sync/harness.js';

/**
 * `score` from the built CLI makes the snapshot's keys on a thread while it reads (the read hands the
 * thread the ids every 65,536 rows, three times here, and again at the end): two scorings of one file of
 * 200,000 customers, a day apart, with customers arriving, leaving and moving.
 */
describe('the keys made on a thread while the source is read', () => {
  const customers = 200_000;
  let redis: Redis;
  let dir: string;
  const prefix = `test-follow-${process.pid}`;

  /** customer_id → "r,f,m" on day 0 or 1. */
  function scores(day: number): Map<string, string> {
    const rows = new Map<string, string>();
    for (let i = 0; i < customers; i++) {
      // Day 1 drops every 97th customer and adds 1,500 new ones; every 13th gets another R score.
      if (day === 1 && i % 97 === 5) continue;
      const r = ((i * 7 + (day === 1 && i % 13 === 0 ? 2 : 0)) % 5) + 1;
      rows.set(`cust-${i.toString(36)}`, `${r},${((i >>> 3) % 5) + 1},${((i >>> 6) % 5) + 1}`);
    }
    if (day === 1) for (let i = 0; i < 1500; i++) rows.set(`late-${i}`, `5,1,${(i % 5) + 1}`);
    return rows;
  }

  /** Each customer's segment as `score --out` wrote it: the oracle's input, not the history's. */
  const segmentsOf = (file: string) =>
    new Map(
      (parse(readFileSync(file), { columns: true }) as { customer_id: string; segment: string }[]).map(
        (r) => [r.customer_id, r.segment],
      ),
    );

  beforeAll(() => {
    redis = new Redis(cliEnv().REDIS_URL!);
    dir = tempDir('audience-sync-follow-');
  });
  afterAll(() => redis.disconnect());

  it('count the movement a join of the two scorings by customer id counts', async () => {
    const outs: Map<string, string>[] = [];
    for (const day of [0, 1]) {
      writeFileSync(
        path.join(dir, 'scores.csv'),
        'customer_id,r,f,m\n' + [...scores(day)].map(([id, rfm]) => `${id},${rfm}`).join('\n') + '\n',
      );
      writeFileSync(
        path.join(dir, 'audience-sync.yaml'),
        `source: { type: csv, path: scores.csv }\nscoring: { analysis_date: "2026-01-0${day + 1}" }\nsync: { redis_prefix: ${prefix} }\n`,
      );
      const out = path.join(dir, `out-${day}.csv`);
      const r = cli(['score', '--out', out], dir);
      expect(r.code, r.stderr).toBe(0);
      outs.push(segmentsOf(out));
    }
    const [before, after] = outs as [Map<string, string>, Map<string, string>];
    const expected: Record<string, number> = {};
    const add = (from: string, to: string) =>
      (expected[`${from} → ${to}`] = (expected[`${from} → ${to}`] ?? 0) + 1);
    for (const [id, s] of after) add(before.get(id) ?? 'new', s);
    for (const [id, s] of before) if (!after.has(id)) add(s, 'gone');
    // The test would not show arrivals, departures and moves otherwise.
    const kinds = Object.keys(expected);
    expect(kinds.some((k) => k.startsWith('new → ')) && kinds.some((k) => k.endsWith(' → gone'))).toBe(true);
    expect(kinds.filter((k) => !k.startsWith('new') && !k.endsWith('gone')).length).toBeGreaterThan(11);

    const source = sourceIdOf({ type: 'csv', path: 'scores.csv' } as never);
    const { snapshots } = await listSnapshots(redis, `{${prefix}}`, source, { limit: 10 });
    const latest = snapshots.find((s) => s.date === '2026-01-02')!;
    expect(latest.movement.from).toBe('2026-01-01');
    expect(
      Object.fromEntries(latest.movement.cells.map((c) => [`${c.from} → ${c.to}`, c.customers])),
    ).toEqual(expected);
  });
});
