import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { changeLog, expectedAudiences, expectedRows, fileAudiences, makeShop } from './harness.js';

const BIN = path.resolve('dist/app/cli/bin.js');
const redisUrl = inject('redisUrl');

function cli(args: string[], cwd: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd,
    env: { ...process.env, CI: 'true', REDIS_URL: redisUrl },
    encoding: 'utf8',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const sync = (cwd: string, ...more: string[]) => {
  const r = cli(['sync', '--json', ...more], cwd);
  if (r.code !== 0 && r.code !== 3) throw new Error(`sync exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { results: Record<string, number | string>[] };
};
const total = (results: Record<string, unknown>[], field: string) =>
  results.reduce((a, r) => a + Number(r[field] ?? 0), 0);

describe('sync to the file destination', () => {
  it('makes every audience equal its segment, then sends nothing when nothing changed', async () => {
    const shop = await makeShop();
    const plan = cli(['plan', '--json'], shop.dir);
    expect(plan.code).toBe(0);
    const plans = JSON.parse(plan.stdout).plans as {
      audience: string;
      to_add: number;
      to_remove: number;
      skipped: Record<string, number>;
    }[];
    expect(plans).toHaveLength(13); // 11 segments + 2 listed audiences
    expect(plans.every((p) => p.to_remove === 0)).toBe(true);

    const first = sync(shop.dir);
    const expected = await expectedAudiences(shop.config);
    expect(fileAudiences(shop.out)).toEqual(expected);
    const rows = await expectedRows(shop.config);
    expect(total(first.results, 'added')).toBe([...rows.values()].reduce((a, m) => a + m.size, 0));
    expect(total(first.results, 'added')).toBe(plans.reduce((a, p) => a + p.to_add, 0));
    // Opted-out customers are counted and in no audience.
    expect(plans.reduce((a, p) => a + (p.skipped['opted out'] ?? 0), 0)).toBeGreaterThan(0);

    const logBefore = changeLog(shop.out).length;
    const second = sync(shop.dir);
    expect(total(second.results, 'added') + total(second.results, 'removed')).toBe(0);
    expect(total(second.results, 'unchanged')).toBe(total(first.results, 'added'));
    expect(changeLog(shop.out)).toHaveLength(logBefore);
  });

  it('sends exactly the difference when customers move, change email, vanish or opt out', async () => {
    const shop = await makeShop({ batchSize: 50 });
    sync(shop.dir);
    const before = await expectedRows(shop.config);

    // Half a year later: recency moves customers between segments.
    shop.write('2026-07-01');
    shop.editCustomers((cells, header, r) => {
      if (r >= 40) return;
      if (r % 2) cells[header.indexOf('email')] = `changed-${r}@example.org`;
      else cells[header.indexOf('opted_out')] = 'true';
    });
    const orders = path.join(shop.dir, 'shop', 'orders.csv');
    const orderRows = readFileSync(orders, 'utf8').split('\n');
    const gone = orderRows[1]!.split(',')[0]!;
    writeFileSync(orders, orderRows.filter((l, i) => i === 0 || !l.startsWith(`${gone},`)).join('\n'));

    // The difference, customer by customer: new or changed rows are added; rows of customers who left
    // or changed are removed, less identifiers that another member of the audience still uses.
    const after = await expectedRows(shop.config);
    const expected = await expectedAudiences(shop.config);
    let adds = 0;
    let removes = 0;
    for (const [name, want] of after) {
      const had = before.get(name) ?? new Map<string, string>();
      for (const [id, line] of want) if (had.get(id) !== line) adds++;
      for (const [id, line] of had) {
        if (want.get(id) === line) continue;
        const others = new Set([...want].filter(([other]) => other !== id).flatMap(([, l]) => l.split(' ')));
        if (line.split(' ').some((token) => !others.has(token))) removes++;
      }
    }
    expect(adds).toBeGreaterThan(20);
    expect(removes).toBeGreaterThan(20);
    const logBefore = changeLog(shop.out).length;
    const result = sync(shop.dir);
    expect(fileAudiences(shop.out)).toEqual(expected);
    expect(total(result.results, 'added')).toBe(adds);
    expect(total(result.results, 'removed')).toBe(removes);
    const sent = changeLog(shop.out).slice(logBefore);
    expect(sent.filter((e) => e.op === 'add').reduce((a, e) => a + e.members.length, 0)).toBe(adds);
    expect(sent.every((e) => e.members.length <= 50)).toBe(true);
    // Removals of an audience are sent before its additions.
    for (const name of expected.keys()) {
      const ops = sent.filter((e) => e.audience === name).map((e) => e.op);
      expect(
        ops.indexOf('remove') === -1 ||
          ops.lastIndexOf('remove') < ops.indexOf('add') ||
          ops.indexOf('add') === -1,
      ).toBe(true);
    }
  });

  it('a full resync replaces each audience with exactly its segment', async () => {
    const shop = await makeShop();
    sync(shop.dir);
    const result = sync(shop.dir, '--full');
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    expect(total(result.results, 'added')).toBe(total(result.results, 'members'));
    expect(changeLog(shop.out).some((e) => e.op === 'replace')).toBe(true);
  });

  it('sends nothing anywhere when the source has too many bad rows', async () => {
    const shop = await makeShop();
    sync(shop.dir);
    const logBefore = changeLog(shop.out).length;
    const orders = path.join(shop.dir, 'shop', 'orders.csv');
    const rows = readFileSync(orders, 'utf8').split('\n');
    writeFileSync(
      orders,
      rows.map((l, i) => (i > 0 && i % 20 === 0 ? l.replace(/,\d{4}-\d\d-\d\d,/, ',soon,') : l)).join('\n'),
    );
    const r = cli(['sync'], shop.dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/rows are bad/);
    expect(changeLog(shop.out)).toHaveLength(logBefore);
  });

  it('dry run writes to .audience-sync/dry-run and keeps the real state apart', async () => {
    const shop = await makeShop();
    const dry = sync(shop.dir, '--dry-run');
    expect(total(dry.results, 'added')).toBeGreaterThan(0);
    expect(fileAudiences(path.join(shop.dir, '.audience-sync', 'dry-run', 'local'))).toEqual(
      await expectedAudiences(shop.config),
    );
    const real = JSON.parse(cli(['plan', '--json'], shop.dir).stdout).plans as { to_add: number }[];
    expect(real.reduce((a, p) => a + p.to_add, 0)).toBe(total(dry.results, 'added'));
  });

  it('names an unknown destination, audience or bad destination setting', async () => {
    const shop = await makeShop();
    expect(cli(['sync', '--destination', 'nope'], shop.dir).stderr).toMatch(
      /no destination named 'nope'.*\n.*destinations are: local/,
    );
    expect(cli(['plan', '--audience', 'Nobody'], shop.dir).stderr).toMatch(/no audience named 'Nobody'/);
    shop.write('2026-01-01', '');
    const text = readFileSync(shop.config, 'utf8').replace('batch_size: 10000', 'batch_size: 0');
    writeFileSync(shop.config, text);
    const bad = cli(['validate'], shop.dir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/destinations\.local\.batch_size/);
  });
});

describe('audience-sync check', () => {
  it('checks each destination without side effects', async () => {
    const shop = await makeShop();
    const r = cli(['check', '--json'], shop.dir);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).checks).toEqual([
      { destination: 'local', name: 'folder', ok: true, detail: expect.stringContaining('is writable') },
    ]);
  });
});
