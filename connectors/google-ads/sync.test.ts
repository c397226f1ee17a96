import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
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
import { googleAdsConfigSchema } from './config.js';
import { FakeDataManager, identifierKey } from './fixtures/fake-datamanager.js';
import { userIdentifiers } from './identifiers.js';
import { googleAdsConnector } from './index.js';

/**
 * End to end: the example shop synced to Google Customer Match lists through the Data Manager API, at
 * the wire (a nock fake that processes uploads later), over runs with adds, removals, a changed email,
 * an opt-out, consent withdrawn through a column, and a full resync. Each list must end up holding
 * exactly the identifiers of its segment's members. Last, a batch counts only when Google holds all of it
 * (issue 14): the fake cuts requests off mid-way.
 */

const DM = 'https://datamanager.fake';
const TOKEN_URL = 'https://oauth.fake/token';
const registry = { google_ads: googleAdsConnector };
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

async function setup(batch = 40) {
  const shop = await makeShop({
    customers: 300,
    sync: 'max_removal_share: 1',
    attributes: ['favorite_brand', 'ads_consent'],
    destinations: `  google:
    type: google_ads
    customer_id: 123-456-7890
    client_id: test-client.apps.googleusercontent.com
    client_secret: \${GOOGLE_CLIENT_SECRET}
    refresh_token: \${GOOGLE_REFRESH_TOKEN}
    default_country: US
    batch_size: ${batch}
    consent: { ad_user_data: { column: ads_consent }, ad_personalization: granted }
    endpoints: { data_manager: ${DM}, token_url: ${TOKEN_URL} }`,
  });
  // Consent for ad use, per customer, in a column of the customer file.
  const customersFile = path.join(shop.dir, 'shop', 'customers.csv');
  const rows = readFileSync(customersFile, 'utf8').trimEnd().split('\n');
  writeFileSync(
    customersFile,
    rows.map((r, i) => `${r},${i === 0 ? 'ads_consent' : 'yes'}`).join('\n') + '\n',
  );
  const writeConfig = shop.write;
  const fake = new FakeDataManager(DM, TOKEN_URL, '1234567890');
  fake.install();
  const prefix = `gads-${randomBytes(4).toString('hex')}`;
  const store = new StateStore(redis, prefix);

  const run = (full = false): Promise<AudienceResult[]> =>
    syncOnce(shop.config, registry, {
      store,
      log,
      full,
      retry: { attempts: 3, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 100 },
    });

  /** Runs until Google has processed everything and nothing is left to send. */
  const settle = () => syncUntilSettled(run, { most: 8 });

  /** Per audience, per customer id, the identifiers Google should hold, straight from the source. */
  const expected = async (): Promise<Map<string, Map<string, string[]>>> => {
    const prepared = await prepareSync(shop.config, registry);
    const config = googleAdsConfigSchema.parse(prepared.config.destinations.google);
    const members = identifiedMembers(prepared.config, prepared.segmented, (person) =>
      googleAdsConnector.identify(person, config),
    );
    return new Map(
      [...members].map(([name, byId]) => [
        name,
        new Map([...byId].map(([id, slots]) => [id, userIdentifiers(slots).map(identifierKey)])),
      ]),
    );
  };

  const assertExact = async () => {
    const want = await expected();
    for (const [name, byCustomer] of want) {
      const identifiers = new Set([...byCustomer.values()].flat());
      if (identifiers.size === 0 && !fake.list(name)) continue;
      expect([...(fake.list(name) ?? [])].sort(), name).toEqual([...identifiers].sort());
    }
    return want;
  };

  return {
    shop,
    prefix,
    fake,
    run,
    settle,
    expected,
    assertExact,
    editCustomers: shop.editCustomers,
    writeConfig,
  };
}

const inAny = (want: Map<string, Map<string, string[]>>, customer: string) =>
  [...want.values()].some((m) => m.has(customer));

describe('sync to Google Customer Match through the Data Manager API', () => {
  it('keeps every list exactly its segment across changes, consent withdrawal and a full resync', async () => {
    const { fake, run, settle, assertExact, editCustomers, writeConfig, shop } = await setup();

    // First run: lists created, members uploaded and pending until Google has processed them.
    const first = await run();
    expect(first.every((r) => r.error === undefined)).toBe(true);
    const uploaded = first.reduce((a, r) => a + r.added, 0);
    expect(uploaded).toBeGreaterThan(0);
    expect(first.reduce((a, r) => a + r.inFlight, 0)).toBeGreaterThan(0);
    expect([...fake.lists.values()].every((l) => l.identifiers.size === 0)).toBe(true);
    const created = fake.created;
    await settle();
    const before = await assertExact();
    expect(fake.created).toBe(created); // remembered lists: never created twice
    expect(fake.batches.every((b) => b.size <= 40)).toBe(true);
    expect(fake.batches.filter((b) => b.op === 'ingest').reduce((a, b) => a + b.size, 0)).toBe(uploaded);

    // Half a year later: customers move between segments (adds and removals); some change email,
    // some opt out, one withdraws consent for ad use; one customer's orders vanish.
    writeConfig('2026-07-01');
    const member = (want: Map<string, Map<string, string[]>>) =>
      [...want.values()].flatMap((m) => [...m.keys()]);
    const members = new Set(member(before));
    const changedEmail: string[] = [];
    const optedOut: string[] = [];
    let withdrew: string | undefined;
    editCustomers((cells, header) => {
      const id = cells[header.indexOf('customer_id')]!;
      if (!members.has(id)) return;
      if (changedEmail.length < 5 && cells[header.indexOf('email')]) {
        cells[header.indexOf('email')] = `changed-${id}@example.org`;
        changedEmail.push(id);
      } else if (optedOut.length < 5) {
        cells[header.indexOf('opted_out')] = 'true';
        optedOut.push(id);
      } else if (!withdrew) {
        cells[header.indexOf('ads_consent')] = 'no';
        withdrew = id;
      }
    });
    expect(changedEmail).toHaveLength(5);
    expect(optedOut).toHaveLength(5);
    expect(withdrew).toBeDefined();
    const orders = path.join(shop.dir, 'shop', 'orders.csv');
    const orderRows = readFileSync(orders, 'utf8').split('\n');
    const gone = [...members].find((id) => ![...changedEmail, ...optedOut, withdrew].includes(id))!;
    writeFileSync(orders, orderRows.filter((l, i) => i === 0 || !l.startsWith(`${gone},`)).join('\n'));

    const changeRuns = await settle();
    const removed = changeRuns.flat().reduce((a, r) => a + r.removed, 0);
    expect(removed).toBeGreaterThan(0);
    const after = await assertExact();
    for (const id of [...optedOut, withdrew!, gone]) expect(inAny(after, id), id).toBe(false);
    const newEmails = [...fake.lists.values()].flatMap((l) => [...l.identifiers]);
    for (const id of changedEmail)
      if (inAny(after, id)) {
        const ids = [...after.values()].find((m) => m.has(id))!.get(id)!;
        expect(newEmails).toEqual(expect.arrayContaining(ids));
      }
    expect(fake.created).toBe(created);

    // A full resync re-sends every member, and the lists stay exact.
    const ingestedBefore = fake.batches.filter((b) => b.op === 'ingest').reduce((a, b) => a + b.size, 0);
    const full = await run(true);
    expect(full.every((r) => r.error === undefined)).toBe(true);
    const resent =
      fake.batches.filter((b) => b.op === 'ingest').reduce((a, b) => a + b.size, 0) - ingestedBefore;
    const want = [...after.values()].reduce((a, m) => a + m.size, 0);
    expect(resent).toBe(want);
    await settle();
    await assertExact();
    expect(fake.created).toBe(created);
  });
});

describe('sync to the Data Manager API after the state is lost (issue 14, case 2)', () => {
  it('empties each list with removeAll, adds nobody until Google has processed it, then adds its segment', async () => {
    const { fake, prefix, run, settle, assertExact, expected, editCustomers } = await setup();
    await settle();
    const before = await assertExact();
    const lists = fake.lists.size;

    // Redis loses everything, then a third of the customers opt out.
    await loseState(redis, prefix);
    editCustomers((cells, header, r) => {
      if (r % 3 === 0) cells[header.indexOf('opted_out')] = 'true';
    });
    const want = await expected();
    const members = (m: Map<string, Map<string, string[]>>) =>
      [...m.values()].reduce((a, b) => a + b.size, 0);
    expect(members(before) - members(want)).toBeGreaterThan(30);

    const mark = fake.batches.length;
    const seen = new Map([...fake.historyByList()].map(([list, events]) => [list, events.length]));
    const lost = await run();
    expect(lost.filter((r) => r.error)).toEqual([]);
    for (const r of lost) expect(r.replaced, r.audience).toMatch(/no record of it/);
    // Every list is emptied with one removeAll, and nobody is added on top of what it holds.
    expect(fake.batches.slice(mark).map((b) => b.op)).toEqual(Array(lists).fill('removeAll'));
    expect(lost.reduce((a, r) => a + r.added, 0)).toBe(0);

    // Google processes the removeAll on a later poll; only then are the members added, once.
    const runs = await settle();
    await assertExact();
    expect(runs.flat().every((r) => r.error === undefined)).toBe(true);
    const after = fake.batches.slice(mark);
    expect(after.filter((b) => b.op === 'removeAll')).toHaveLength(lists);
    expect(after.filter((b) => b.op === 'ingest').reduce((a, b) => a + b.size, 0)).toBe(members(want));
    for (const [list, all] of fake.historyByList()) {
      const events = all.slice(seen.get(list) ?? 0);
      const emptied = events.findIndex((e) => e === 'applied removeAll');
      expect(emptied, list).toBeGreaterThanOrEqual(0);
      expect(
        events.slice(0, emptied).filter((e) => e === 'sent ingest'),
        list,
      ).toEqual([]);
    }
    expect(fake.created).toBe(lists);

    // The state is whole and the lists carry its epoch: the next run sends nothing.
    const quiet = fake.batches.length;
    const again = await run();
    expect(again.filter((r) => r.error || r.replaced)).toEqual([]);
    expect(fake.batches.length).toBe(quiet);
    expect(
      [...fake.lists.values()].every((l) => /\(audience-sync epoch \w+\)$/.test(l.description ?? '')),
    ).toBe(true);

    // Another setup marked one list as its own: this one notices and replaces that list, and only that one.
    const [id, taken] = [...fake.lists].find(([, l]) => l.identifiers.size > 0)!;
    taken.description =
      'Customer Match list kept equal to a segment by audience-sync (audience-sync epoch 999999999999)';
    const noticed = await run();
    expect(noticed.filter((r) => r.replaced).map((r) => [r.audience, r.replaced])).toEqual([
      [taken.displayName, expect.stringMatching(/epoch of another state \(999999999999;/)],
    ]);
    expect(fake.batches.slice(quiet)).toEqual([{ op: 'removeAll', size: 0, list: taken.displayName }]);
    await settle();
    await assertExact();
    expect(fake.lists.get(id)!.description).not.toMatch(/999999999999/);
  });
});

describe('Google Data Manager: a connection dropped in the middle of a batch (issue 14)', () => {
  it('leaves that batch uncounted, and the next runs make every list exact', async () => {
    // The fake takes half of an ingest or remove request, then the connection drops before it answers, on
    // every attempt: the audience reports failed, nothing of that batch pending.
    const { fake, shop, run, settle, assertExact } = await setup(10);
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
    await settle();
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
    await settle();
    await assertExact();
  });
});
