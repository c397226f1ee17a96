import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { changeLog, cli, expectedAudiences, fileAudiences, makeShop } from './harness.js';

/**
 * Case 2 of issue 14: the state in Redis is lost (flushed, evicted, another Redis) while the platform's
 * audiences still hold their members. The next run must replace each audience with its segment, never
 * merely add on top of what it holds.
 */
const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.disconnect());

function sync(cwd: string, args: string[] = []) {
  const r = cli(['sync', '--json', ...args], cwd);
  if (r.code !== 0 && r.code !== 3) throw new Error(`sync exited ${r.code}: ${r.stderr}`);
  return { results: JSON.parse(r.stdout).results as Record<string, unknown>[], stderr: r.stderr };
}

/** Opts out every fourth customer of the profiles file. */
function optOutSome(shop: Awaited<ReturnType<typeof makeShop>>) {
  shop.editCustomers((cells, header, r) => {
    if (r % 4 === 0) cells[header.indexOf('opted_out')] = 'true';
  });
}

/** Deletes the test prefix's keys that match `pattern` (a glob after the prefix). */
async function drop(prefix: string, pattern: string): Promise<number> {
  const keys = await redis.keys(`${prefix}:${pattern}`);
  if (keys.length > 0) await redis.del(...keys);
  return keys.length;
}

describe('lost state', () => {
  it('Redis flushed, then customers opt out: every audience is replaced with exactly its segment', async () => {
    // A quarter of the customers opt out: more than the removal brake lets go (that case is below).
    const shop = await makeShop({ sync: 'max_removal_share: 1' });
    sync(shop.dir);
    expect(await drop(shop.prefix, '*')).toBeGreaterThan(13);
    optOutSome(shop);
    const expected = await expectedAudiences(shop.config);
    const before = changeLog(shop.out).length;

    const { results, stderr } = sync(shop.dir);
    expect(fileAudiences(shop.out)).toEqual(expected);
    for (const r of results) {
      expect(r.replaced, String(r.audience)).toMatch(/our state has no record of it/);
      expect(r.error).toBeUndefined();
    }
    expect(stderr).toMatch(/replacing the audience with its segment/);
    expect(
      changeLog(shop.out)
        .slice(before)
        .every((e) => e.op === 'replace'),
    ).toBe(true);

    // The state is whole again: the next run sends nothing.
    const after = changeLog(shop.out).length;
    const again = sync(shop.dir);
    expect(again.results.every((r) => r.added === 0 && r.removed === 0 && r.replaced === undefined)).toBe(
      true,
    );
    expect(changeLog(shop.out)).toHaveLength(after);
  });

  it('one audience losing only some of its records (evicted) or only its meta is replaced; the others are not', async () => {
    // The opt-outs take more than the removal brake allows from some audiences: not what this is about.
    const shop = await makeShop({ sync: 'max_removal_share: 1' });
    sync(shop.dir);
    const states = await redis.hgetall(`${shop.prefix}:dest:local:audiences`);
    const base = Object.entries(states).find(([, name]) => name === 'RFM: Champions')![0];
    const other = Object.entries(states).find(([, name]) => name === 'RFM: Hibernating')![0];
    // One of its shards' buckets evicted (the state keeps an audience in 32 shards, `{tag.n}:b:<generation>`).
    const buckets = await redis.keys(`${base.slice(0, -1)}.*}:b:*`);
    expect(buckets.length).toBeGreaterThan(1);
    expect(await redis.del(buckets[0]!)).toBe(1);
    expect(await redis.del(`${other}:meta`)).toBe(1);
    optOutSome(shop);

    const { results } = sync(shop.dir);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    const replaced = results.filter((r) => r.replaced).map((r) => r.audience);
    expect(replaced.sort()).toEqual(['RFM: Champions', 'RFM: Hibernating']);
    expect(results.find((r) => r.audience === 'RFM: Champions')!.replaced).toMatch(/lost its records/);
  });

  it("Redis flushed and a partial export: the replace is held by the platform's own count, nothing is sent", async () => {
    const shop = await makeShop();
    sync(shop.dir);
    const synced = fileAudiences(shop.out);
    const sent = changeLog(shop.out).length;
    await drop(shop.prefix, '*'); // the source brake's baseline goes with the state

    // The profiles export stopped after 100 of its 400 rows.
    const customers = path.join(shop.dir, 'shop', 'customers.csv');
    const whole = readFileSync(customers, 'utf8');
    writeFileSync(customers, whole.split('\n').slice(0, 101).join('\n') + '\n');

    const r = cli(['sync', '--json'], shop.dir);
    expect(r.code, r.stderr).toBe(1);
    const results = JSON.parse(r.stdout).results as { audience: string; held?: string; added: number }[];
    // Each audience's identifiers on the destination, against what its segment's members have now.
    const now = await expectedAudiences(shop.config);
    for (const res of results) {
      const holds = synced.get(res.audience)!.size;
      const wants = now.get(res.audience)!.size;
      if (holds - wants >= 10 && (holds - wants) / holds > 0.2) {
        expect(res.held, res.audience).toMatch(
          new RegExp(
            `must be replaced .*the platform counts ${holds} identifiers where the segment has ${wants}`,
          ),
        );
        expect(res.added).toBe(0);
      }
    }
    expect(results.filter((x) => x.held).length).toBeGreaterThan(5);
    expect(
      changeLog(shop.out)
        .slice(sent)
        .map((e) => e.audience)
        .sort(),
    ).toEqual(
      results
        .filter((x) => !x.held)
        .map((x) => x.audience)
        .sort(),
    );
    for (const res of results.filter((x) => x.held))
      expect(fileAudiences(shop.out).get(res.audience), res.audience).toEqual(synced.get(res.audience));

    // The whole export back: every audience replaced with its segment, the held ones included.
    writeFileSync(customers, whole);
    sync(shop.dir);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
  });

  it('another setup wrote the folder since our run: its epoch is noticed and our audiences are replaced', async () => {
    const shop = await makeShop({ sync: 'max_removal_share: 1' });
    sync(shop.dir);
    // A second setup (its own Redis state, its own profiles export where a third opted out) syncs the
    // same folder.
    const customers = readFileSync(path.join(shop.dir, 'shop', 'customers.csv'), 'utf8').split('\n');
    const optedOut = customers[0]!.split(',').indexOf('opted_out');
    writeFileSync(
      path.join(shop.dir, 'shop', 'other-customers.csv'),
      customers
        .map((line, r) => {
          if (r === 0 || r % 3 !== 0 || !line) return line;
          const cells = line.split(',');
          cells[optedOut] = 'true';
          return cells.join(',');
        })
        .join('\n'),
    );
    const other = path.join(shop.dir, 'other.yaml');
    writeFileSync(
      other,
      readFileSync(shop.config, 'utf8')
        .replace(`redis_prefix: ${shop.prefix}`, `redis_prefix: ${shop.prefix}-other`)
        .replace('path: shop/customers.csv', 'path: shop/other-customers.csv'),
    );
    const theirs = sync(shop.dir, ['--config', other]);
    expect(theirs.results.every((r) => String(r.replaced).includes('our state has no record of it'))).toBe(
      true,
    );
    const ours = await expectedAudiences(shop.config);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(other));
    expect(fileAudiences(shop.out)).not.toEqual(ours);
    const marks = JSON.parse(readFileSync(path.join(shop.out, 'epochs.json'), 'utf8')) as Record<
      string,
      string
    >;
    expect(Object.keys(marks)).toHaveLength(ours.size);

    // Our state still remembers what we sent; the folder says another state filled it since.
    const { results } = sync(shop.dir);
    for (const r of results)
      expect(r.replaced, String(r.audience)).toMatch(/carries the epoch of another state/);
    expect(fileAudiences(shop.out)).toEqual(ours);
    await drop(`${shop.prefix}-other`, '*');
  });
});
