import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createHash } from 'node:crypto';
import { writeKey } from '../../src/record/keys.js';
import { decodeRecords, encodeRecords, KEY_BYTES } from '../../src/record/records.js';
import { expectedAudiences, fileAudiences, makeShop } from './harness.js';

/**
 * A state left by a development build before 0.1.0, which keyed members by SHA-256 of their ids (record
 * format 2): this version does not read it. A dry run says how to fix it; the next sync replaces each
 * audience with its segment and leaves the state in format 3.
 */
const BIN = path.resolve('dist/app/cli/bin.js');
const redisUrl = inject('redisUrl');
const redis = new Redis(redisUrl);
afterAll(() => redis.disconnect());

/** `sync` (or `plan`, a dry run) through the CLI: its totals. */
function run(cwd: string, command: 'sync' | 'plan' = 'sync') {
  const r = spawnSync(process.execPath, [BIN, command, '--json'], {
    cwd,
    env: { ...process.env, CI: 'true', REDIS_URL: redisUrl },
    encoding: 'utf8',
  });
  if (r.status !== 0 && r.status !== 3)
    throw new Error(`${command} exited ${r.status}: ${r.stderr}${r.stdout}`);
  const out = JSON.parse(r.stdout) as Record<string, Record<string, number>[]>;
  const total = (rows: Record<string, number>[], field: string) =>
    rows.reduce((a, x) => a + Number(x[field] ?? 0), 0);
  if (command === 'plan') {
    const plans = out.plans!;
    return {
      added: total(plans, 'to_add'),
      removed: total(plans, 'to_remove'),
      unchanged: total(plans, 'unchanged'),
    };
  }
  const results = out.results!;
  return {
    added: total(results, 'added'),
    removed: total(results, 'removed'),
    unchanged: total(results, 'unchanged'),
  };
}
const sync = (cwd: string) => run(cwd);

/** The key of formats 1 and 2: the first 8 bytes of SHA-256 of the id. */
function writeLegacyKey(id: Uint8Array, out: Buffer, at: number): void {
  createHash('sha256').update(id).digest().copy(out, at, 0, KEY_BYTES);
}

/** Key (hex) → the customer id, for both kinds of key. */
function keysOf(ids: readonly string[], write: typeof writeKey): Map<string, string> {
  const out = new Map<string, string>();
  const key = Buffer.alloc(KEY_BYTES);
  for (const id of ids) {
    write(Buffer.from(id, 'utf8'), key, 0);
    out.set(key.toString('hex'), id);
  }
  return out;
}

/** Every audience's stored records (after a complete sync: buckets only, no journal), by meta key. */
async function states(prefix: string): Promise<Map<string, Buffer[]>> {
  const out = new Map<string, Buffer[]>();
  for (const meta of await redis.keys(`${prefix}:*:meta`)) {
    const base = meta.slice(0, -':meta'.length);
    expect(await redis.llen(`${base}:j`)).toBe(0);
    out.set(base, Object.values(await redis.hgetallBuffer(`${base}:b`)));
  }
  return out;
}

describe('a state keyed by an older version', () => {
  it('is not read: a dry run names the fix, and the next sync replaces each audience with its segment, in the current format', async () => {
    const shop = await makeShop({ batchSize: 50, sync: 'max_removal_share: 1' });
    const first = sync(shop.dir);
    expect(first.added).toBeGreaterThan(0);
    const customers = path.join(shop.dir, 'shop', 'customers.csv');
    const ids = readFileSync(customers, 'utf8')
      .split('\n')
      .slice(1)
      .filter(Boolean)
      .map((line) => line.split(',')[0]!);
    const current = keysOf(ids, writeKey);
    const legacy = keysOf(ids, writeLegacyKey);
    expect(current.size).toBe(ids.length);

    // What the older version left: the same records under SHA-256 keys, in one bucket, marked format 2.
    const before = await states(shop.prefix);
    for (const [base, buckets] of before) {
      const records = buckets.flatMap((b) => decodeRecords(b));
      for (const r of records) {
        const id = current.get(r.key.toString('hex'));
        expect(id).toBeDefined();
        writeLegacyKey(Buffer.from(id!, 'utf8'), r.key, 0);
      }
      records.sort((a, b) => Buffer.compare(a.key, b.key));
      await redis.del(`${base}:b`);
      if (records.length > 0) await redis.hset(`${base}:b`, '0', encodeRecords(records));
      await redis.hset(`${base}:meta`, 'bits', 0, 'format', 2);
    }
    // Meanwhile one member opted out: the replace leaves them out.
    const gone = ids[0]!;
    shop.editCustomers((cells, header) => {
      if (cells[0] === gone) cells[header.indexOf('opted_out')] = 'true';
    });

    // A dry run writes nothing and says what to do.
    const formats = async () =>
      Promise.all([...before.keys()].map((base) => redis.hget(`${base}:meta`, 'format')));
    expect(() => run(shop.dir, 'plan')).toThrow(
      /record format 2, which only development builds before 0\.1\.0 wrote and this version does not read; run a sync of local, which replaces the audience with its segment/,
    );
    expect(new Set(await formats())).toEqual(new Set(['2']));

    sync(shop.dir);
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    // Every state is in format 3, under current keys only.
    for (const [base, buckets] of await states(shop.prefix)) {
      expect(await redis.hget(`${base}:meta`, 'format')).toBe('3');
      for (const r of buckets.flatMap((b) => decodeRecords(b))) {
        expect(current.has(r.key.toString('hex'))).toBe(true);
        expect(legacy.has(r.key.toString('hex'))).toBe(false);
      }
    }
    const third = sync(shop.dir);
    expect(third.added + third.removed).toBe(0);
  });
});
