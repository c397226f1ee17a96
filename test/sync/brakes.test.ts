import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { changeLog, cli, expectedAudiences, expectedRows, fileAudiences, makeShop } from './harness.js';

/** Case 1 of issue 14: a partial export must never empty the audiences. */

interface Held {
  audience: string;
  held: string | null;
}

/** Keeps the header and the first `rows` rows of a CSV file; returns a function that puts it back. */
function cut(file: string, rows: number): () => void {
  const text = readFileSync(file, 'utf8');
  writeFileSync(
    file,
    text
      .split('\n')
      .slice(0, rows + 1)
      .join('\n') + '\n',
  );
  return () => writeFileSync(file, text);
}

/** Per audience, the customers of `before` who are gone from `after` or come with other identifiers. */
function leaving(before: Map<string, Map<string, string>>, after: Map<string, Map<string, string>>) {
  return new Map(
    [...before].map(([name, members]) => {
      const now = after.get(name) ?? new Map<string, string>();
      return [name, [...members].filter(([id, line]) => now.get(id) !== line).length];
    }),
  );
}

describe('brakes', () => {
  it('a partial profiles export stops the run before anything is sent; past that brake, audiences losing too many are held', async () => {
    const shop = await makeShop();
    expect([0, 3]).toContain(cli(['sync'], shop.dir).code);
    const before = await expectedRows(shop.config);
    const synced = fileAudiences(shop.out);
    const sent = changeLog(shop.out).length;

    // The profiles export stopped after a quarter of its 400 rows.
    const restore = cut(path.join(shop.dir, 'shop', 'customers.csv'), 100);
    const plan = cli(['plan', '--json'], shop.dir);
    expect(plan.code).toBe(1);
    expect(JSON.parse(plan.stdout).held).toMatch(
      /the profiles have 100 rows, 75\.0 % fewer than the 400 of the last sync .*profiles\.max_shrink_share 20\.0 %/,
    );
    expect(plan.stderr).toMatch(/--allow-shrink/);
    const stopped = cli(['sync', '--json'], shop.dir);
    expect(stopped.code).toBe(1);
    expect(JSON.parse(stopped.stdout)).toMatchObject({
      results: [],
      held: expect.stringMatching(/source brake/),
    });
    expect(changeLog(shop.out)).toHaveLength(sent);
    expect(fileAudiences(shop.out)).toEqual(synced);

    // Past the source brake, each audience that would lose more than 20 % of its members, and at least
    // 10 (sync.min_removals_held), is held.
    const after = await expectedRows(shop.config);
    const expectedNow = await expectedAudiences(shop.config);
    const lost = leaving(before, after);
    const held = [...lost].filter(([name, n]) => n >= 10 && n / before.get(name)!.size > 0.2).map(([n]) => n);
    const free = [...lost.keys()].filter((name) => !held.includes(name));
    expect(held.length).toBeGreaterThan(5);
    expect(free.length).toBeGreaterThan(0); // small ones, under the floor

    const planned = JSON.parse(cli(['plan', '--json', '--allow-shrink'], shop.dir).stdout) as {
      plans: Held[];
      held: string | null;
    };
    expect(planned.held).toBeNull();
    expect(
      planned.plans
        .filter((p) => p.held)
        .map((p) => p.audience)
        .sort(),
    ).toEqual([...held].sort());

    const braked = cli(['sync', '--json', '--allow-shrink'], shop.dir);
    expect(braked.code).toBe(1);
    const results = JSON.parse(braked.stdout).results as (Held & { removed: number; error?: string })[];
    for (const r of results) {
      if (held.includes(r.audience)) {
        expect(r.held, r.audience).toMatch(
          new RegExp(`would remove ${lost.get(r.audience)} of its ${before.get(r.audience)!.size} members`),
        );
        expect(r.held).toContain(`--allow-removals '${r.audience}'`);
        expect(r.removed).toBe(0);
      } else expect(r.error, r.audience).toBeUndefined();
    }
    expect(braked.stderr).toMatch(/held by the removal brake/);
    const files = fileAudiences(shop.out);
    for (const name of held) expect(files.get(name), name).toEqual(synced.get(name));
    for (const name of free) expect(files.get(name), name).toEqual(expectedNow.get(name));

    // One audience let through on purpose; the others stay held.
    const [one] = held;
    const allowed = cli(['sync', '--json', '--allow-shrink', '--allow-removals', one!], shop.dir);
    expect(allowed.code).toBe(1);
    expect(fileAudiences(shop.out).get(one!)).toEqual(expectedNow.get(one!));
    expect(fileAudiences(shop.out).get(held[1]!)).toEqual(synced.get(held[1]!));

    // The whole export back: the held audiences had nothing taken from them, so nothing is removed.
    restore();
    const back = cli(['sync', '--json'], shop.dir);
    expect([0, 3]).toContain(back.code);
    const removed = (JSON.parse(back.stdout).results as { removed: number }[]).reduce(
      (a, r) => a + r.removed,
      0,
    );
    expect(removed).toBe(0);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
  });

  it('a source with fewer customers than the last sync by more than the share stops; --allow-shrink goes on', async () => {
    const shop = await makeShop({ sync: 'max_removal_share: 1' });
    expect([0, 3]).toContain(cli(['sync'], shop.dir).code);
    const sent = changeLog(shop.out).length;
    const orders = path.join(shop.dir, 'shop', 'orders.csv');
    const customers = new Set(
      readFileSync(orders, 'utf8')
        .split('\n')
        .slice(1)
        .filter(Boolean)
        .map((l) => l.split(',')[0]),
    );
    // Keep the orders of the first 70 % of customers by first appearance: 30 % of the customers are gone.
    const keep = new Set([...customers].slice(0, Math.floor(customers.size * 0.7)));
    const lines = readFileSync(orders, 'utf8').split('\n');
    writeFileSync(orders, lines.filter((l, i) => i === 0 || keep.has(l.split(',')[0])).join('\n'));

    const stopped = cli(['sync', '--json'], shop.dir);
    expect(stopped.code).toBe(1);
    expect(JSON.parse(stopped.stdout).held).toMatch(
      new RegExp(
        `the source has ${keep.size} customers, 30\\.0 % fewer than the ${customers.size} of the last sync`,
      ),
    );
    expect(changeLog(shop.out)).toHaveLength(sent);
    const forced = cli(['sync', '--json', '--allow-shrink'], shop.dir);
    expect([0, 3]).toContain(forced.code);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    // What it saw is the new baseline.
    expect(cli(['plan'], shop.dir).code).toBe(0);
  });
});
