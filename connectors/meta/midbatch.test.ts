import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import type { ConnectorDefinition } from '../../src/connector.js';
import { createLogger } from '../../src/log.js';
import { StateStore } from '../../src/state/store.js';
import { prepareSync } from '../../src/sync/prepare.js';
import type { AudienceResult } from '../../src/sync/run.js';
import { identifiedMembers, makeShop, syncOnce } from '../../test/sync/harness.js';
import type { MetaConfig } from './config.js';
import { FakeGraph, rowIdentifiers, type RecordedRequest } from './fixtures/fake-graph.js';
import { toRow } from './identifiers.js';
import { metaConnector } from './index.js';

/**
 * A batch counts only when Meta holds all of it (issue 14): the fake applies half of a `/users` request,
 * then drops the connection, on every attempt. The run must not count that batch (it reports the audience
 * failed), and the next run must leave every audience exactly equal to its segment.
 */

const TOKEN = 'EAAB-midbatch-token-0123456789';
const redis = new Redis(inject('redisUrl'));
const log = createLogger({ level: 'silent', json: true });
const registry = { meta: metaConnector as unknown as ConnectorDefinition<never> };

beforeAll(() => {
  process.env.META_MIDBATCH_ACCESS_TOKEN = TOKEN;
});
afterAll(() => {
  delete process.env.META_MIDBATCH_ACCESS_TOKEN;
  redis.disconnect();
});
beforeEach(() => nock.disableNetConnect());
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

const rowsOf = (r: RecordedRequest) => (r.body as { payload: { data: unknown[] } }).payload.data.length;

describe('Meta: a connection dropped in the middle of a batch', () => {
  it('leaves that batch uncounted, and the next run makes every audience exact', async () => {
    const shop = await makeShop({
      customers: 400,
      // A third of the customers opt out below: more removals than the brake lets through unasked.
      sync: 'max_removal_share: 1',
      destinations: `  meta:
    type: meta
    ad_account_id: act_1234567890
    access_token: \${META_MIDBATCH_ACCESS_TOKEN}
    schema: [EMAIL, PHONE, FN, LN, ZIP, COUNTRY]
    batch_size: 10
    throttle_wait_seconds: 0.05`,
    });
    const store = new StateStore(redis, shop.prefix);
    const fake = new FakeGraph('https://graph.facebook.com', 'v24.0', '1234567890', TOKEN);
    const run = () =>
      syncOnce(shop.config, registry, {
        store,
        log,
        retry: { attempts: 3, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 5_000 },
      });
    const expected = async () => {
      const prepared = await prepareSync(shop.config, registry);
      const meta = prepared.destinations[0]!.config as MetaConfig;
      const members = identifiedMembers(prepared.config, prepared.segmented, (p) =>
        metaConnector.identify(p, meta),
      );
      return new Map(
        [...members].map(([name, byId]) => [
          name,
          new Set([...byId.values()].flatMap((s) => rowIdentifiers(meta.schema, toRow(s, meta.schema)))),
        ]),
      );
    };
    const onMeta = () =>
      new Map([...fake.audiences.values()].filter((a) => !a.deleted).map((a) => [a.name, a.identifiers]));
    const audienceOf = (r: RecordedRequest) => fake.audiences.get(r.path.split('/')[2]!)?.name;
    /** Rows Meta acknowledged per audience and method (requests answered, not cut off). */
    const acknowledged = (from: number, method: string) => {
      const rows = new Map<string, number>();
      for (const r of fake.requests.slice(from))
        if (r.path.endsWith('/users') && r.method === method && !fake.dropped.includes(r))
          rows.set(audienceOf(r)!, (rows.get(audienceOf(r)!) ?? 0) + rowsOf(r));
      return rows;
    };
    const expectCountedAsAcknowledged = (results: AudienceResult[], from: number) => {
      const added = acknowledged(from, 'POST');
      const removed = acknowledged(from, 'DELETE');
      for (const r of results) {
        expect(r.added, r.audience).toBe(added.get(r.audience) ?? 0);
        expect(r.removed, r.audience).toBe(removed.get(r.audience) ?? 0);
      }
    };
    /** Cuts off every upload of `method` to an audience (`audience`, or any) after its first one in this run. */
    const cutAfterFirst = (audience: string | undefined, method: string, from: number) => {
      fake.dropMidBatch = (r) =>
        r.method === method &&
        (audience === undefined || audienceOf(r) === audience) &&
        fake.requests.slice(from).filter((x) => x.method === method && audienceOf(x) === audienceOf(r))
          .length > 1;
    };

    // First run: additions to 'Slipping away' are cut off after its first batch of 10.
    cutAfterFirst('Slipping away', 'POST', 0);
    const first = await run();
    const failed = first.filter((r) => r.error);
    expect(failed.map((r) => r.audience)).toEqual(['Slipping away']);
    expect(failed[0]!.error).toMatch(/no answer from the Graph API/);
    expect(fake.dropped.length).toBeGreaterThan(0);
    expectCountedAsAcknowledged(first, 0);
    expect(failed[0]!.failed).toBe(failed[0]!.plannedAdds - failed[0]!.added);
    // Meta holds more than the run counted: half of each batch cut off was applied.
    const slipping = fake.byName('Slipping away')[0]!;
    const counted = fake.requests
      .filter((r) => r.method === 'POST' && audienceOf(r) === 'Slipping away' && !fake.dropped.includes(r))
      .flatMap((r) => (r.body as { payload: { data: string[][] } }).payload.data);
    expect(slipping.identifiers.size).toBeGreaterThan(
      new Set(counted.flatMap((row) => rowIdentifiers(['EMAIL', 'PHONE', 'FN', 'LN', 'ZIP', 'COUNTRY'], row)))
        .size,
    );

    fake.dropMidBatch = undefined;
    const mark = fake.requests.length;
    const second = await run();
    expect(second.filter((r) => r.error)).toEqual([]);
    expect(onMeta()).toEqual(await expected());
    const again = second.find((r) => r.audience === 'Slipping away')!;
    expect(again.added).toBe(failed[0]!.plannedAdds - failed[0]!.added);
    expectCountedAsAcknowledged(second, mark);

    // A third of the customers opt out: each audience's removals are cut off after their first batch.
    shop.editCustomers((cells, header, row) => {
      if (row % 3 === 0) cells[header.indexOf('opted_out')] = 'true';
    });
    const before = fake.requests.length;
    cutAfterFirst(undefined, 'DELETE', before);
    const third = await run();
    const cut = third.filter((r) => r.error);
    expect(cut.length).toBeGreaterThan(0);
    expect(cut.map((r) => r.audience)).toEqual(
      third.filter((r) => r.plannedRemoves > 10).map((r) => r.audience),
    );
    // An audience whose removals failed sends no additions: they wait for the next run.
    for (const r of cut) expect(r.failed).toBe(r.plannedRemoves + r.plannedAdds - r.removed);
    expectCountedAsAcknowledged(third, before);

    fake.dropMidBatch = undefined;
    const fourth = await run();
    expect(fourth.filter((r) => r.error)).toEqual([]);
    expect(onMeta()).toEqual(await expected());
    const fifth = await run();
    expect(fifth.reduce((n, r) => n + r.added + r.removed, 0)).toBe(0);
  });
});
