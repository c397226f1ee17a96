import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import type { ConnectorDefinition } from '../../src/connector.js';
import { createLogger } from '../../src/log.js';
import { StateStore } from '../../src/state/store.js';
import { prepareSync } from '../../src/sync/prepare.js';
import type { AudienceResult } from '../../src/sync/run.js';
import { identifiedMembers, makeShop, syncOnce, syncUntilSettled } from '../../test/sync/harness.js';
import { userData } from './adsapi.js';
import { googleAdsConfigSchema } from './config.js';
import { localhostCertificate } from './grpc-fake/cert.js';
import { FAKE_REST, FAKE_TOKEN_URL, serveRest } from './grpc-fake/rest.js';
import { FakeGoogleAds, identifierKey, type FakeMethod } from './grpc-fake/server.js';
import { googleAdsConnector } from './index.js';

/**
 * A batch counts only when Google holds all of it (issue 14), through the Google Ads API: a batch is one
 * offline user data job, and the gRPC fake cuts it off mid-way on every attempt: an addOperations call
 * takes half of its operations and the connection drops, or a job is started and the connection drops
 * before the answer. The run must not count that batch, and the next runs must leave every list exact.
 */

const registry = { google_ads: googleAdsConnector as unknown as ConnectorDefinition<never> };
const redis = new Redis(inject('redisUrl'));
const log = createLogger({ level: 'silent', json: true });
const tls = localhostCertificate();
let fake: FakeGoogleAds;

beforeAll(async () => {
  fake = await FakeGoogleAds.start(tls);
});
afterAll(async () => {
  redis.disconnect();
  await fake.close();
  rmSync(tls.dir, { recursive: true, force: true });
});
beforeEach(() => {
  process.env.GOOGLE_CLIENT_SECRET = 'client-secret';
  process.env.GOOGLE_REFRESH_TOKEN = '1//refresh';
  process.env.GOOGLE_ADS_DEVELOPER_TOKEN = 'dev-token';
  fake.reset();
  fake.finish = 'manual';
  nock.disableNetConnect();
  nock.enableNetConnect(/^(localhost|127\.0\.0\.1)(:\d+)?$/);
  serveRest(fake);
});
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

const BATCH = 10;

describe('Google Ads API: a job cut off in the middle of a batch', () => {
  it('leaves that batch uncounted, and the next runs make every list exact', async () => {
    const shop = await makeShop({
      customers: 300,
      // A third of the customers opt out below: more removals than the brake lets through unasked.
      sync: 'max_removal_share: 1',
      destinations: `  google:
    type: google_ads
    api: ads_api
    customer_id: 123-456-7890
    client_id: test-client.apps.googleusercontent.com
    client_secret: \${GOOGLE_CLIENT_SECRET}
    refresh_token: \${GOOGLE_REFRESH_TOKEN}
    developer_token: \${GOOGLE_ADS_DEVELOPER_TOKEN}
    batch_size: ${BATCH}
    endpoints:
      token_url: ${FAKE_TOKEN_URL}
      ads_rest: ${FAKE_REST}
      ads_api: { host: localhost, port: ${fake.port}, ca_file: ${tls.certFile} }`,
    });
    const store = new StateStore(redis, `gads-api-midbatch-${randomBytes(4).toString('hex')}`);
    const run = (): Promise<AudienceResult[]> =>
      syncOnce(shop.config, registry, {
        store,
        log,
        retry: { attempts: 3, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 100 },
      });
    const settle = () => syncUntilSettled(run, { most: 8, between: () => fake.finishJobs() });
    const assertExact = async () => {
      const prepared = await prepareSync(shop.config, registry);
      const config = googleAdsConfigSchema.parse(prepared.config.destinations.google);
      const members = identifiedMembers(prepared.config, prepared.segmented, (person) =>
        googleAdsConnector.identify(person, config),
      );
      for (const [name, byId] of members) {
        const want = new Set(
          [...byId.values()].flatMap((slots) =>
            (userData(slots).user_identifiers ?? []).map((u) =>
              identifierKey({
                hashed_email: u.hashed_email ?? undefined,
                hashed_phone_number: u.hashed_phone_number ?? undefined,
                address_info: u.address_info
                  ? {
                      hashed_first_name: u.address_info.hashed_first_name ?? undefined,
                      hashed_last_name: u.address_info.hashed_last_name ?? undefined,
                      country_code: u.address_info.country_code ?? undefined,
                      postal_code: u.address_info.postal_code ?? undefined,
                    }
                  : undefined,
              }),
            ),
          ),
        );
        const list = fake.listNamed(name);
        if (want.size === 0 && !list) continue;
        expect([...(list?.identifiers ?? [])].sort(), name).toEqual([...want].sort());
      }
    };
    /** Members in jobs Google answered as started, per list and kind, among jobs not in `before`. */
    const started = (before: ReadonlySet<string>, kind: 'create' | 'remove') => {
      const out = new Map<string, number>();
      const answered = new Set(fake.callsOf('RunOfflineUserDataJob').map((c) => c.request.resource_name));
      for (const job of fake.jobs.values()) {
        if (before.has(job.resourceName) || !answered.has(job.resourceName)) continue;
        if (fake.cutOff.some((c) => c.job === job.resourceName)) continue;
        const name = fake.lists.get(job.userList)!.name;
        const n = job.operations.filter((o) => o[kind]).length;
        out.set(name, (out.get(name) ?? 0) + n);
      }
      return out;
    };
    /** Cuts `method` off for a list (`list`, or any) once one of its jobs has started, from now on. */
    const cutAfterFirst = (method: FakeMethod, list: string | undefined) => {
      const before = new Set(fake.jobs.keys());
      const cutList = (l: string) =>
        [...fake.jobs.values()].some(
          (j) =>
            !before.has(j.resourceName) &&
            j.status !== 'PENDING' &&
            fake.lists.get(j.userList)?.name === l &&
            !fake.cutOff.some((c) => c.job === j.resourceName),
        );
      return (call: { method: FakeMethod; list: string }) =>
        call.method === method && (list === undefined || call.list === list) && cutList(call.list);
    };
    const errors = (results: AudienceResult[]) => results.filter((r) => r.error).map((r) => r.audience);

    // First run: 'Slipping away' loses the connection in the middle of adding operations, 'RFM: At Risk'
    // right after starting a job; both after their first job.
    const jobsBefore = new Set(fake.jobs.keys());
    const addOps = cutAfterFirst('AddOfflineUserDataJobOperations', 'Slipping away');
    const runJob = cutAfterFirst('RunOfflineUserDataJob', 'RFM: At Risk');
    fake.cutMidBatch = (call) => addOps(call) || runJob(call);
    const first = await run();
    expect(errors(first).sort()).toEqual(['RFM: At Risk', 'Slipping away']);
    for (const r of first.filter((x) => x.error)) expect(r.error).toMatch(/UNAVAILABLE|Connection dropped/);
    expect(new Set(fake.cutOff.map((c) => c.method))).toEqual(
      new Set(['AddOfflineUserDataJobOperations', 'RunOfflineUserDataJob']),
    );
    const added = started(jobsBefore, 'create');
    for (const r of first) expect(r.added, r.audience).toBe(added.get(r.audience) ?? 0);
    for (const r of first.filter((x) => x.error)) {
      expect(r.added, r.audience).toBe(BATCH);
      expect(r.failed, r.audience).toBe(r.plannedAdds - BATCH);
    }

    fake.cutMidBatch = undefined;
    await settle();
    await assertExact();

    // A third of the customers opt out: removal jobs are cut off after each list's first one.
    shop.editCustomers((cells, header, row) => {
      if (row % 3 === 0) cells[header.indexOf('opted_out')] = 'true';
    });
    const removalsBefore = new Set(fake.jobs.keys());
    fake.cutMidBatch = cutAfterFirst('AddOfflineUserDataJobOperations', undefined);
    const third = await run();
    const cut = third.filter((r) => r.error);
    expect(cut.length).toBeGreaterThan(0);
    expect(cut.map((r) => r.audience)).toEqual(
      third.filter((r) => r.plannedRemoves > BATCH).map((r) => r.audience),
    );
    const removed = started(removalsBefore, 'remove');
    for (const r of third) expect(r.removed, r.audience).toBe(removed.get(r.audience) ?? 0);

    fake.cutMidBatch = undefined;
    await settle();
    await assertExact();
  });
});
