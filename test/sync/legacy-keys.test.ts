import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { writeKey, writeLegacyKey } from '../../src/state/keys.js';
import { sha256 } from '../../src/identity/hash.js';
import { decodeRecords, encodeRecords, KEY_BYTES, Status } from '../../src/state/records.js';
import { expectedAudiences, fileAudiences, makeShop } from './harness.js';

/**
 * A state left by a version that keyed members by SHA-256 of their ids (record format 2): the next sync
 * reads it through a translation, sends only the real difference, and leaves it in format 3.
 */
const BIN = path.resolve('dist/src/cli/bin.js');
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
  if (r.status !== 0 && r.status !== 3) throw new Error(`${command} exited ${r.status}: ${r.stderr}`);
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
  it('is translated, synced for its real difference only, and rewritten in the current format', async () => {
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
    const audiencesOf = new Map<string, number>();
    for (const buckets of before.values())
      for (const r of buckets.flatMap((b) => decodeRecords(b))) {
        const id = current.get(r.key.toString('hex'))!;
        audiencesOf.set(id, (audiencesOf.get(id) ?? 0) + 1);
      }
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

    // Meanwhile one customer opted out (a known id: translated, then removed everywhere), and one audience
    // holds a customer the source no longer has (its old key cannot be translated: removed as it is).
    const gone = ids.find((id) => audiencesOf.has(id))!;
    const memberships = audiencesOf.get(gone)!;
    shop.editCustomers((cells, header) => {
      if (cells[0] === gone) cells[header.indexOf('opted_out')] = 'true';
    });
    const [someAudience, buckets] = [...before].find(([, b]) => b.length > 0)!;
    const ghost = {
      key: Buffer.alloc(KEY_BYTES),
      status: Status.confirmed,
      upload: 0,
      slots: [sha256('ghost@example.com')],
    };
    writeLegacyKey(Buffer.from('ghost', 'utf8'), ghost.key, 0);
    const withGhost = [...buckets.flatMap((b) => decodeRecords(b)), ghost].sort((a, b) =>
      Buffer.compare(a.key, b.key),
    );
    await redis.hset(`${someAudience}:b`, '0', encodeRecords(withGhost));

    // A dry run reads the old keys through the translation, and writes nothing.
    const formats = async () =>
      Promise.all([...before.keys()].map((base) => redis.hget(`${base}:meta`, 'format')));
    expect(run(shop.dir, 'plan')).toEqual({
      added: 0,
      removed: memberships + 1,
      unchanged: first.added - memberships,
    });
    expect(new Set(await formats())).toEqual(new Set(['2']));

    const second = sync(shop.dir);
    expect(second).toEqual({ added: 0, removed: memberships + 1, unchanged: first.added - memberships });
    expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
    // Every state is in format 3, under current keys only.
    for (const [base, buckets] of await states(shop.prefix)) {
      expect(await redis.hget(`${base}:meta`, 'format')).toBe('3');
      for (const r of buckets.flatMap((b) => decodeRecords(b))) {
        expect(current.has(r.key.toString('hex'))).toBe(true);
        expect(legacy.has(r.key.toString('hex'))).toBe(false);
      }
    }
    expect(sync(shop.dir)).toEqual({ added: 0, removed: 0, unchanged: first.added - memberships });
  });
});
