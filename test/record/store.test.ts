import { randomBytes } from 'node:crypto';
import { createServer, connect, type AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { startRedis } from '../../app/local/services.js';
import { decodeRecords, encodeRecords, Status, type StateRecord } from '../../src/record/records.js';
import { StateStore } from '../../src/record/store.js';

const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.disconnect());
const store = (name = `t${randomBytes(4).toString('hex')}`) => new StateStore(redis, name);

const rec = (n: number, status: StateRecord['status'] = Status.confirmed, slots = 2): StateRecord => {
  const key = Buffer.alloc(8);
  key.writeUInt32BE((n * 2654435761) >>> 0, 0);
  key.writeUInt32BE(n, 4);
  return {
    key,
    status,
    upload: status === Status.addPending ? 7 : 0,
    slots: Array.from({ length: slots }, (_, i) => (i === 0 || n % 2 ? Buffer.alloc(32, n + i) : undefined)),
  };
};

async function all(state: ReturnType<StateStore['audience']>): Promise<StateRecord[]> {
  const out: StateRecord[] = [];
  for await (const records of state.scan()) out.push(...records);
  return out.sort((a, b) => Buffer.compare(a.key, b.key));
}

/** A record's slots as hex, without the empty ones after the last kept (the stored form has none). */
const slotsOf = (r: StateRecord) => {
  const hex = r.slots.map((x) => x?.toString('hex'));
  while (hex.length > 0 && hex.at(-1) === undefined) hex.pop();
  return hex;
};

/** The Redis key prefix of an audience's state (private to the store; the tests read its keys). */
const baseOf = (state: ReturnType<StateStore['audience']>) => (state as unknown as { base: string }).base;

/**
 * A state's keys of one part (`b` buckets, `j` journal), found by pattern: the store spreads a state over
 * keys with hash tags of its own (`{<tag>.<n>}`), and 0.1.0 kept it in `{<tag>}:b` and `{<tag>}:j`.
 */
const partKeys = (state: ReturnType<StateStore['audience']>, part: 'b' | 'j') =>
  redis.keys(`${baseOf(state).slice(0, -1)}*:${part}*`);

/** Entries in a state's journal, over all its keys. */
async function journalLength(state: ReturnType<StateStore['audience']>): Promise<number> {
  let n = 0;
  for (const key of await partKeys(state, 'j')) n += await redis.llen(key);
  return n;
}

/** The stored bucket bits of a state. */
const bitsOf = async (state: ReturnType<StateStore['audience']>) =>
  Number(await redis.hget(`${baseOf(state)}:meta`, 'bits'));

/** A state of one member (checkpointed: one bucket), then `n` more appended `batch` at a time and checkpointed. */
async function foldIntoOne(name: string, n: number, batch: number, slots?: number) {
  const state = store().audience('dest', name);
  await state.append([rec(0, Status.confirmed, slots)]);
  await state.checkpoint();
  const many = Array.from({ length: n }, (_, i) => rec(i + 1, Status.confirmed, slots));
  for (let i = 0; i < many.length; i += batch) await state.append(many.slice(i, i + batch));
  await state.checkpoint();
  return state;
}

describe('state records', () => {
  it('round-trip through the binary encoding: 11 bytes of overhead per settled member, 15 while pending', () => {
    const records = [rec(1), rec(2), rec(3, Status.addPending, 5), rec(4, Status.removePending)];
    records[3]!.upload = 9;
    const buf = encodeRecords(records);
    expect(buf.length).toBe(2 * 11 + 2 * 15 + (2 + 1 + 5 + 1) * 32);
    // Trailing empty slots are not stored.
    const trimmed = records.map((r) => ({
      ...r,
      slots: r.slots.slice(0, r.slots.findLastIndex(Boolean) + 1),
    }));
    expect(decodeRecords(buf)).toEqual(trimmed);
  });

  it("encode slots read in place from a row (an identity table's) as the format lays them out", () => {
    // A row of four slots at byte 5 of a buffer: slot s at 5 + 32 s.
    const bytes = Buffer.alloc(5 + 4 * 32 + 3);
    for (let s = 0; s < 4; s++) bytes.fill(0xa0 + s, 5 + s * 32, 5 + (s + 1) * 32);
    const key = Buffer.from('0102030405060708', 'hex');
    const slot = (s: number) => Buffer.alloc(32, 0xa0 + s);
    const buf = encodeRecords([
      { key, status: Status.confirmed, upload: 0, row: { bytes, at: 5, mask: 0b1101 } },
      { key, status: Status.addPending, upload: 0x01020304, row: { bytes, at: 5, mask: 0b0110 } },
      { key, status: Status.rejected, upload: 0, row: { bytes, at: 5, mask: 0 } },
    ]);
    // By hand: key, status, mask (big-endian), the upload only while pending, then the present slots in order.
    const expected = Buffer.concat([
      key,
      Buffer.from([0, 0, 0b1101]),
      slot(0),
      slot(2),
      slot(3),
      key,
      Buffer.from([1, 0, 0b0110, 1, 2, 3, 4]),
      slot(1),
      slot(2),
      key,
      Buffer.from([3, 0, 0]),
    ]);
    expect(buf.toString('hex')).toBe(expected.toString('hex'));
  });
});

/** Format 1 (the first, unmarked): key, status, upload (4 bytes, always), slot mask, slots. */
function formatOne(records: readonly StateRecord[]): Buffer {
  return Buffer.concat(
    records.flatMap((r) => {
      const head = Buffer.alloc(15);
      r.key.copy(head, 0);
      head[8] = r.status;
      head.writeUInt32BE(r.upload, 9);
      head.writeUInt16BE(
        r.slots.reduce((m, s, i) => (s ? m | (1 << i) : m), 0),
        13,
      );
      return [head, ...r.slots.filter((s): s is Buffer => s !== undefined)];
    }),
  );
}

describe('audience state in Redis', () => {
  it('folds the journal into buckets and keeps the latest record per member', async () => {
    const state = store().audience('dest', 'RFM: Champions');
    await state.append([rec(1), rec(2), rec(3)]);
    await state.append([{ ...rec(2), status: Status.deleted, slots: [] }, rec(4, Status.addPending)], {
      id: 7,
      token: 'req-1',
      op: 'add',
      count: 1,
      at: 'now',
    });
    await state.checkpoint();
    expect((await all(state)).map((r) => r.key.readUInt32BE(4))).toEqual(
      [1, 3, 4].sort((a, b) => Buffer.compare(rec(a).key, rec(b).key)),
    );
    expect(await journalLength(state)).toBe(0);
    expect((await state.uploads()).get(7)).toMatchObject({ token: 'req-1', op: 'add' });
  });

  it('finishes an interrupted checkpoint: replaying the journal twice gives the same state', async () => {
    const state = store().audience('dest', 'a');
    await state.append([rec(1), rec(2)]);
    await state.checkpoint();
    await state.append([rec(3), { ...rec(1), status: Status.deleted, slots: [] }]);
    // Simulate a crash after the buckets were written but before the journal was trimmed.
    const journal = new Map<string, Buffer[]>();
    for (const key of await partKeys(state, 'j')) journal.set(key, await redis.lrangeBuffer(key, 0, -1));
    expect(journal.size).toBeGreaterThan(0);
    await state.checkpoint();
    for (const [key, entries] of journal) await redis.rpush(key, ...entries);
    await state.checkpoint();
    expect((await all(state)).map((r) => r.key.readUInt32BE(4)).sort()).toEqual([2, 3]);
  });

  it('settles records waiting on uploads through a transform (done or failed); settled ones stay as they are', async () => {
    const state = store().audience('dest', 'a');
    const removing = { ...rec(4), status: Status.removePending, upload: 8 };
    const gone = { ...rec(5), status: Status.removePending, upload: 8 };
    await state.append([rec(1, Status.addPending), rec(2, Status.addPending), rec(3), removing, gone]);
    await state.checkpoint();
    const seen: number[] = [];
    await state.checkpoint((r) => {
      const n = r.key.readUInt32BE(4);
      seen.push(n);
      return n === 2 || n === 5 ? undefined : { ...r, status: Status.confirmed, upload: 0 };
    });
    expect(seen.sort()).toEqual([1, 2, 4, 5]);
    const records = await all(state);
    expect(records.map((r) => [r.key.readUInt32BE(4), r.status, r.upload]).sort()).toEqual([
      [1, Status.confirmed, 0],
      [3, Status.confirmed, 0],
      [4, Status.confirmed, 0],
    ]);
  });

  it('grows its bucket count with the audience and keeps every member', async () => {
    const state = await foldIntoOne('big', 20_000, 5000);
    expect(await bitsOf(state)).toBeGreaterThanOrEqual(8);
    expect(await state.size()).toBe(20_001);
  });

  it('reads in key order across buckets, a journal laid over them (what a plan merges with)', async () => {
    const state = store().audience('dest', 'ordered');
    const many = Array.from({ length: 3000 }, (_, i) => rec(i + 1));
    await state.append(many);
    await state.checkpoint();
    // A crashed run's journal: some deleted, some changed, some new, in no order.
    const journal = [
      { ...rec(7), status: Status.deleted, slots: [] },
      rec(5000),
      { ...rec(12), status: Status.addPending },
      rec(4000),
      { ...rec(2999), status: Status.deleted, slots: [] },
    ];
    await state.append(journal);
    // The expected state, by hand: a map by key, then sorted by the keys' bytes.
    const expected = new Map(many.map((r) => [r.key.toString('hex'), r]));
    for (const r of journal)
      if (r.status === Status.deleted) expected.delete(r.key.toString('hex'));
      else expected.set(r.key.toString('hex'), r);
    const keys = [...expected.keys()].sort();
    const read: string[] = [];
    const statuses = new Map<string, number>();
    for await (const records of state.scan())
      for (const r of records) {
        read.push(r.key.toString('hex'));
        statuses.set(r.key.toString('hex'), r.status);
      }
    expect(await bitsOf(state)).toBeGreaterThan(2);
    expect(read).toEqual(keys);
    expect(statuses.get(rec(12).key.toString('hex'))).toBe(Status.addPending);
  });

  it('folds and reads, over many random journals and checkpoints, what a map of each member’s last record holds', async () => {
    // A deterministic generator (mulberry32), so that a failure can be replayed.
    let seed = 99;
    const next = () => {
      seed = (seed + 0x6d2b79f5) >>> 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
    const state = store().audience('dest', 'random');
    // The oracle: each member's last record, by key; deleted ones leave it.
    const model = new Map<string, StateRecord>();
    const statuses = [
      Status.confirmed,
      Status.addPending,
      Status.removePending,
      Status.rejected,
      Status.deleted,
    ];
    for (let step = 0; step < 40; step++) {
      // A batch of 1 to 3,000 records over 5,000 members: repeats within a batch, deletions, every status.
      const batch = Array.from({ length: 1 + Math.floor(next() * 3000) }, () => {
        const status = statuses[Math.floor(next() * statuses.length)]!;
        const r = rec(
          Math.floor(next() * 5000),
          status,
          status === Status.deleted ? 0 : 1 + Math.floor(next() * 3),
        );
        return {
          ...r,
          upload: status === Status.addPending || status === Status.removePending ? step + 1 : 0,
        };
      });
      await state.append(batch);
      for (const r of batch)
        if (r.status === Status.deleted) model.delete(r.key.toString('hex'));
        else model.set(r.key.toString('hex'), r);
      const roll = next();
      if (roll < 0.3) await state.checkpoint();
      else if (roll < 0.4) {
        // Settles what waits on an upload: even uploads are done, odd ones failed (the member goes).
        await state.checkpoint((r) =>
          r.upload % 2 ? undefined : { ...r, status: Status.confirmed, upload: 0 },
        );
        for (const [key, r] of model)
          if (r.status === Status.addPending || r.status === Status.removePending)
            if (r.upload % 2) model.delete(key);
            else model.set(key, { ...r, status: Status.confirmed, upload: 0 });
      }
      // Read with whatever journal is left laid over the buckets: the model's records, in key order
      // (slots as stored: none after the last one kept).
      const read: StateRecord[] = [];
      for await (const records of state.scan()) read.push(...records);
      const expected = [...model.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, r]) => r);
      expect(read.map((r) => [r.key.toString('hex'), r.status, r.upload, slotsOf(r)])).toEqual(
        expected.map((r) => [r.key.toString('hex'), r.status, r.upload, slotsOf(r)]),
      );
      if (roll < 0.4) {
        const counts = await state.counts();
        const by = (status: number) => expected.filter((r) => r.status === status).length;
        expect(counts).toEqual({
          confirmed: by(Status.confirmed),
          addPending: by(Status.addPending),
          removePending: by(Status.removePending),
          rejected: by(Status.rejected),
        });
      }
    }
  });

  it('reshards a bucket larger than a call takes arguments (300,000 members added to a state of one)', async () => {
    // A state of one member settles on one bucket; then 300,000 more are folded into it.
    const state = await foldIntoOne('huge', 300_000, 50_000, 1);
    expect(await bitsOf(state)).toBeGreaterThanOrEqual(12);
    expect(await state.size()).toBe(300_001);
  });

  it('writes a first sync in its own number of buckets, even after an empty checkpoint (no reshard)', async () => {
    // A Redis of its own: MONITOR on the shared one also streams every other test file's commands, and
    // ioredis has failed with "Command queue state error" on one that came as the monitor started.
    const own = await startRedis({ volatile: true });
    const redis = new Redis(own.url);
    onTestFinished(async () => {
      redis.disconnect();
      await own.stop();
    });
    const state = new StateStore(redis, 'first').audience('dest', 'first');
    const base = baseOf(state);
    // Every command Redis runs on this state's keys, as Redis saw it.
    const monitor = await redis.monitor();
    const seen: string[] = [];
    // Buckets written in the first generation's hashes: an HSET names a key, then fields and values.
    let firstGenBuckets = 0;
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (!args.some((a) => a.startsWith(base.slice(0, -1)))) return;
      seen.push(args.join(' ').toLowerCase());
      if (args[0]!.toLowerCase() === 'hset' && /:b:1$/.test(args[1]!))
        firstGenBuckets += (args.length - 2) / 2;
    });
    // A run checkpoints the empty state before it pushes (settling uploads), then the first sync's batches.
    await state.checkpoint();
    const many = Array.from({ length: 20_000 }, (_, i) => rec(i + 1, Status.confirmed, 1));
    for (let i = 0; i < many.length; i += 5_000) await state.append(many.slice(i, i + 5_000));
    await state.checkpoint();
    await redis.ping(); // Redis answers in order: every command above has been seen once this one has.
    const bits = await redis.hget(`${base}:meta`, 'bits');
    let buckets = 0;
    for (const key of await redis.keys(`${base.slice(0, -1)}*:b*`)) buckets += await redis.hlen(key);
    monitor.disconnect();
    // 20,000 members at about 64 a bucket: 2^9 buckets, written once; a rewrite would write them all again,
    // in a second generation (keys ending in `:2`).
    expect(Number(bits)).toBe(9);
    expect(buckets).toBeGreaterThan(400);
    expect(firstGenBuckets).toBeGreaterThan(400);
    expect(seen.filter((c) => /:[bjc]:2( |$)/.test(c))).toEqual([]);
    expect(await state.size()).toBe(20_000);
  });

  it('folds what another writer appended too: its own copy of the journal serves only while Redis holds no more', async () => {
    const s = store();
    const mine = s.audience('dest', 'copy');
    await mine.checkpoint(); // the journal seen empty: from here on, this object keeps a copy of it
    await mine.append([rec(1), rec(2)]);
    // Another object (a second process, a broken lease) writes to the same journal between two appends
    // of this one, and rewrites a member: folding the copy would fold the wrong entries and lose it.
    await s.audience('dest', 'copy').append([rec(4), { ...rec(2), status: Status.rejected }]);
    await mine.append([rec(3)]);
    await mine.checkpoint();
    expect(await journalLength(mine)).toBe(0);
    const expected = [rec(1), { ...rec(2), status: Status.rejected }, rec(3), rec(4)].sort((a, b) =>
      Buffer.compare(a.key, b.key),
    );
    const got = await all(mine);
    expect(got.map((r) => [r.key.toString('hex'), r.status, slotsOf(r)])).toEqual(
      expected.map((r) => [r.key.toString('hex'), r.status, slotsOf(r)]),
    );
    // Seen empty again after that checkpoint: its copy serves the next, which must hold exactly the same.
    await mine.append([rec(5), { ...rec(1), status: Status.deleted, slots: [] }]);
    await mine.checkpoint();
    expect((await all(mine)).map((r) => r.key.toString('hex'))).toEqual(
      [rec(2), rec(3), rec(4), rec(5)].map((r) => r.key.toString('hex')).sort(),
    );
    expect(await journalLength(mine)).toBe(0);
    expect(await mine.counts()).toMatchObject({ confirmed: 3, rejected: 1 });
  });

  it('remembers the remote audience id and lists audiences per destination', async () => {
    const s = store();
    const state = s.audience('local', 'RFM: Lost');
    expect(await state.remoteId()).toBeUndefined();
    await state.setRemoteId('rfm-lost');
    expect(await s.audience('local', 'RFM: Lost').remoteId()).toBe('rfm-lost');
    expect(await s.audiencesOf('local')).toEqual(['RFM: Lost']);
  });
});

describe('reading state left by a crashed run', () => {
  it('lays the journal over the buckets without writing', async () => {
    const s = store();
    const state = s.audience('dest', 'a');
    await state.append([rec(1), rec(2)]);
    await state.checkpoint();
    await state.append([
      rec(3),
      { ...rec(1), status: Status.deleted, slots: [] },
      { ...rec(2), status: Status.addPending },
    ]);
    const journal = await journalLength(state);
    expect(journal).toBeGreaterThan(0);
    const seen = (await all(state)).map((r) => [r.key.readUInt32BE(4), r.status]).sort();
    expect(seen).toEqual([
      [2, Status.addPending],
      [3, Status.confirmed],
    ]);
    // Nothing was written: the journal is still there for the next sync's checkpoint.
    expect(await journalLength(state)).toBe(journal);
  });

  it('refuses a state written in format 1 (before 0.1.0), naming the fix, and writes nothing to it', async () => {
    const state = store().audience('dest', 'RFM: Loyal');
    const base = baseOf(state);
    await redis.hset(`${base}:meta`, 'bits', 0, 'members', 2, 'remote_id', 'r1');
    await redis.hset(`${base}:b`, '0', formatOne([rec(1), rec(2, Status.addPending)]));
    expect(await state.outdated()).toBe(
      'our state of this audience is in record format 1, which only development builds before 0.1.0 wrote and this version does not read',
    );
    const fix =
      "the state of 'RFM: Loyal' on dest: our state of this audience is in record format 1, which only development builds before 0.1.0 wrote and this version does not read; run a sync of dest, which replaces the audience with its segment";
    await expect(all(state)).rejects.toThrow(fix);
    await expect(state.append([rec(3)])).rejects.toThrow(fix);
    await expect(state.checkpoint()).rejects.toThrow(fix);
    expect(await redis.hget(`${base}:meta`, 'format')).toBeNull();
    // A sync replaces it: the replace starts from nothing, in the current format.
    await state.startReplace('outdated');
    expect(await state.outdated()).toBeUndefined();
    await state.append([rec(3)]);
    await state.checkpoint();
    expect((await all(state)).map((r) => r.key)).toEqual([rec(3).key]);
  });
});

describe('a state spread over shards', () => {
  it('keeps its records in 32 shards and its buckets inside them, and reads them back in key order', async () => {
    const state = store().audience('dest', 'spread');
    const many = Array.from({ length: 5000 }, (_, i) => rec(i + 1));
    await state.append(many);
    await state.checkpoint();
    const buckets = await partKeys(state, 'b');
    expect(buckets).toHaveLength(32);
    // Each shard holds only keys whose first five bits are its number; its hash tag differs from the others'.
    const shardOf = (r: StateRecord) => r.key.readUInt32BE(0) >>> 27;
    const expected = new Map<string, number>();
    for (const r of many) expected.set(r.key.toString('hex'), shardOf(r));
    const tags = new Set<string>();
    for (const key of buckets) {
      tags.add(key.slice(key.indexOf('{'), key.indexOf('}') + 1));
      const shards = new Set<number>();
      for (const packed of Object.values(await redis.hgetallBuffer(key)))
        for (const r of decodeRecords(packed)) shards.add(expected.get(r.key.toString('hex'))!);
      expect(shards.size).toBe(1);
    }
    expect(tags.size).toBe(32);
    expect((await all(state)).map((r) => r.key.toString('hex'))).toEqual([...expected.keys()].sort());
    expect(await state.counts()).toEqual({ confirmed: 5000, addPending: 0, removePending: 0, rejected: 0 });
  });

  it('reads a state in the layout 0.1.0 wrote, then moves it into shards at its next checkpoint', async () => {
    const state = store().audience('dest', 'RFM: Loyal');
    const base = baseOf(state);
    // 0.1.0's layout, by hand: two buckets (the keys' first bit) in `{tag}:b`, a journal in `{tag}:j`, counts in the meta.
    const stored = [rec(1), rec(2), rec(3, Status.addPending), rec(4), rec(5)];
    const byBucket = [0, 1].map((b) =>
      stored.filter((r) => r.key.readUInt32BE(0) >>> 31 === b).sort((x, y) => Buffer.compare(x.key, y.key)),
    );
    expect(byBucket.every((list) => list.length > 0)).toBe(true);
    await redis.hset(`${base}:b`, '0', encodeRecords(byBucket[0]!), '1', encodeRecords(byBucket[1]!));
    await redis.rpush(`${base}:j`, encodeRecords([{ ...rec(2), status: Status.deleted, slots: [] }, rec(6)]));
    await redis.hset(
      `${base}:meta`,
      'format',
      3,
      'bits',
      1,
      'members',
      5,
      'n:0',
      4,
      'n:1',
      1,
      'n:2',
      0,
      'n:3',
      0,
    );
    const expected = [rec(1), rec(3, Status.addPending), rec(4), rec(5), rec(6)]
      .map((r) => [r.key.toString('hex'), r.status])
      .sort();
    const read = async () => (await all(state)).map((r) => [r.key.toString('hex'), r.status]).sort();
    expect(await read()).toEqual(expected);
    expect(await state.lost()).toBe(false);
    expect(await state.counts()).toEqual({ confirmed: 4, addPending: 1, removePending: 0, rejected: 0 });
    await state.checkpoint();
    expect(await redis.exists(`${base}:b`, `${base}:j`)).toBe(0);
    expect((await partKeys(state, 'b')).length).toBeGreaterThan(1);
    expect(await read()).toEqual(expected);
    expect(await state.counts()).toEqual({ confirmed: 4, addPending: 1, removePending: 0, rejected: 0 });
    expect(await state.lost()).toBe(false);
  });

  it('counts a state 0.1.0 wrote before the counts existed at its next checkpoint; a state never written has none', async () => {
    const s = store();
    expect(await s.audience('dest', 'never').counts()).toBeUndefined();
    const state = s.audience('dest', 'uncounted');
    const base = baseOf(state);
    const stored = [rec(1), rec(2, Status.rejected), rec(3)].sort((x, y) => Buffer.compare(x.key, y.key));
    await redis.hset(`${base}:b`, '0', encodeRecords(stored));
    await redis.hset(`${base}:meta`, 'format', 3, 'bits', 0, 'members', 3);
    expect(await state.counts()).toBeUndefined();
    await state.checkpoint();
    expect(await state.counts()).toEqual({ confirmed: 2, addPending: 0, removePending: 0, rejected: 1 });
    expect(await state.size()).toBe(3);
  });

  it('deletes a replaced generation, and one a crashed rewrite left behind', async () => {
    const state = store().audience('dest', 'replaced');
    await state.append(Array.from({ length: 300 }, (_, i) => rec(i + 1)));
    await state.checkpoint();
    const meta = `${baseOf(state)}:meta`;
    expect(await redis.hget(meta, 'gen')).toBe('1');
    // A rewrite that crashed after it wrote a bucket of generation 2, before it switched to it.
    const orphan = (await partKeys(state, 'b'))[0]!.replace(/:1$/, ':2');
    expect(await redis.hincrby(meta, 'gen_seq', 1)).toBe(2);
    await redis.hset(orphan, '0', encodeRecords([rec(9999)]));
    await state.startReplace('test');
    expect(await redis.hget(meta, 'gen')).toBe('3');
    expect([...(await partKeys(state, 'b')), ...(await partKeys(state, 'j'))]).toEqual([]);
    expect(await state.size()).toBe(0);
    await state.append([rec(7)]);
    await state.checkpoint();
    expect((await all(state)).map((r) => r.key)).toEqual([rec(7).key]);
    expect((await partKeys(state, 'b')).every((key) => key.endsWith(':3'))).toBe(true);
  });

  it('keeps its journal when Redis refuses a bucket (out of memory), and folds it once Redis takes writes', async () => {
    const own = await startRedis({ volatile: true });
    const redis = new Redis(own.url);
    onTestFinished(async () => {
      redis.disconnect();
      await own.stop();
    });
    const state = new StateStore(redis, 'oom').audience('dest', 'oom');
    await state.append(Array.from({ length: 2000 }, (_, i) => rec(i + 1)));
    await state.checkpoint();
    const more = Array.from({ length: 2000 }, (_, i) => rec(i + 5000));
    await state.append(more);
    const used = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
    await redis.config('SET', 'maxmemory-policy', 'noeviction');
    await redis.config('SET', 'maxmemory', String(used - 1024));
    await expect(state.checkpoint()).rejects.toThrow(/OOM/);
    await redis.config('SET', 'maxmemory', '0');
    expect(await state.size()).toBe(4000);
    await state.checkpoint();
    expect(await state.size()).toBe(4000);
    expect(await state.counts()).toMatchObject({ confirmed: 4000 });
  });
});

describe('a checkpoint stopped part way (a crash)', () => {
  /**
   * A Redis of the test's own, and a second login to it with these ACL rules: a run under that login stops
   * where its first refused command is, as a kill there would leave the state.
   */
  async function withLogin(...rules: string[]) {
    const own = await startRedis({ volatile: true });
    const redis = new Redis(own.url);
    await redis.call('ACL', 'SETUSER', 'stops', 'on', 'nopass', '&*', '+@all', ...rules);
    const stops = new Redis(own.url, { username: 'stops', password: 'any' });
    onTestFinished(async () => {
      redis.disconnect();
      stops.disconnect();
      await own.stop();
    });
    const state = (client: Redis) => new StateStore(client, 'crash').audience('dest', 'a');
    return { redis, stops, state };
  }

  it('between writing a shard’s buckets and counting them: the next checkpoint counts it right, and it is not lost', async () => {
    // A run whose fold stops right after its bucket writes: its Redis login may not trim the journal, so
    // the transaction that trims it and changes the counts is refused, as a kill at that moment leaves it.
    const { redis, stops, state } = await withLogin('~*', '-ltrim');
    const first = state(redis);
    await first.append(Array.from({ length: 300 }, (_, i) => rec(i + 1)));
    await first.checkpoint();
    // The next run: 200 members leave, 50 are re-sent and wait on an upload, 50 are unchanged. Whole shards
    // empty out.
    const next = state(stops);
    await next.append([
      ...Array.from({ length: 200 }, (_, i) => rec(i + 1, Status.deleted)),
      ...Array.from({ length: 50 }, (_, i) => rec(i + 201, Status.addPending)),
    ]);
    await expect(next.checkpoint()).rejects.toThrow(/NOPERM|EXECABORT/);
    // The run after it (a new process: nothing in memory) finishes the fold.
    const after = state(redis);
    expect(await after.lost()).toBe(false);
    await after.checkpoint();
    const kept = await all(after);
    expect(kept.map((r) => r.key.readUInt32BE(4))).toEqual(
      Array.from({ length: 100 }, (_, i) => i + 201).sort((a, b) => Buffer.compare(rec(a).key, rec(b).key)),
    );
    // The counts, from the records themselves.
    const byStatus = (status: number) => kept.filter((r) => r.status === status).length;
    expect([byStatus(Status.confirmed), byStatus(Status.addPending)]).toEqual([50, 50]);
    expect(await after.counts()).toEqual({ confirmed: 50, addPending: 50, removePending: 0, rejected: 0 });
    expect(await redis.hget(`${baseOf(after)}:meta`, 'members')).toBe('100');
    expect(await after.lost()).toBe(false);
  });

  it('after every shard is folded and before the meta counts the members: an emptied state is not lost', async () => {
    // This run's login may write the shards' keys (buckets, journal, counts) but not the meta: its checkpoint
    // stops where a kill after the last shard's fold would.
    const { redis, stops, state } = await withLogin('%R~*', '%RW~*:b:*', '%RW~*:j:*', '%RW~*:c:*');
    // Fewer members than shards: some shards never hold any, and have no count.
    const first = state(redis);
    await first.append(Array.from({ length: 20 }, (_, i) => rec(i + 1)));
    await first.checkpoint();
    expect(await redis.hget(`${baseOf(first)}:meta`, 'members')).toBe('20');
    // Every member leaves.
    await state(redis).append(Array.from({ length: 20 }, (_, i) => rec(i + 1, Status.deleted)));
    await expect(state(stops).checkpoint()).rejects.toThrow(/NOPERM/);
    const after = state(redis);
    expect(await all(after)).toEqual([]);
    expect(await after.lost()).toBe(false);
    await after.checkpoint();
    expect(await after.counts()).toEqual({ confirmed: 0, addPending: 0, removePending: 0, rejected: 0 });
  });
});

describe('a reader outside the run’s lease (plan, status, the API)', () => {
  it('is told the state moved when a run rewrites it under its read, rather than reading it short', async () => {
    const name = `t${randomBytes(4).toString('hex')}`;
    const run = new StateStore(redis, name).audience('dest', 'moved');
    await run.append(Array.from({ length: 20_000 }, (_, i) => rec(i + 1)));
    await run.checkpoint();
    const before = await bitsOf(run);
    const reader = new StateStore(redis, name).audience('dest', 'moved');
    const read = reader.ordered()[Symbol.asyncIterator]();
    const first = await read.next();
    expect(first.done).toBe(false);
    // The run grows the audience fourfold: its checkpoint writes a new generation and deletes the one read.
    await run.append(Array.from({ length: 60_000 }, (_, i) => rec(i + 20_001)));
    await run.checkpoint();
    expect(await bitsOf(run)).toBeGreaterThanOrEqual(before + 2);
    const rest = (async () => {
      let n = decodeRecords(first.value as Buffer).length;
      for (let next = await read.next(); !next.done; next = await read.next())
        n += decodeRecords(next.value).length;
      return n;
    })();
    await expect(rest).rejects.toThrow(
      /'moved' on dest was rewritten by a run while it was read; read it again/,
    );
    // Read again, the state is whole.
    expect(await reader.size()).toBe(80_000);
  });

  it('counts the generation it finds at the end, never the deleted keys of the one it found first', async () => {
    const name = `t${randomBytes(4).toString('hex')}`;
    const run = new StateStore(redis, name).audience('dest', 'counted');
    const members = Array.from({ length: 3_000 }, (_, i) => rec(i + 1));
    await run.append(members);
    await run.checkpoint();
    // The reader's commands go through a proxy that holds them from the first that reads a shard's counts:
    // the reader has read the layout (generation 1), and has not yet read its counts.
    const proxy = await holdingProxy(inject('redisUrl'), ':c:');
    const through = new Redis(proxy.url);
    onTestFinished(async () => {
      through.disconnect();
      await proxy.close();
    });
    const counting = new StateStore(through, name).audience('dest', 'counted').counts();
    await proxy.holding;
    // Meanwhile the run replaces the audience with a third of it: generation 1's keys are deleted.
    await run.startReplace('test');
    await run.append(members.slice(0, 1_000));
    await run.checkpoint();
    proxy.release();
    expect(await counting).toEqual({ confirmed: 1_000, addPending: 0, removePending: 0, rejected: 0 });
  });
});

/**
 * A TCP proxy in front of Redis that forwards a client's commands until one names `held`, then holds that one
 * and the ones after it until `release`: a reader stopped between two of its commands, at the wire.
 */
async function holdingProxy(redisUrl: string, held: string) {
  const target = new URL(redisUrl);
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let onHold!: () => void;
  const holding = new Promise<void>((resolve) => (onHold = resolve));
  let hold = false;
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => socket.destroy());
      socket.on('close', () => (client.destroy(), upstream.destroy()));
    }
    upstream.pipe(client);
    let sent = Promise.resolve();
    client.on('data', (chunk: Buffer) => {
      if (!hold && chunk.includes(held)) {
        hold = true;
        onHold();
      }
      const holdThis = hold;
      sent = sent.then(async () => {
        if (holdThis) await released;
        upstream.write(chunk);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    holding,
    release,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
