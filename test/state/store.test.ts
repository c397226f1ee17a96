import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { decodeRecords, encodeRecords, Status, type StateRecord } from '../../src/state/records.js';
import { StateStore } from '../../src/state/store.js';

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
    expect(await redis.llen(`${(state as unknown as { base: string }).base}:j`)).toBe(0);
    expect((await state.uploads()).get(7)).toMatchObject({ token: 'req-1', op: 'add' });
  });

  it('finishes an interrupted checkpoint: replaying the journal twice gives the same state', async () => {
    const state = store().audience('dest', 'a');
    await state.append([rec(1), rec(2)]);
    await state.checkpoint();
    await state.append([rec(3), { ...rec(1), status: Status.deleted, slots: [] }]);
    // Simulate a crash after the buckets were written but before the journal was trimmed.
    const journal = await redis.lrangeBuffer(`${(state as unknown as { base: string }).base}:j`, 0, -1);
    await state.checkpoint();
    await redis.rpush(`${(state as unknown as { base: string }).base}:j`, ...journal);
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
    const state = store().audience('dest', 'big');
    await state.append([rec(0)]);
    await state.checkpoint();
    const many = Array.from({ length: 20_000 }, (_, i) => rec(i + 1));
    for (let i = 0; i < many.length; i += 5000) await state.append(many.slice(i, i + 5000));
    await state.checkpoint();
    expect(
      Number(await redis.hget(`${(state as unknown as { base: string }).base}:meta`, 'bits')),
    ).toBeGreaterThanOrEqual(8);
    expect(await state.size()).toBe(20_001);
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
    const seen = (await all(state)).map((r) => [r.key.readUInt32BE(4), r.status]).sort();
    expect(seen).toEqual([
      [2, Status.addPending],
      [3, Status.confirmed],
    ]);
    // Nothing was written: the journal is still there for the next sync's checkpoint.
    expect(await redis.llen(`${(state as unknown as { base: string }).base}:j`)).toBe(1);
  });

  it('reads a state written in format 1, and rewrites it in the current format, keys translated, before writing to it', async () => {
    const state = store().audience('dest', 'RFM: Loyal');
    const base = (state as unknown as { base: string }).base;
    const kept = [rec(1), rec(2, Status.addPending), rec(3)];
    // Two buckets (bits 1) and a journal a run of the old version left: member 3 deleted, 5 added.
    await redis.hset(`${base}:meta`, 'bits', 1, 'members', 3, 'remote_id', 'r1');
    for (const b of [0, 1]) {
      const records = kept.filter((r) => r.key[0]! >> 7 === b);
      if (records.length > 0) await redis.hset(`${base}:b`, String(b), formatOne(records));
    }
    await redis.rpush(`${base}:j`, formatOne([{ ...rec(3), status: Status.deleted, slots: [] }, rec(5)]));
    const trim = (r: StateRecord) => ({ ...r, slots: r.slots.slice(0, r.slots.findLastIndex(Boolean) + 1) });
    const byKey = (a: StateRecord, b: StateRecord) => Buffer.compare(a.key, b.key);
    const expected = [rec(1), rec(2, Status.addPending), rec(5)].map(trim).sort(byKey);
    expect(await all(state)).toEqual(expected);
    expect(await redis.hget(`${base}:meta`, 'format')).toBeNull(); // reading writes nothing
    expect(await state.legacyKeys()).toBe(true);

    // Without a translation of its keys (a run that only settles uploads), the journal is folded in, and the
    // state kept under its old keys in format 2; members cannot be written under current keys.
    await state.checkpoint();
    expect(await redis.hget(`${base}:meta`, 'format')).toBe('2');
    expect(await all(state)).toEqual(expected);
    await expect(state.append([rec(106)])).rejects.toThrow(
      "the state of 'RFM: Loyal' on dest has keys of an older format: plan the audience (which translates them) before writing to it",
    );

    // A plan's translation: member n's old key is now rec(n + 100)'s; member 5 is no longer known.
    state.translateKeys((old) => {
      const n = [1, 2].find((m) => rec(m).key.equals(old));
      return n === undefined ? undefined : rec(n + 100).key;
    });
    const translated = [
      { ...trim(rec(1)), key: rec(101).key },
      { ...trim(rec(2, Status.addPending)), key: rec(102).key },
      trim(rec(5)),
    ].sort(byKey);
    expect(await all(state)).toEqual(translated); // read translated, still unwritten
    expect(await redis.hget(`${base}:meta`, 'format')).toBe('2');

    await state.append([rec(106)]);
    expect(await redis.hget(`${base}:meta`, 'format')).toBe('3');
    expect(await state.legacyKeys()).toBe(false);
    // A new instance (another process) reads the rewritten state, keys as they were translated.
    const again = store((state as unknown as { store: StateStore }).store.prefix).audience(
      'dest',
      'RFM: Loyal',
    );
    expect(await all(again)).toEqual([...translated, trim(rec(106))].sort(byKey));
    const stored = await redis.hgetallBuffer(`${base}:b`);
    const bytes = Object.values(stored).reduce((n, v) => n + v.length, 0);
    expect(bytes).toBe(2 * 11 + 15 + (2 + 1 + 2) * 32); // members 1, 2 (pending) and 5
    expect(await redis.hget(`${base}:meta`, 'members')).toBe('3');
    expect(await state.remoteId()).toBe('r1');
  });
});
