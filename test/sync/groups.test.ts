import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { z } from 'zod';
import { audiencesOf } from '../../src/audience/audiences.js';
import { configSchema } from '../../src/config/schema.js';
import type { ConnectorDefinition } from '../../src/connector.js';
import { sha256 } from '../../src/identify/hash.js';
import { segmentCustomers } from '../../src/score/pipeline.js';
import { Status } from '../../src/record/records.js';
import { StateStore } from '../../src/record/store.js';
import { planDestination, type Destination } from '../../src/sync/run.js';
import { tempDir, writeTemp } from '../helpers.js';

/** Slots that identify someone only together (a name and a postcode) are one identifier for removals. */
const connector: ConnectorDefinition<{ type: string }> = {
  type: 'grouped',
  configSchema: z.looseObject({ type: z.string() }),
  batchSize: () => 100,
  final: () => true,
  slots: () => ['email', 'first_name', 'last_name'],
  identifierGroups: () => [[1, 2]],
  identify: (p) => ({
    slots: [p.email ? sha256(p.email) : undefined, sha256(p.first_name ?? ''), sha256(p.last_name ?? '')],
  }),
  create: () => {
    throw new Error('not used');
  },
};

const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.disconnect());

describe('identifier groups', () => {
  it('keep a shared name out of a removal only when the whole group is shared', async () => {
    const dir = tempDir();
    writeTemp('orders.csv', 'customer_id,order_date,amount\nb,2025-12-01,1\nc,2025-12-01,1\n', dir);
    writeTemp(
      'customers.csv',
      'customer_id,email,first_name,last_name\nb,b@example.com,john,smith\nc,c@example.com,jane,doe\n',
      dir,
    );
    const config = configSchema.parse({
      source: { type: 'csv', path: 'orders.csv' },
      profiles: { type: 'csv', path: 'customers.csv' },
      scoring: { analysis_date: '2026-01-01' },
      segments: { map: 'codes', codes: { All: [111] }, other: 'All' },
      destinations: { g: { type: 'file', path: 'unused' } },
    });
    const segmented = await segmentCustomers(config, { baseDir: dir });
    const store = new StateStore(redis, `groups-${randomBytes(4).toString('hex')}`);
    // Two customers who left: a (john doe, sharing only the first name with b) and d (jane doe, like c).
    const key = (n: number) => Buffer.alloc(8, n);
    const state = store.audience('g', 'RFM: All');
    await state.append([
      {
        key: key(1),
        status: Status.confirmed,
        upload: 0,
        slots: [sha256('a@example.com'), sha256('john'), sha256('doe')],
      },
      {
        key: key(2),
        status: Status.confirmed,
        upload: 0,
        slots: [sha256('d@example.com'), sha256('jane'), sha256('doe')],
      },
    ]);
    await state.checkpoint();
    const destination: Destination = { name: 'g', connector, config: { type: 'grouped' } };
    const [plan] = await planDestination(destination, {
      segmented,
      audiences: audiencesOf(config, segmented.scores.segments),
      store,
    });
    const removals = new Map(plan!.remove.map((m) => [m.key[0], m.slots]));
    // a's name group (john, doe) is nobody else's: removed whole, although b is also a john.
    expect(removals.get(1)).toEqual([sha256('a@example.com'), sha256('john'), sha256('doe')]);
    // d's name group (jane, doe) is c's too: kept out, only the email is removed.
    expect(removals.get(2)).toEqual([sha256('d@example.com'), undefined, undefined]);
  });
});
