import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { Status, type StateRecord } from '../../src/record/records.js';
import { StateStore } from '../../src/record/store.js';

/**
 * The member counts health reads without scanning a state: kept by every write (journal folded in,
 * pending uploads settled, reshards, a replace), always equal to a count over the records themselves.
 */

const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.disconnect());

const record = (n: number, status: StateRecord['status']): StateRecord => {
  const key = Buffer.alloc(8);
  key.writeUInt32BE((n * 2654435761) >>> 0, 0);
  key.writeUInt32BE(n, 4);
  const waits = status === Status.addPending || status === Status.removePending;
  return { key, status, upload: waits ? 3 : 0, slots: [Buffer.alloc(32, n % 251)] };
};

/** Counted here from the records a scan gives. */
async function counted(state: ReturnType<StateStore['audience']>) {
  const out = { confirmed: 0, addPending: 0, removePending: 0, rejected: 0 };
  const names = ['confirmed', 'addPending', 'removePending', 'rejected'] as const;
  for await (const records of state.scan()) for (const r of records) out[names[r.status as 0 | 1 | 2 | 3]]++;
  return out;
}

describe('state counts', () => {
  it('follow appends, checkpoints, settled uploads, reshards and a replace', async () => {
    const state = new StateStore(redis, `counts-${randomBytes(4).toString('hex')}`).audience('d', 'a');
    const statuses = [Status.confirmed, Status.addPending, Status.removePending, Status.rejected] as const;
    // 3,000 members over four statuses, in batches, folded every other batch.
    for (let batch = 0; batch < 6; batch++) {
      const records = Array.from({ length: 500 }, (_, k) =>
        record(batch * 500 + k, statuses[(batch + k) % 4]!),
      );
      await state.append(records);
      if (batch % 2 === 1) await state.checkpoint();
    }
    await state.checkpoint();
    expect(await state.counts()).toEqual({
      confirmed: 750,
      addPending: 750,
      removePending: 750,
      rejected: 750,
    });
    expect(await state.counts()).toEqual(await counted(state));

    // Changes of status and deletions of members already counted.
    await state.append([
      ...Array.from({ length: 100 }, (_, k) => record(k, Status.confirmed)),
      ...Array.from({ length: 50 }, (_, k) => record(1000 + k, Status.deleted)),
    ]);
    await state.checkpoint();
    expect(await state.counts()).toEqual(await counted(state));

    // Settling uploads: additions confirmed, removals gone.
    await state.checkpoint((r) =>
      r.status === Status.addPending
        ? { ...r, status: Status.confirmed, upload: 0 }
        : r.status === Status.removePending
          ? undefined
          : r,
    );
    const settled = await counted(state);
    expect(settled.addPending + settled.removePending).toBe(0);
    expect(await state.counts()).toEqual(settled);

    // Most members leave: the state reshards to fewer buckets, counts still right.
    await state.append(Array.from({ length: 2900 }, (_, k) => record(k, Status.deleted)));
    await state.checkpoint();
    expect(await state.counts()).toEqual(await counted(state));

    await state.startReplace('test');
    expect(await state.counts()).toEqual({ confirmed: 0, addPending: 0, removePending: 0, rejected: 0 });
  });
});
