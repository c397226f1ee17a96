import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  listSnapshots,
  movementBetween,
  snapshotSchema,
  sourceIdOf,
  type Snapshot,
} from '../../src/history/snapshots.js';
import { BIN, cli, cliEnv, makeShop } from '../sync/harness.js';

/** Each customer's segment in a `score --out` file. */
function segmentsIn(file: string): Map<string, string> {
  const rows = parse(readFileSync(file), { columns: true }) as { customer_id: string; segment: string }[];
  return new Map(rows.map((r) => [r.customer_id, r.segment]));
}

/** Sizes and movement counted from two scores files by joining them on customer id. */
function expectedOf(before: Map<string, string> | undefined, after: Map<string, string>) {
  const sizes: Record<string, number> = {};
  for (const s of after.values()) sizes[s] = (sizes[s] ?? 0) + 1;
  const cells: Record<string, number> = {};
  const add = (from: string, to: string) => (cells[`${from} → ${to}`] = (cells[`${from} → ${to}`] ?? 0) + 1);
  if (before) {
    for (const [id, s] of after) add(before.get(id) ?? 'new', s);
    for (const [id, s] of before) if (!after.has(id)) add(s, 'gone');
  }
  return { sizes, cells };
}

function observed(s: Snapshot) {
  const sizes: Record<string, number> = {};
  for (const x of s.segments) if (x.customers > 0) sizes[x.segment] = x.customers;
  const cells: Record<string, number> = {};
  for (const c of s.movement.cells) cells[`${c.from} → ${c.to}`] = c.customers;
  return { sizes, cells };
}

/** The dates of the test: the shop's orders span about two years up to 2026-01-01. */
const DATES = ['2025-07-01', '2025-10-01', '2026-01-01'];

describe('segment snapshots', () => {
  let redis: Redis;
  let shop: Awaited<ReturnType<typeof makeShop>>;
  let source: string;
  const all = async () => (await listSnapshots(redis, `{${shop.prefix}}`, source, { limit: 1000 })).snapshots;

  beforeAll(async () => {
    redis = new Redis(cliEnv().REDIS_URL!);
    shop = await makeShop({ customers: 600, seed: 11 });
    shop.write('2026-01-01', 'history: { keep_days: 3650 }');
    source = sourceIdOf({ type: 'csv', path: 'shop/orders.csv' } as never);
  });
  afterAll(() => redis.disconnect());

  it('records one snapshot per scored date, with sizes and movement counted from the scores files', async () => {
    let before: Map<string, string> | undefined;
    for (const date of DATES) {
      const out = path.join(shop.dir, `scores-${date}.csv`);
      const r = cli(['score', '--analysis-date', date, '--out', out], shop.dir);
      expect(r.code, r.stderr).toBe(0);
      const after = segmentsIn(out);
      const snapshot = (await all()).find((s) => s.date === date)!;
      expect(snapshotSchema.parse(snapshot)).toEqual(snapshot);
      expect(snapshot.by).toBe('score');
      expect(snapshot.customers).toBe(after.size);
      expect(observed(snapshot)).toEqual(expectedOf(before, after));
      expect(snapshot.movement.from).toBe(before ? DATES[DATES.indexOf(date) - 1] : null);
      // Opted-out customers are counted in their segment: the profiles file says who they are.
      const optedOut = new Set(
        (
          parse(readFileSync(path.join(shop.dir, 'shop', 'customers.csv')), { columns: true }) as Record<
            string,
            string
          >[]
        )
          .filter((r) => r.opted_out === 'true' || r.opted_out === '1')
          .map((r) => r.customer_id),
      );
      const expectedOpted: Record<string, number> = {};
      for (const [id, s] of after) if (optedOut.has(id)) expectedOpted[s] = (expectedOpted[s] ?? 0) + 1;
      expect(Object.keys(expectedOpted).length).toBeGreaterThan(0);
      expect(
        Object.fromEntries(
          snapshot.segments.filter((x) => x.optedOut > 0).map((x) => [x.segment, x.optedOut]),
        ),
      ).toEqual(expectedOpted);
      before = after;
    }
    // 2025-07-01 → 2025-10-01 saw new customers arrive: the test would not show "new" otherwise.
    expect((await all())[1]!.movement.cells.some((c) => c.from === 'new')).toBe(true);
  });

  it('scoring the same date again (score, then sync) makes no second snapshot', async () => {
    const before = await all();
    expect(
      cli(['score', '--analysis-date', '2026-01-01', '--out', path.join(shop.dir, 'again.csv')], shop.dir)
        .code,
    ).toBe(0);
    expect(cli(['sync'], shop.dir).code).toBeLessThan(2);
    expect(await all()).toEqual(before);
  });

  it('two scorings of a new date at once record it once, and the next movement is still exact', async () => {
    const run = () =>
      new Promise<number>((resolve) => {
        const child = spawn(
          process.execPath,
          [BIN, 'score', '--analysis-date', '2026-01-15', '--out', '/dev/null'],
          {
            cwd: shop.dir,
            env: cliEnv(),
            stdio: 'ignore',
          },
        );
        child.on('exit', (code) => resolve(code ?? -1));
      });
    expect(await Promise.all([run(), run()])).toEqual([0, 0]);
    expect((await all()).filter((s) => s.date === '2026-01-15')).toHaveLength(1);
    const out = path.join(shop.dir, 'scores-2026-02-01.csv');
    const mid = path.join(shop.dir, 'scores-2026-01-15.csv');
    expect(cli(['score', '--analysis-date', '2026-01-15', '--no-record', '--out', mid], shop.dir).code).toBe(
      0,
    );
    expect(cli(['score', '--analysis-date', '2026-02-01', '--out', out], shop.dir).code).toBe(0);
    const snapshot = (await all()).find((s) => s.date === '2026-02-01')!;
    expect(observed(snapshot)).toEqual(expectedOf(segmentsIn(mid), segmentsIn(out)));
    // Only the latest snapshot keeps per-customer segments: one generation, a few bytes per customer
    // (about 1.4 at scale; a small shop pays a fixed few kilobytes for the sketch of arrivals).
    const chunks = await redis.keys(`{${shop.prefix}}:snapshots:${source}:customers:*`);
    expect(chunks).toHaveLength(1);
    expect(await redis.strlen(chunks[0]!)).toBeLessThan(segmentsIn(out).size * 4 + 1024);
  });

  it('gives movement between snapshots only where each step was counted, and says why otherwise', async () => {
    const one = await movementBetween(redis, `{${shop.prefix}}`, source, '2025-07-01', '2025-10-01');
    expect(one.exact).toBe(true);
    expect(one.steps).toHaveLength(1);
    const three = await movementBetween(redis, `{${shop.prefix}}`, source, '2025-07-01', '2026-01-15');
    expect(three.exact).toBe(true);
    expect(three.steps!.map((s) => [s.from, s.to])).toEqual([
      ['2025-07-01', '2025-10-01'],
      ['2025-10-01', '2026-01-01'],
      ['2026-01-01', '2026-01-15'],
    ]);
    // An older date scored after newer ones has no per-customer segments to count from.
    expect(cli(['score', '--analysis-date', '2025-04-01', '--out', '/dev/null'], shop.dir).code).toBe(0);
    const old = await movementBetween(redis, `{${shop.prefix}}`, source, '2025-04-01', '2025-10-01');
    expect(old).toMatchObject({
      exact: false,
      reason: expect.stringMatching(/2025-07-01 counted no movement from 2025-04-01/),
    });
    expect(
      (await movementBetween(redis, `{${shop.prefix}}`, source, '2025-05-01', '2025-10-01')).reason,
    ).toMatch(/no snapshot for 2025-05-01/);
  });

  it('drops snapshots older than history.keep_days before the latest, and refuses to record one', async () => {
    shop.write('2026-01-01', 'history: { keep_days: 100 }');
    // Recording 2026-02-01 was done; a new date triggers the clean-up.
    expect(cli(['score', '--analysis-date', '2026-02-15', '--out', '/dev/null'], shop.dir).code).toBe(0);
    expect((await all()).map((s) => s.date)).toEqual([
      '2026-01-01',
      '2026-01-15',
      '2026-02-01',
      '2026-02-15',
    ]);
    const r = cli(['score', '--analysis-date', '2025-07-01', '--out', '/dev/null'], shop.dir);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/history\.keep_days/);
    expect((await all()).map((s) => s.date)).not.toContain('2025-07-01');
  });

  it('a date recorded right before the latest one becomes the step the latest counts its movement from', async () => {
    const fresh = await makeShop({ customers: 500, seed: 23 });
    fresh.write('2026-01-01', 'history: { keep_days: 3650 }');
    const latest = path.join(fresh.dir, 'latest.csv');
    const before = path.join(fresh.dir, 'before.csv');
    expect(cli(['score', '--out', latest], fresh.dir).code).toBe(0);
    expect(cli(['score', '--analysis-date', '2025-12-01', '--out', before], fresh.dir).code).toBe(0);
    const { snapshots } = await listSnapshots(redis, `{${fresh.prefix}}`, source);
    expect(snapshots.map((s) => [s.date, s.movement.from])).toEqual([
      ['2025-12-01', null],
      ['2026-01-01', '2025-12-01'],
    ]);
    expect(observed(snapshots[1]!)).toEqual(expectedOf(segmentsIn(before), segmentsIn(latest)));
  });
});
