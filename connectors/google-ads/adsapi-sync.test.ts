import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { StateStore } from '../../src/record/store.js';
import { prepareSync } from '../../src/sync/prepare.js';
import type { AudienceResult } from '../../src/sync/run.js';
import {
  identifiedMembers,
  loseState,
  makeShop,
  syncOnce,
  syncUntilSettled,
} from '../../test/sync/harness.js';
import { userData } from './adsapi.js';
import { googleAdsConfigSchema } from './config.js';
import { localhostCertificate } from './grpc-fake/cert.js';
import { FAKE_REST, FAKE_TOKEN_URL, serveRest } from './grpc-fake/rest.js';
import { FakeGoogleAds, identifierKey, type FakeMethod } from './grpc-fake/server.js';
import { googleAdsConnector } from './index.js';

/**
 * End to end through the Google Ads API path: the example shop synced with `api: ads_api` to the loopback
 * gRPC fake, whose jobs are applied to in-memory lists when Google "processes" them (between runs), over
 * runs with adds, removals, changed emails, opt-outs, a CONCURRENT_MODIFICATION and a full resync
 * (`remove_all`). Each list must end up holding exactly the identifiers of its segment's members.
 * Last, a batch counts only when Google holds all of it (issue 14): the fake cuts jobs off mid-way.
 */

const registry = { google_ads: googleAdsConnector };
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

const BATCH = 40;

async function setup(batch = BATCH) {
  const shop = await makeShop({
    customers: 300,
    sync: 'max_removal_share: 1',
    destinations: `  google:
    type: google_ads
    api: ads_api
    customer_id: 123-456-7890
    login_customer_id: 999-888-7777
    client_id: test-client.apps.googleusercontent.com
    client_secret: \${GOOGLE_CLIENT_SECRET}
    refresh_token: \${GOOGLE_REFRESH_TOKEN}
    developer_token: \${GOOGLE_ADS_DEVELOPER_TOKEN}
    default_country: US
    batch_size: ${batch}
    job_members: ${batch}
    endpoints:
      token_url: ${FAKE_TOKEN_URL}
      ads_rest: ${FAKE_REST}
      ads_api: { host: localhost, port: ${fake.port}, ca_file: ${tls.certFile} }`,
  });
  const writeConfig = shop.write;
  const prefix = `gads-api-${randomBytes(4).toString('hex')}`;
  const store = new StateStore(redis, prefix);

  const run = (full = false, state = store): Promise<AudienceResult[]> =>
    syncOnce(shop.config, registry, {
      store: state,
      log,
      full,
      retry: { attempts: 4, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 100 },
    });

  /**
   * Google processes every job between runs; runs until nothing is pending or left to send. One job runs on
   * a list at a time, so a list with several batches takes a run per batch.
   */
  const settle = (state = store) =>
    syncUntilSettled(() => run(false, state), { most: 30, between: () => fake.finishJobs() });

  /** Per audience, per customer id, the identifiers Google should hold, straight from the source. */
  const expected = async (): Promise<Map<string, Map<string, string[]>>> => {
    const prepared = await prepareSync(shop.config, registry);
    const config = googleAdsConfigSchema.parse(prepared.config.destinations.google);
    const members = identifiedMembers(prepared.config, prepared.segmented, (person) =>
      googleAdsConnector.identify(person, config),
    );
    const keyOf = (
      u: ReturnType<typeof userData>['user_identifiers'] extends (infer U)[] | null | undefined ? U : never,
    ) =>
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
      });
    return new Map(
      [...members].map(([name, byId]) => [
        name,
        new Map([...byId].map(([id, slots]) => [id, (userData(slots).user_identifiers ?? []).map(keyOf)])),
      ]),
    );
  };

  const assertExact = async () => {
    const want = await expected();
    for (const [name, byCustomer] of want) {
      const identifiers = new Set([...byCustomer.values()].flat());
      const list = fake.listNamed(name);
      if (identifiers.size === 0 && !list) continue;
      expect([...(list?.identifiers ?? [])].sort(), name).toEqual([...identifiers].sort());
    }
    return want;
  };

  return { shop, prefix, run, settle, expected, assertExact, editCustomers: shop.editCustomers, writeConfig };
}

const inAny = (want: Map<string, Map<string, string[]>>, customer: string) =>
  [...want.values()].some((m) => m.has(customer));

describe('sync to Google Customer Match through the Google Ads API (gRPC)', () => {
  it('keeps every list exactly its segment across changes, a concurrent modification and a full resync', async () => {
    const { run, settle, assertExact, editCustomers, writeConfig } = await setup();

    // First run: lists created, one job per batch, pending until Google has processed them.
    const first = await run();
    expect(first.every((r) => r.error === undefined)).toBe(true);
    const uploaded = first.reduce((a, r) => a + r.added, 0);
    expect(uploaded).toBeGreaterThan(BATCH);
    expect(first.reduce((a, r) => a + r.inFlight, 0)).toBeGreaterThan(0);
    expect([...fake.lists.values()].every((l) => l.identifiers.size === 0)).toBe(true);
    const lists = fake.lists.size;
    expect(lists).toBe(first.filter((r) => r.plannedAdds > 0 || r.remoteId).length);
    const adds = fake.callsOf('AddOfflineUserDataJobOperations');
    expect(adds.every((c) => c.request.operations.length <= BATCH && c.request.enable_partial_failure)).toBe(
      true,
    );
    expect(adds.reduce((a, c) => a + c.request.operations.length, 0)).toBe(uploaded);
    expect(
      fake
        .callsOf('CreateOfflineUserDataJob')
        .every(
          (c) =>
            c.request.job.type === 'CUSTOMER_MATCH_USER_LIST' &&
            c.request.job.customer_match_user_list_metadata.consent?.ad_user_data === 'GRANTED',
        ),
    ).toBe(true);
    expect(fake.calls.every((c) => c.headers['login-customer-id'] === '9998887777')).toBe(true);

    await settle();
    const before = await assertExact();
    expect(fake.lists.size).toBe(lists); // remembered lists: never created twice

    // Half a year later: customers move between segments; some change email, some opt out.
    writeConfig('2026-07-01');
    const members = new Set([...before.values()].flatMap((m) => [...m.keys()]));
    const changedEmail: string[] = [];
    const optedOut: string[] = [];
    editCustomers((cells, header) => {
      const id = cells[header.indexOf('customer_id')]!;
      if (!members.has(id)) return;
      if (changedEmail.length < 5 && cells[header.indexOf('email')]) {
        cells[header.indexOf('email')] = `changed-${id}@example.org`;
        changedEmail.push(id);
      } else if (optedOut.length < 5) {
        cells[header.indexOf('opted_out')] = 'true';
        optedOut.push(id);
      }
    });
    expect(changedEmail).toHaveLength(5);
    expect(optedOut).toHaveLength(5);
    // Google is busy with the list: the first run of a job is refused once and retried by the core.
    fake.failNext('RunOfflineUserDataJob', {
      code: grpc.status.ABORTED,
      errors: [
        {
          error_code: { database_error: 'CONCURRENT_MODIFICATION' },
          message: 'Multiple requests were attempting to modify the same resource at once.',
        },
      ],
    });
    const callsBefore = fake.calls.length;
    const changeRuns = await settle();
    expect(changeRuns.flat().reduce((a, r) => a + r.removed, 0)).toBeGreaterThan(0);
    expect(fake.failures.get('RunOfflineUserDataJob')).toEqual([]);
    // Adds and removes never share a job (the fake refuses that with CONFLICTING_OPERATION).
    const jobsNow = [...fake.jobs.values()];
    expect(jobsNow.some((j) => j.operations.some((o) => o.remove))).toBe(true);
    expect(
      jobsNow.every((j) => !(j.operations.some((o) => o.remove) && j.operations.some((o) => o.create))),
    ).toBe(true);
    expect(fake.calls.length).toBeGreaterThan(callsBefore);
    const after = await assertExact();
    for (const id of optedOut) expect(inAny(after, id), id).toBe(false);
    const held = [...fake.lists.values()].flatMap((l) => [...l.identifiers]);
    for (const id of changedEmail)
      if (inAny(after, id))
        expect(held).toEqual(expect.arrayContaining([...after.values()].find((m) => m.has(id))!.get(id)!));
    expect(fake.lists.size).toBe(lists);

    // Someone edited a list by hand; a full resync replaces each list in one job starting with remove_all.
    const edited = [...fake.lists.values()].find((l) => l.identifiers.size > 0)!;
    edited.identifiers.add('email:0000000000000000000000000000000000000000000000000000000000000000');
    const jobsBefore = new Set(fake.jobs.keys());
    const full = await run(true);
    expect(full.every((r) => r.error === undefined)).toBe(true);
    const replaceJobs = [...fake.jobs.values()].filter((j) => !jobsBefore.has(j.resourceName));
    expect(replaceJobs.length).toBe(full.filter((r) => r.remoteId).length);
    for (const job of replaceJobs) {
      expect(job.operations[0]).toEqual({ remove_all: true });
      expect(job.operations.slice(1).every((o) => o.create)).toBe(true);
    }
    await settle();
    await assertExact();
    expect(fake.lists.size).toBe(lists);
  });
});

describe('sync through the Google Ads API after the state is lost (issue 14, case 2)', () => {
  it('replaces each list with a remove_all job, never adding on top, and notices another setup by its epoch', async () => {
    const { shop, prefix, run, settle, expected, assertExact, editCustomers } = await setup();
    await settle();
    await assertExact();
    const lists = fake.lists.size;

    // Redis loses everything, then a third of the customers opt out.
    await loseState(redis, prefix);
    editCustomers((cells, header, r) => {
      if (r % 3 === 0) cells[header.indexOf('opted_out')] = 'true';
    });
    const want = await expected();

    const jobsBefore = new Set(fake.jobs.keys());
    const lost = await run();
    expect(lost.filter((r) => r.error)).toEqual([]);
    for (const r of lost) expect(r.replaced, r.audience).toMatch(/no record of it/);
    // One job per list, starting with remove_all: nothing is added on top of what the list holds.
    const jobs = [...fake.jobs.values()].filter((j) => !jobsBefore.has(j.resourceName));
    expect(jobs).toHaveLength(lists);
    for (const job of jobs) {
      expect(job.operations[0]).toEqual({ remove_all: true });
      expect(job.operations.slice(1).every((o) => o.create)).toBe(true);
    }
    expect(fake.lists.size).toBe(lists);
    await settle();
    expect((await assertExact()).size).toBe(want.size);

    // The state is whole again: the next run sends nothing.
    const calls = fake.calls.length;
    const again = await run();
    expect(again.filter((r) => r.error || r.replaced)).toEqual([]);
    expect(fake.calls.slice(calls)).toEqual([]);

    // A second setup (its own Redis prefix) syncs the same account from a stale export in which more
    // customers opted out: it finds the lists by name and replaces them with its own segments.
    const customers = path.join(shop.dir, 'shop', 'customers.csv');
    const current = readFileSync(customers, 'utf8');
    editCustomers((cells, header, r) => {
      if (r % 3 === 1) cells[header.indexOf('opted_out')] = 'true';
    });
    const other = new StateStore(redis, `${prefix}-other`);
    const second = await run(false, other);
    expect(second.filter((r) => r.error)).toEqual([]);
    expect(second.every((r) => r.replaced !== undefined)).toBe(true);
    await settle(other);
    await assertExact();
    writeFileSync(customers, current);

    // The first setup's next run finds its lists carrying the other setup's epoch and replaces them.
    const back = await run();
    expect(back.filter((r) => r.error)).toEqual([]);
    for (const r of back) expect(r.replaced, r.audience).toMatch(/epoch of another state/);
    await settle();
    await assertExact();
    for (const key of await redis.keys(`${prefix}-other:*`)) await redis.del(key);
  });
});

describe('Google Ads API: an access token that expires mid-run (issue 20, case 1)', () => {
  it('is renewed once and the run finishes', async () => {
    const { run, settle, assertExact } = await setup();
    nock.cleanAll();
    let issued = 0;
    const rest = serveRest(fake, () => [200, { access_token: `ya29.run-${++issued}`, expires_in: 3600 }]);
    // Google calls the first token expired right after the run's first list lookup.
    fake.refuseSearch = () => {
      fake.expiredTokens.add('ya29.run-1');
      return undefined;
    };
    const first = await run();
    expect(first.filter((r) => r.error)).toEqual([]);
    expect(rest.tokenRequests).toHaveLength(2);
    expect(fake.calls.some((c) => c.headers.authorization === 'Bearer ya29.run-1')).toBe(true);
    expect(fake.calls.at(-1)!.headers.authorization).toBe('Bearer ya29.run-2');
    fake.refuseSearch = undefined;
    await settle();
    await assertExact();
  });
});

describe('Google Ads API: a list whose job is still running (issue 20, case 2)', () => {
  it('waits for it as pending work: no job runs beside it, none is left unrun, and every list ends exact', async () => {
    const { run, settle, assertExact, editCustomers } = await setup(1000);
    const first = await run();
    expect(first.filter((r) => r.error)).toEqual([]);
    const running = [...fake.jobs.values()].filter((j) => j.status === 'RUNNING');
    expect(running.length).toBe(fake.lists.size);

    // While Google still processes those jobs, a third of the customers opt out and others change email.
    editCustomers((cells, header, r) => {
      if (r % 3 === 0) cells[header.indexOf('opted_out')] = 'true';
      else if (r % 5 === 0) cells[header.indexOf('email')] = `new-${r}@example.org`;
    });
    const jobsBefore = fake.jobs.size;
    const second = await run();
    expect(second.filter((r) => r.error)).toEqual([]);
    expect(second.reduce((n, r) => n + r.plannedRemoves, 0)).toBeGreaterThan(0);
    // Nothing was started beside a running job; what was sent waits for it, as pending work.
    expect(fake.refusedRuns).toEqual([]);
    for (const list of fake.lists.values())
      expect(
        [...fake.jobs.values()].filter((j) => j.userList === list.resourceName && j.status === 'RUNNING'),
        list.name,
      ).toHaveLength(1);
    expect(second.every((r) => r.inFlight > 0)).toBe(true);
    const waiting = fake.jobs.size - jobsBefore;
    expect(waiting).toBeGreaterThan(0);

    // Google is still busy: a run now sends nothing and creates no job.
    const calls = fake.calls.length;
    const third = await run();
    expect(third.filter((r) => r.error)).toEqual([]);
    expect(fake.jobs.size).toBe(jobsBefore + waiting);
    expect(fake.calls.slice(calls).map((c) => c.method)).toEqual([]);

    // Once Google is done, later runs start each waiting job in turn; every list ends exact.
    await settle();
    await assertExact();
    expect(fake.refusedRuns).toEqual([]);
    expect([...fake.jobs.values()].filter((j) => j.status !== 'SUCCESS')).toEqual([]);
  });
});

/** Batch size for the cut-off test: several jobs per list, so a list's first job can succeed before one is cut. */
const MIDBATCH = 10;

describe('Google Ads API: a job cut off in the middle of a batch (issue 14)', () => {
  it('leaves that batch uncounted, and the next runs make every list exact', async () => {
    // The gRPC fake cuts a job off on every attempt: an addOperations call takes half of its operations and
    // the connection drops, or a job is started and the connection drops before the answer.
    const { shop, run, settle, assertExact } = await setup(MIDBATCH);
    /** Members in jobs made whole (no operations cut off; a cut start leaves a whole job), per list and kind. */
    const started = (before: ReadonlySet<string>, kind: 'create' | 'remove') => {
      const out = new Map<string, number>();
      for (const job of fake.jobs.values()) {
        if (before.has(job.resourceName)) continue;
        if (fake.cutOff.some((c) => c.job === job.resourceName && c.method !== 'RunOfflineUserDataJob'))
          continue;
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

    // First run: 'Slipping away' loses the connection in the middle of adding operations to each job after
    // its first; 'RFM: At Risk' right after starting its first job (Google started it; the answer was lost):
    // that job is whole, so it counts, and a later poll finds it started.
    const jobsBefore = new Set(fake.jobs.keys());
    const addOps = cutAfterFirst('AddOfflineUserDataJobOperations', 'Slipping away');
    let runCut = false;
    fake.cutMidBatch = (call) =>
      addOps(call) ||
      (call.method === 'RunOfflineUserDataJob' && call.list === 'RFM: At Risk' && !runCut && (runCut = true));
    const first = await run();
    expect(errors(first)).toEqual(['Slipping away']);
    for (const r of first.filter((x) => x.error)) expect(r.error).toMatch(/UNAVAILABLE|Connection dropped/);
    expect(new Set(fake.cutOff.map((c) => c.method))).toEqual(
      new Set(['AddOfflineUserDataJobOperations', 'RunOfflineUserDataJob']),
    );
    const added = started(jobsBefore, 'create');
    for (const r of first) expect(r.added, r.audience).toBe(added.get(r.audience) ?? 0);
    for (const r of first.filter((x) => x.error)) {
      expect(r.added, r.audience).toBe(MIDBATCH);
      expect(r.failed, r.audience).toBe(r.plannedAdds - MIDBATCH);
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
      third.filter((r) => r.plannedRemoves > MIDBATCH).map((r) => r.audience),
    );
    const removed = started(removalsBefore, 'remove');
    for (const r of third) expect(r.removed, r.audience).toBe(removed.get(r.audience) ?? 0);

    fake.cutMidBatch = undefined;
    await settle();
    await assertExact();
  });
});
