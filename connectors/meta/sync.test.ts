import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { StateStore } from '../../src/record/store.js';
import { prepareSync } from '../../src/sync/prepare.js';
import type { AudienceResult } from '../../src/sync/run.js';
import { identifiedMembers, loseState, makeShop, syncOnce } from '../../test/sync/harness.js';
import type { MetaConfig } from './config.js';
import { FakeGraph, rowIdentifiers, type RecordedRequest } from './fixtures/fake-graph.js';
import { toRow } from './identifiers.js';
import { metaConnector } from './index.js';

/**
 * The core and the Meta connector against a fake Graph API (nock, through the real SDK and fetch): after
 * each run, every audience on the fake holds exactly the identifiers of its segment's members. Last, a batch
 * counts only when Meta holds all of it (issue 14): the fake cuts uploads off mid-way.
 */

const TOKEN = 'EAAB-e2e-token-9876543210';
const redis = new Redis(inject('redisUrl'));
const log = createLogger({ level: 'silent', json: true });
const registry = { meta: metaConnector };

beforeAll(() => {
  process.env.META_E2E_ACCESS_TOKEN = TOKEN;
});
afterAll(() => {
  delete process.env.META_E2E_ACCESS_TOKEN;
  redis.disconnect();
});
beforeEach(() => nock.disableNetConnect());
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

async function metaShop(batch = 40) {
  const shop = await makeShop({
    customers: 400,
    sync: 'max_removal_share: 1',
    destinations: `  meta:
    type: meta
    ad_account_id: act_1234567890
    access_token: \${META_E2E_ACCESS_TOKEN}
    schema: [EMAIL, PHONE, FN, LN, ZIP, COUNTRY]
    default_country: US
    batch_size: ${batch}
    throttle_wait_seconds: 0.05`,
  });
  const { config, write } = shop;
  const store = new StateStore(redis, shop.prefix);
  const fake = new FakeGraph('https://graph.facebook.com', 'v25.0', '1234567890', TOKEN);

  const run = (full = false, state = store): Promise<AudienceResult[]> =>
    syncOnce(config, registry, {
      store: state,
      log,
      full,
      retry: { attempts: 3, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 5_000 },
    });

  /** Per audience name, the identifiers Meta should hold: computed from the source with identify + toRow. */
  const expected = async (): Promise<Map<string, Set<string>>> => {
    const prepared = await prepareSync(config, registry);
    const meta = prepared.destinations[0]!.config as MetaConfig;
    const members = identifiedMembers(prepared.config, prepared.segmented, (person) =>
      metaConnector.identify(person, meta),
    );
    return new Map(
      [...members].map(([name, byId]) => [
        name,
        new Set(
          [...byId.values()].flatMap((slots) => rowIdentifiers(meta.schema, toRow(slots, meta.schema))),
        ),
      ]),
    );
  };

  const onMeta = (): Map<string, Set<string>> =>
    new Map(
      [...fake.audiences.values()].filter((a) => !a.deleted).map((a) => [a.name, new Set(a.identifiers)]),
    );

  return { shop, store, write, fake, run, expected, onMeta, editCustomers: shop.editCustomers };
}

const sum = (results: AudienceResult[], field: 'added' | 'removed' | 'members') =>
  results.reduce((a, r) => a + r[field], 0);
const rowsOf = (r: RecordedRequest) => (r.body as { payload: { data: unknown[] } }).payload.data.length;

describe('sync to Meta (fake Graph API)', () => {
  it('keeps every audience exact through adds, removals, a phone change, an opt-out, throttling and a full resync', async () => {
    const { write, fake, run, expected, onMeta, editCustomers } = await metaShop();

    // First run: every audience created (listed first), then filled in batches of at most 40 rows.
    const first = await run();
    expect(first.filter((r) => r.error)).toEqual([]);
    expect(first).toHaveLength(13);
    let want = await expected();
    expect(onMeta()).toEqual(want);
    expect(fake.edge('customaudiences', 'POST')).toHaveLength(13);
    expect(sum(first, 'added')).toBeGreaterThan(200);
    const adds = fake.edge('users', 'POST');
    expect(adds.reduce((a, r) => a + rowsOf(r), 0)).toBe(sum(first, 'added'));
    expect(Math.max(...adds.map(rowsOf))).toBe(40);
    for (const r of fake.requests) {
      expect(r.query.access_token).toBe(TOKEN);
      expect(JSON.stringify(r.body ?? '')).not.toContain(TOKEN);
    }
    expect(first.every((r) => r.platform === undefined || r.platform.received === r.added)).toBe(true);

    // Half a year later customers move between segments; some change phone number, some opt out.
    write('2026-07-01');
    editCustomers((cells, header, r) => {
      if (r > 20) return;
      if (r % 2) cells[header.indexOf('phone')] = `+1 212 555 01${String(r).padStart(2, '0')}`;
      else cells[header.indexOf('opted_out')] = 'true';
    });
    const before = fake.requests.length;
    const had = new Set([...want.values()].flatMap((ids) => [...ids]));
    const second = await run();
    expect(second.filter((r) => r.error)).toEqual([]);
    want = await expected();
    expect(onMeta()).toEqual(want);
    // Old phone numbers (changed, or of customers who opted out or left) are gone from Meta.
    const now = new Set([...want.values()].flatMap((ids) => [...ids]));
    expect([...had].filter((id) => id.startsWith('PHONE=') && !now.has(id)).length).toBeGreaterThan(3);
    const sent = fake.requests.slice(before);
    expect(sent.filter((r) => r.method === 'DELETE').length).toBeGreaterThan(0);
    expect(sent.filter((r) => r.path.endsWith('/users')).every((r) => rowsOf(r) <= 40)).toBe(true);
    expect(sum(second, 'removed')).toBeGreaterThan(10);
    // The remembered audiences were read back, not looked up or created again.
    expect(sent.filter((r) => r.path.endsWith('/customaudiences'))).toEqual([]);

    // A throttled batch (613 once): the run waits, sends it again, and sends every other batch once.
    editCustomers((cells, header, r) => {
      if (r >= 21 && r <= 39 && r % 2)
        cells[header.indexOf('phone')] = `+1 646 555 01${String(r).padStart(2, '0')}`;
    });
    write('2026-09-01');
    fake.failNext(
      (r) => r.path.endsWith('/users'),
      400,
      FakeGraph.error(613, 'Calls to this api have exceeded the rate limit.'),
    );
    const mark = fake.requests.length;
    const third = await run();
    expect(third.filter((r) => r.error)).toEqual([]);
    expect(onMeta()).toEqual(await expected());
    const uploads = fake.requests.slice(mark).filter((r) => r.path.endsWith('/users'));
    const bodies = uploads.map((r) => `${r.method} ${r.path} ${JSON.stringify(r.body)}`);
    expect(bodies.length).toBeGreaterThan(1);
    expect(bodies[1]).toBe(bodies[0]); // the throttled batch, once more
    expect(new Set(bodies.slice(1)).size).toBe(bodies.length - 1);

    // Something changed the audience behind our back: a full resync replaces it with exactly the segment.
    const slipping = fake.byName('Slipping away')[0]!;
    slipping.identifiers.add(`EMAIL=${'ab'.repeat(32)}`);
    const full = await run(true);
    expect(full.filter((r) => r.error)).toEqual([]);
    expect(onMeta()).toEqual(await expected());
    expect(sum(full, 'added')).toBe(sum(full, 'members'));
    const sessions = fake
      .edge('usersreplace')
      .map((r) => (r.body as { session: Record<string, unknown> }).session);
    expect(sessions.length).toBeGreaterThanOrEqual(13);
    expect(sessions.filter((s) => s.last_batch_flag === true)).toHaveLength(13);
    expect(sessions.every((s) => typeof s.session_id === 'number' && (s.batch_seq as number) >= 1)).toBe(
      true,
    );
  });
});

describe('sync to Meta after the state is lost (issue 14, case 2)', () => {
  it('replaces each audience with exactly its segment, never adding on top, and notices another setup by its epoch', async () => {
    const { shop, fake, run, expected, onMeta, editCustomers } = await metaShop();
    const first = await run();
    expect(first.filter((r) => r.error)).toEqual([]);
    expect(onMeta()).toEqual(await expected());

    // Redis loses everything (flushed, a restart without persistence), then a third of the customers opt out.
    await loseState(redis, shop.prefix);
    editCustomers((cells, header, r) => {
      if (r % 3 === 0) cells[header.indexOf('opted_out')] = 'true';
    });
    const want = await expected();
    const stale = [...onMeta()].reduce(
      (a, [name, ids]) => a + [...ids].filter((id) => !want.get(name)?.has(id)).length,
      0,
    );
    expect(stale).toBeGreaterThan(50);

    const mark = fake.requests.length;
    const lost = await run();
    expect(lost.filter((r) => r.error)).toEqual([]);
    expect(onMeta()).toEqual(want);
    const sent = fake.requests.slice(mark);
    // Replaced through /usersreplace, one session per audience; never members added on top with /users.
    expect(sent.filter((r) => r.path.endsWith('/users'))).toEqual([]);
    const lastBatches = sent.filter(
      (r) =>
        r.path.endsWith('/usersreplace') &&
        (r.body as { session: { last_batch_flag: boolean } }).session.last_batch_flag,
    );
    expect(lastBatches).toHaveLength(13);
    for (const r of lost) expect(r.replaced, r.audience).toMatch(/no record of it/);
    // The audiences found by name: none created again.
    expect(sent.filter((r) => r.method === 'POST' && r.path.endsWith('/customaudiences'))).toEqual([]);
    expect(fake.audiences.size).toBe(13);

    // The state is whole again: the next run sends nothing.
    const quiet = fake.requests.length;
    const again = await run();
    expect(again.filter((r) => r.error || r.replaced)).toEqual([]);
    expect(fake.requests.slice(quiet).filter((r) => r.method !== 'GET')).toEqual([]);

    // A second setup (its own Redis prefix) syncs the same ad account from a stale export in which more
    // customers opted out: it finds the audiences by name and replaces them with its own segments.
    const customers = path.join(shop.dir, 'shop', 'customers.csv');
    const current = readFileSync(customers, 'utf8');
    editCustomers((cells, header, r) => {
      if (r % 3 === 1) cells[header.indexOf('opted_out')] = 'true';
    });
    const other = new StateStore(redis, `${shop.prefix}-other`);
    const second = await run(false, other);
    expect(second.filter((r) => r.error)).toEqual([]);
    expect(second.every((r) => r.replaced !== undefined)).toBe(true);
    expect(onMeta()).toEqual(await expected());
    writeFileSync(customers, current);

    // The first setup's next run finds its audiences carrying the other setup's epoch and replaces them.
    const replaceMark = fake.edge('usersreplace').length;
    const back = await run();
    expect(back.filter((r) => r.error)).toEqual([]);
    for (const r of back) expect(r.replaced, r.audience).toMatch(/epoch of another state/);
    expect(onMeta()).toEqual(want);
    expect(fake.edge('usersreplace').length).toBeGreaterThan(replaceMark);
    for (const key of await redis.keys(`${shop.prefix}-other:*`)) await redis.del(key);
  });
});

describe('Meta: a connection dropped in the middle of a batch (issue 14)', () => {
  it('leaves that batch uncounted, and the next run makes every audience exact', async () => {
    // The fake applies half of a `/users` request, then drops the connection, on every attempt.
    const { shop, fake, run, expected, onMeta } = await metaShop(10);
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
