import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { fileConnector } from '../../connectors/file/index.js';
import { FakeDataManager } from '../../connectors/google-ads/fixtures/fake-datamanager.js';
import { googleAdsConnector } from '../../connectors/google-ads/index.js';
import { FakeGraph } from '../../connectors/meta/fixtures/fake-graph.js';
import { metaConnector } from '../../connectors/meta/index.js';
import type { SizeRules } from '../../src/connector.js';
import { createLogger } from '../../src/log.js';
import { saveSuppression } from '../../src/privacy/suppression.js';
import { buildSegmentMap } from '../../src/segment/maps.js';
import { segmentsSchema } from '../../src/config/schema.js';
import { StateStore } from '../../src/record/store.js';
import type { ConnectorRegistry } from '../../src/sync/prepare.js';
import type { AudienceResult } from '../../src/sync/run.js';
import { tempDir } from '../helpers.js';
import { fileAudiences, syncOnce, syncUntilSettled } from './harness.js';

/**
 * Issue 17, checks before every upload: an audience of exactly the customers marked `cohort: in` in a
 * hand-made shop (one order each, one clean email each), synced to the `file` destination declared with a
 * platform's size rules. The expected audience is computed by hand: the SHA-256 of each email in the cohort.
 */

const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.disconnect());
const log = createLogger({ level: 'silent', json: true });
const SEGMENTS = buildSegmentMap(segmentsSchema.parse({ map: 'default', actions: {} })).names;

const email = (n: number) => `c${String(n).padStart(4, '0')}@example.com`;
const line = (n: number) => `email=${createHash('sha256').update(email(n)).digest('hex')}`;
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => from + k);

/** A file destination that keeps a platform's size rules. */
const registryWith = (rules: Omit<SizeRules, 'why'>) => ({
  file: {
    ...fileConnector,
    sizeRules: () => ({ ...rules, why: 'the test platform serves an audience from 100 members' }),
  },
});

function makeShop(customers = 200) {
  const dir = tempDir('audience-sync-policy-');
  const prefix = `policy-${randomBytes(4).toString('hex')}`;
  const store = new StateStore(redis, prefix);
  writeFileSync(
    path.join(dir, 'orders.csv'),
    'customer_id,order_date,amount\n' +
      range(1, customers)
        .map((n) => `C${n},2025-${String((n % 12) + 1).padStart(2, '0')}-10,${(n % 50) + 5}`)
        .join('\n') +
      '\n',
  );
  /** The cohort, who opted out, and who withdrew consent for ad use (by customer number). */
  const people = (
    cohort: Iterable<number>,
    optedOut: Iterable<number> = [],
    withdrawn: Iterable<number> = [],
  ) => {
    const inCohort = new Set(cohort);
    const out = new Set(optedOut);
    const noConsent = new Set(withdrawn);
    writeFileSync(
      path.join(dir, 'customers.csv'),
      'customer_id,email,opted_out,cohort,ads_consent\n' +
        range(1, customers)
          .map(
            (n) =>
              `C${n},${email(n)},${out.has(n)},${inCohort.has(n) ? 'in' : 'out'},${noConsent.has(n) ? 'no' : 'yes'}`,
          )
          .join('\n') +
        '\n',
    );
  };
  /** The config, with `sync:` settings (YAML flow entries) and the audience's own `sync:` when given. */
  const config = (sync: string, audienceSync?: string, destination = '{ type: file, path: out }') =>
    writeFileSync(
      path.join(dir, 'audience-sync.yaml'),
      `source: { type: csv, path: orders.csv }
profiles: { type: csv, path: customers.csv, attributes: [cohort, ads_consent] }
scoring: { analysis_date: "2026-01-01" }
audiences:
  per_segment: false
  list:
    - name: Cohort
      segments: ${JSON.stringify(SEGMENTS)}
      where: { cohort: in }${audienceSync ? `\n      sync: ${audienceSync}` : ''}
destinations:
  local: ${destination}
sync: { redis_prefix: ${prefix}, lease_seconds: 2, max_removal_share: 1${sync ? `, ${sync}` : ''} }
`,
    );
  const run = async (registry: ConnectorRegistry, full = false): Promise<AudienceResult> => {
    const [result] = await syncOnce(path.join(dir, 'audience-sync.yaml'), registry, { store, log, full });
    return result!;
  };
  const audience = () => fileAudiences(path.join(dir, 'out')).get('Cohort') ?? new Set<string>();
  const stateCount = async () => (await store.audience('local', 'Cohort').counts())?.confirmed ?? 0;
  return { dir, prefix, store, people, config, run, audience, stateCount };
}

const lines = (ns: number[]) => new Set(ns.map(line));
const checksOf = (r: AudienceResult) => (r.policy ?? []).map((f) => [f.check, f.blocked]);

describe('min_size', () => {
  const rules = registryWith({ minMembers: 100 });

  it('warns at 99 members and sends; says nothing at 100', async () => {
    const shop = makeShop();
    shop.config('');
    shop.people(range(1, 99));
    const r = await shop.run(rules);
    expect(r.error).toBeUndefined();
    expect(checksOf(r)).toEqual([['min_size', false]]);
    expect(r.policy![0]!.message).toMatch(/would hold 99 after this run, 1 short.*sync\.min_size: warn/);
    expect(shop.audience()).toEqual(lines(range(1, 99)));

    shop.people(range(1, 100));
    const next = await shop.run(rules);
    expect(next.policy).toBeUndefined();
    expect(next.added).toBe(1);
    expect(shop.audience()).toEqual(lines(range(1, 100)));
  });

  it('block sends nothing below the minimum and leaves the state so the run that reaches it is exact', async () => {
    const shop = makeShop();
    shop.config('min_size: block');
    shop.people(range(1, 99));
    const r = await shop.run(rules);
    expect(checksOf(r)).toEqual([['min_size', true]]);
    expect(r.held).toMatch(/held below the platform's minimum: .*would hold 99.*sync\.min_size: block/);
    expect(r.error).toBe(r.held);
    expect([r.added, r.removed]).toEqual([0, 0]);
    expect(shop.audience()).toEqual(new Set());
    expect(await shop.stateCount()).toBe(0);

    // The same again: still held, still nothing sent.
    expect((await shop.run(rules)).held).toBeDefined();
    expect(shop.audience()).toEqual(new Set());

    shop.people(range(1, 100));
    const done = await shop.run(rules);
    expect(done.error).toBeUndefined();
    expect(done.policy).toBeUndefined();
    expect(done.added).toBe(100);
    expect(shop.audience()).toEqual(lines(range(1, 100)));
    expect(await shop.stateCount()).toBe(100);
  });

  it('block still sends the removals privacy requires (a suppressed member) and nothing else', async () => {
    const shop = makeShop();
    shop.config('');
    shop.people(range(1, 120));
    await shop.run(rules);
    expect(shop.audience()).toEqual(lines(range(1, 120)));

    // The cohort shrinks to 90 and someone in it asks to be forgotten: only their removal goes.
    shop.config('min_size: block');
    shop.people(range(1, 90));
    await saveSuppression(redis, shop.prefix, {
      id: 's1',
      added_at: new Date().toISOString(),
      keys: [],
      hashes: [line(5).slice('email='.length)],
    });
    const r = await shop.run(rules);
    expect(r.held).toMatch(/would hold 89/);
    expect([r.added, r.removed]).toEqual([0, 1]);
    expect(shop.audience()).toEqual(lines(range(1, 120).filter((n) => n !== 5)));

    // Lifted: the audience becomes the cohort without the suppressed member.
    shop.config('');
    const done = await shop.run(rules);
    expect(done.error).toBeUndefined();
    expect(shop.audience()).toEqual(lines(range(1, 90).filter((n) => n !== 5)));
    expect(await shop.stateCount()).toBe(89);
  });
});

describe('removal_floor', () => {
  const rules = registryWith({ removalFloor: 100 });

  it('fires only when removals take the audience from the floor or above to below it', async () => {
    const shop = makeShop();
    shop.config('');
    shop.people(range(1, 105));
    expect((await shop.run(rules)).policy).toBeUndefined();

    // 105 to 100: still at the floor.
    shop.people(range(1, 100));
    const at = await shop.run(rules);
    expect([at.removed, at.policy]).toEqual([5, undefined]);

    // 100 to 99: below it, sent (warn).
    shop.people(range(1, 99));
    const below = await shop.run(rules);
    expect(checksOf(below)).toEqual([['removal_floor', false]]);
    expect(below.policy![0]!.message).toMatch(/removing 1 members would take this audience from 100 to 99/);
    expect(below.removed).toBe(1);

    // Already below: 99 to 95 crosses nothing.
    shop.people(range(1, 95));
    const under = await shop.run(rules);
    expect([under.removed, under.policy]).toEqual([4, undefined]);
    expect(shop.audience()).toEqual(lines(range(1, 95)));
  });

  it('block holds the removals of members who left, sends the additions, and a later run is exact', async () => {
    const shop = makeShop();
    shop.config('min_size: block');
    shop.people(range(1, 102));
    await shop.run(rules);

    // Six leave, one joins: 102 to 97.
    shop.people([...range(1, 96), 150]);
    const r = await shop.run(rules);
    expect(checksOf(r)).toEqual([['removal_floor', true]]);
    expect(r.policy![0]!.message).toMatch(/from 102 to 97, below 100\. The 6 removals .* held/);
    expect([r.added, r.removed, r.error, r.held]).toEqual([1, 0, undefined, undefined]);
    expect(shop.audience()).toEqual(lines([...range(1, 102), 150]));
    expect(await shop.stateCount()).toBe(103);

    // Warn lets them go: the audience is the cohort.
    shop.config('min_size: warn');
    const done = await shop.run(rules);
    expect([done.added, done.removed]).toEqual([0, 6]);
    expect(shop.audience()).toEqual(lines([...range(1, 96), 150]));
    expect(await shop.stateCount()).toBe(97);
  });
});

describe('additive only (sync.removals: false)', () => {
  const none = registryWith({});

  it('keeps members who leave on the platform across runs; opted-out and suppressed members still go', async () => {
    const shop = makeShop();
    shop.config('', '{ removals: false }');
    shop.people(range(1, 50));
    await shop.run(none);
    expect(shop.audience()).toEqual(lines(range(1, 50)));

    // 41..50 leave the cohort; 51..55 join.
    shop.people(range(1, 55).filter((n) => n <= 40 || n > 50));
    const r = await shop.run(none);
    expect(checksOf(r)).toEqual([['additive_only', true]]);
    expect(r.policy![0]!.message).toMatch(/^10 members who left this audience stay on the platform/);
    expect([r.added, r.removed]).toEqual([5, 0]);
    expect(shop.audience()).toEqual(lines(range(1, 55)));

    // A second run: the same 10 are still held back, nothing moves.
    const again = await shop.run(none);
    expect([again.added, again.removed]).toEqual([0, 0]);
    expect(again.policy![0]!.message).toMatch(/^10 members/);
    expect(await shop.stateCount()).toBe(55);

    // One who left opts out (3 is still in the cohort, 45 is not), one is suppressed (7): they go.
    shop.people(
      range(1, 55).filter((n) => n <= 40 || n > 50),
      [3, 45],
    );
    await saveSuppression(redis, shop.prefix, {
      id: 's7',
      added_at: new Date().toISOString(),
      keys: [],
      hashes: [line(7).slice('email='.length)],
    });
    const privacy = await shop.run(none);
    expect([privacy.added, privacy.removed]).toEqual([0, 3]);
    expect(privacy.policy![0]!.message).toMatch(/^9 members/);
    const kept = range(41, 50).filter((n) => n !== 45);
    const cohort = range(1, 55).filter((n) => (n <= 40 || n > 50) && n !== 3 && n !== 7);
    expect(shop.audience()).toEqual(lines([...cohort, ...kept]));

    // A full resync (the file destination can replace) does not empty it, nor drop the kept members.
    const full = await shop.run(none, true);
    expect(full.error).toBeUndefined();
    expect(full.removed).toBe(0);
    expect(shop.audience()).toEqual(lines([...cohort, ...kept]));
    expect(await shop.stateCount()).toBe(cohort.length + kept.length);
  });

  it('the global setting applies to every audience; an audience may turn it back on', async () => {
    const shop = makeShop();
    shop.config('removals: false', '{ removals: true }');
    shop.people(range(1, 20));
    await shop.run(none);
    shop.people(range(1, 15));
    const r = await shop.run(none);
    expect([r.removed, r.policy]).toEqual([5, undefined]);
    expect(shop.audience()).toEqual(lines(range(1, 15)));

    shop.config('removals: false');
    shop.people(range(1, 10));
    const additive = await shop.run(none);
    expect([additive.removed, checksOf(additive)]).toEqual([0, [['additive_only', true]]]);
    expect(shop.audience()).toEqual(lines(range(1, 15)));
  });
});

describe('on Google Customer Match (the Data Manager API, faked at the wire)', () => {
  const DM = 'https://datamanager.fake';
  const TOKEN_URL = 'https://oauth.fake/token';
  const registry = { google_ads: googleAdsConnector };
  const google = `{ type: google_ads, customer_id: 123-456-7890, client_id: test-client.apps.googleusercontent.com,
    client_secret: "\${GOOGLE_CLIENT_SECRET}", refresh_token: "\${GOOGLE_REFRESH_TOKEN}", default_country: US,
    consent: { ad_user_data: { column: ads_consent }, ad_personalization: granted },
    endpoints: { data_manager: ${DM}, token_url: ${TOKEN_URL} } }`;
  let fake: FakeDataManager;
  beforeEach(() => {
    process.env.GOOGLE_CLIENT_SECRET = 'client-secret';
    process.env.GOOGLE_REFRESH_TOKEN = '1//refresh';
    nock.disableNetConnect();
    fake = new FakeDataManager(DM, TOKEN_URL, '1234567890');
    fake.install();
  });
  afterEach(() => {
    nock.cleanAll();
    nock.enableNetConnect();
  });
  /** The list as Google holds it, as the emails' digests. */
  const list = () => new Set([...(fake.list('Cohort') ?? [])].map((k) => k.replace(/^email:/, 'email=')));
  const settle = async (shop: ReturnType<typeof makeShop>) =>
    (await syncUntilSettled(async () => [await shop.run(registry)], { most: 6 })).flat();

  it("warns when a list would hold fewer than Google's 100 members", async () => {
    const shop = makeShop();
    shop.config('', undefined, google);
    shop.people(range(1, 99));
    const [first] = await settle(shop);
    expect(first!.policy).toEqual([
      {
        check: 'min_size',
        message: expect.stringMatching(
          /^Google serves a Customer Match list from 100 members; this audience would hold 99 after this run, 1 short/,
        ),
        blocked: false,
      },
    ]);
    expect(list()).toEqual(lines(range(1, 99)));
  });

  it('additive only: members who leave stay; a withdrawn consent (in or out of the cohort) removes them', async () => {
    const shop = makeShop();
    shop.config('removals: false', undefined, google);
    shop.people(range(1, 120));
    await settle(shop);
    expect(list()).toEqual(lines(range(1, 120)));

    // 111..120 leave the cohort; 5 (still in it) and 115 (gone from it) withdraw consent for ad use.
    shop.people(range(1, 110), [], [5, 115]);
    const runs = await settle(shop);
    expect(runs.reduce((a, r) => a + r.removed, 0)).toBe(2);
    expect(runs[0]!.policy).toEqual([
      { check: 'additive_only', message: expect.stringMatching(/^9 members who left/), blocked: true },
    ]);
    expect(list()).toEqual(lines(range(1, 120).filter((n) => n !== 5 && n !== 115)));

    // A full resync sends additions only: the kept members stay.
    const removeAll = fake.batches.filter((b) => b.op === 'removeAll').length;
    await shop.run(registry, true);
    await settle(shop);
    expect(fake.batches.filter((b) => b.op === 'removeAll').length).toBe(removeAll);
    expect(list()).toEqual(lines(range(1, 120).filter((n) => n !== 5 && n !== 115)));
  });
});

describe("on Meta (a fake Graph API): removals that would take an audience below Meta's floor", () => {
  const TOKEN = 'EAAB-policy-token-0123456789';
  const registry = { meta: metaConnector };
  const meta = `{ type: meta, ad_account_id: act_1234567890, access_token: "\${META_POLICY_TOKEN}", schema: [EMAIL],
    default_country: US }`;
  let fake: FakeGraph;
  beforeEach(() => {
    process.env.META_POLICY_TOKEN = TOKEN;
    nock.disableNetConnect();
    fake = new FakeGraph('https://graph.facebook.com', undefined, '1234567890', TOKEN);
  });
  afterEach(() => {
    nock.cleanAll();
    nock.enableNetConnect();
  });
  /** The audience as Meta holds it, as the emails' digests. */
  const audience = () =>
    new Set(
      fake.byName('Cohort').flatMap((a) => [...a.identifiers].map((i) => i.replace(/^EMAIL=/, 'email='))),
    );

  it('block holds them (nothing deleted on Meta), warn lets them go, and the audience ends exact', async () => {
    const shop = makeShop();
    shop.config('min_size: block', undefined, meta);
    shop.people(range(1, 102));
    expect((await shop.run(registry)).policy).toBeUndefined();
    expect(audience()).toEqual(lines(range(1, 102)));

    shop.people([...range(1, 96), 150]);
    const deletes = fake.edge('users', 'DELETE').length;
    const r = await shop.run(registry);
    expect(r.policy).toEqual([
      {
        check: 'removal_floor',
        message: expect.stringMatching(
          /^Meta delivers ads to a custom audience from about 100 people; removing 6 members would take this audience from 102 to 97, below 100\. The 6 removals/,
        ),
        blocked: true,
      },
    ]);
    expect(fake.edge('users', 'DELETE')).toHaveLength(deletes);
    expect(audience()).toEqual(lines([...range(1, 102), 150]));

    shop.config('', undefined, meta);
    const done = await shop.run(registry);
    expect(checksOf(done)).toEqual([['removal_floor', false]]);
    expect([done.added, done.removed]).toEqual([0, 6]);
    expect(audience()).toEqual(lines([...range(1, 96), 150]));
  });
});
