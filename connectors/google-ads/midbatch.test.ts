import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import type { ConnectorDefinition } from '../../src/connector.js';
import { createLogger } from '../../src/log.js';
import { StateStore } from '../../src/state/store.js';
import { prepareSync } from '../../src/sync/prepare.js';
import type { AudienceResult } from '../../src/sync/run.js';
import { identifiedMembers, makeShop, syncOnce, syncUntilSettled } from '../../test/sync/harness.js';
import { googleAdsConfigSchema } from './config.js';
import { FakeDataManager, identifierKey } from './fixtures/fake-datamanager.js';
import { userIdentifiers } from './identifiers.js';
import { googleAdsConnector } from './index.js';

/**
 * A batch counts only when Google holds all of it (issue 14), through the Data Manager API: the fake
 * takes half of an ingest or remove request, then the connection drops before it answers, on every
 * attempt. The run must not count that batch (the audience reports failed, nothing of it pending), and
 * the next runs must leave every list exactly its segment.
 */

const DM = 'https://datamanager.midbatch.fake';
const TOKEN_URL = 'https://oauth.midbatch.fake/token';
const registry = { google_ads: googleAdsConnector as unknown as ConnectorDefinition<never> };
const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.disconnect());
const log = createLogger({ level: 'silent', json: true });

beforeEach(() => {
  process.env.GOOGLE_CLIENT_SECRET = 'client-secret';
  process.env.GOOGLE_REFRESH_TOKEN = '1//refresh';
  nock.disableNetConnect();
});
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

describe('Google Data Manager: a connection dropped in the middle of a batch', () => {
  it('leaves that batch uncounted, and the next runs make every list exact', async () => {
    const shop = await makeShop({
      customers: 300,
      // A third of the customers opt out below: more removals than the brake lets through unasked.
      sync: 'max_removal_share: 1',
      destinations: `  google:
    type: google_ads
    customer_id: 123-456-7890
    client_id: test-client.apps.googleusercontent.com
    client_secret: \${GOOGLE_CLIENT_SECRET}
    refresh_token: \${GOOGLE_REFRESH_TOKEN}
    batch_size: 10
    endpoints: { data_manager: ${DM}, token_url: ${TOKEN_URL} }`,
    });
    const fake = new FakeDataManager(DM, TOKEN_URL, '1234567890');
    fake.install();
    const store = new StateStore(redis, `gads-midbatch-${randomBytes(4).toString('hex')}`);
    const run = (): Promise<AudienceResult[]> =>
      syncOnce(shop.config, registry, {
        store,
        log,
        retry: { attempts: 3, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 100 },
      });
    const assertExact = async () => {
      const prepared = await prepareSync(shop.config, registry);
      const config = googleAdsConfigSchema.parse(prepared.config.destinations.google);
      const members = identifiedMembers(prepared.config, prepared.segmented, (person) =>
        googleAdsConnector.identify(person, config),
      );
      for (const [name, byId] of members) {
        const want = new Set(
          [...byId.values()].flatMap((slots) => userIdentifiers(slots).map(identifierKey)),
        );
        if (want.size === 0 && !fake.list(name)) continue;
        expect([...(fake.list(name) ?? [])].sort(), name).toEqual([...want].sort());
      }
    };
    /** Members Google acknowledged per list for `op` since batch number `from`. */
    const acknowledged = (from: number, op: 'ingest' | 'remove') => {
      const out = new Map<string, number>();
      for (const b of fake.batches.slice(from))
        if (b.op === op) out.set(b.list, (out.get(b.list) ?? 0) + b.size);
      return out;
    };
    /** Cuts off every `op` request to a list (`list`, or any) after its first one, from now on. */
    const cutAfterFirst = (list: string | undefined, op: 'ingest' | 'remove') => {
      const from = fake.batches.length;
      fake.cutMidBatch = (r) =>
        r.op === op &&
        (list === undefined || r.list === list) &&
        fake.batches.slice(from).some((b) => b.op === op && b.list === r.list);
    };
    const errors = (results: AudienceResult[]) => results.filter((r) => r.error).map((r) => r.audience);

    // First run: ingests to 'Slipping away' are cut off after its first batch of 10.
    cutAfterFirst('Slipping away', 'ingest');
    const first = await run();
    expect(errors(first)).toEqual(['Slipping away']);
    expect(first.find((r) => r.audience === 'Slipping away')!.error).toMatch(/socket hang up|ECONNRESET/);
    expect(fake.cutOff.length).toBeGreaterThan(0);
    const added = acknowledged(0, 'ingest');
    for (const r of first) expect(r.added, r.audience).toBe(added.get(r.audience) ?? 0);
    const slipping = first.find((r) => r.audience === 'Slipping away')!;
    expect(slipping.added).toBe(10);
    expect(slipping.failed).toBe(slipping.plannedAdds - 10);

    fake.cutMidBatch = undefined;
    await syncUntilSettled(run, { most: 8 });
    await assertExact();

    // A third of the customers opt out: removals are cut off after each list's first batch.
    shop.editCustomers((cells, header, row) => {
      if (row % 3 === 0) cells[header.indexOf('opted_out')] = 'true';
    });
    const mark = fake.batches.length;
    cutAfterFirst(undefined, 'remove');
    const third = await run();
    const cut = third.filter((r) => r.error);
    expect(cut.length).toBeGreaterThan(0);
    expect(cut.map((r) => r.audience)).toEqual(
      third.filter((r) => r.plannedRemoves > 10).map((r) => r.audience),
    );
    const removed = acknowledged(mark, 'remove');
    for (const r of third) expect(r.removed, r.audience).toBe(removed.get(r.audience) ?? 0);

    fake.cutMidBatch = undefined;
    await syncUntilSettled(run, { most: 8 });
    await assertExact();
  });
});
