import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { FakeDataManager } from '../../connectors/google-ads/fixtures/fake-datamanager.js';
import { googleAdsConnector } from '../../connectors/google-ads/index.js';
import { FakeGraph } from '../../connectors/meta/fixtures/fake-graph.js';
import { metaConnector } from '../../connectors/meta/index.js';
import type { ConnectorDefinition } from '../../src/connector.js';
import { loadConfig } from '../../src/config/load.js';
import { audienceHealth, readDestination } from '../../src/health/audience.js';
import { listReadings, readingsKey, recordReadings } from '../../src/health/readings.js';
import { audienceHealthSchema, type Reading } from '../../src/health/schema.js';
import { createLogger } from '../../src/log.js';
import { encodeRecords, type StateRecord } from '../../src/record/records.js';
import { StateStore } from '../../src/record/store.js';
import { destinationsOf } from '../../src/sync/prepare.js';
import { cli } from '../sync/harness.js';
import { runAsWorker, scoresShop } from './shop.js';

const redis = new Redis(inject('redisUrl'));
const log = createLogger({ level: 'silent', json: true });
const META_TOKEN = 'EAAB-readings-token-1122334455';

beforeAll(() => {
  process.env.META_READINGS_TOKEN = META_TOKEN;
  process.env.GOOGLE_CLIENT_SECRET = 'client-secret-health';
  process.env.GOOGLE_REFRESH_TOKEN = '1//refresh-health-token';
});
afterAll(() => {
  delete process.env.META_READINGS_TOKEN;
  redis.disconnect();
});
beforeEach(() => nock.disableNetConnect());
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

async function readNow(configFile: string, registry: Record<string, ConnectorDefinition>, store: StateStore) {
  const { config, dir } = loadConfig(configFile);
  const [destination] = destinationsOf(config, registry);
  const client = destination!.connector.create(destination!.config, {
    destination: destination!.name,
    baseDir: dir,
    log,
  });
  try {
    return await readDestination(redis, `{${config.sync.redis_prefix}}`, config, store, destination!, client);
  } finally {
    await client.close?.();
  }
}

describe('readings', () => {
  it('of a size Google hides (under 1,000) stay unknown, never 0', async () => {
    const DM = 'https://datamanager.health.fake';
    const TOKEN_URL = 'https://oauth.health.fake/token';
    const registry = { google_ads: googleAdsConnector };
    const shop = scoresShop(
      150,
      `  google:
    type: google_ads
    customer_id: 123-456-7890
    client_id: test-client.apps.googleusercontent.com
    client_secret: \${GOOGLE_CLIENT_SECRET}
    refresh_token: \${GOOGLE_REFRESH_TOKEN}
    default_country: US
    consent: { ad_user_data: granted, ad_personalization: granted }
    endpoints: { data_manager: ${DM}, token_url: ${TOKEN_URL} }`,
    );
    const fake = new FakeDataManager(DM, TOKEN_URL, '1234567890');
    fake.install();
    fake.hideSizesBelow = 1000;
    const store = new StateStore(redis, shop.prefix);
    // Three runs: upload, then polls until Google has applied it (the fake processes on the second poll).
    for (let k = 0; k < 3; k++) await runAsWorker(redis, shop.config, registry, store, log, new Date());
    await readNow(shop.config, registry, store);
    const { config } = loadConfig(shop.config);
    const n = shop.expected.get('Champions')!;
    const h = audienceHealthSchema.parse(
      await audienceHealth(redis, shop.queuePrefix, config, 'google', 'Champions'),
    );
    expect(h.expected).toBe(n);
    expect(h.readings.map((r) => [r.by, r.size])).toEqual([
      ['run', null],
      ['run', null],
      ['run', null],
      ['schedule', null],
    ]);
    expect(h.confirmed).toBe(n);
    expect(h.platform!.warnings.join(' ')).toMatch(/not sized/);
    expect(h.divergence).toMatchObject({ state: 'unknown', divergent: false, platformSize: null });

    // The same list once Google shows its size: the reading has it (the fake holds the emails sent).
    fake.hideSizesBelow = 0;
    const [shown] = await readNow(shop.config, registry, store);
    expect(shown).toMatchObject({ size: n, expected: n, confirmed: n });
    const after = await audienceHealth(redis, shop.queuePrefix, config, 'google', 'Champions');
    expect(after.platform!.size).toBe(n);
    // No match rate from this fake and less than Google's day since the upload: no baseline yet.
    expect(after.divergence).toMatchObject({
      state: 'settling',
      divergent: false,
      baseline: { ratio: null, from: 'none' },
      processingMinutes: 24 * 60,
    });
  });

  it('are kept for health.keep_days and at most health.keep_samples, oldest first out', async () => {
    const prefix = `{health-retention-${randomBytes(4).toString('hex')}}`;
    const t0 = Date.UTC(2026, 10, 1);
    const reading = (k: number): Reading => ({
      at: new Date(t0 + k * 6 * 3_600_000).toISOString(),
      by: 'schedule',
      size: 100 + k,
      counts: 'people',
      matchRate: null,
      expected: 200,
      sent: 200,
      confirmed: 200,
      changed: false,
      warnings: [],
    });
    // 20 readings 6 hours apart, one write each, as workers make them; 3 days kept.
    for (let k = 0; k < 20; k++)
      await recordReadings(redis, prefix, [{ destination: 'd', audience: 'a', reading: reading(k) }], {
        keepDays: 3,
        keepSamples: 100,
      });
    // By hand: the last is at 114 h; 3 days before it is 42 h: readings 7 (42 h) to 19.
    let kept = await listReadings(redis, prefix, 'd', 'a', { limit: 1000 });
    expect(kept.readings.map((r) => r.size)).toEqual([...Array(13).keys()].map((k) => 107 + k));
    const ttl = await redis.pttl(readingsKey(prefix, 'd', 'a'));
    expect(ttl).toBeGreaterThan(2 * 86_400_000);
    expect(ttl).toBeLessThanOrEqual(3 * 86_400_000);

    // A cap of 5 readings keeps the newest 5.
    await recordReadings(redis, prefix, [{ destination: 'd', audience: 'a', reading: reading(20) }], {
      keepDays: 3,
      keepSamples: 5,
    });
    kept = await listReadings(redis, prefix, 'd', 'a', { limit: 1000 });
    expect(kept.readings.map((r) => r.size)).toEqual([116, 117, 118, 119, 120]);

    // Pages: two of 2, then the last one, in time order; and a window by time.
    const first = await listReadings(redis, prefix, 'd', 'a', { limit: 2 });
    const second = await listReadings(redis, prefix, 'd', 'a', { limit: 2, cursor: first.next! });
    const third = await listReadings(redis, prefix, 'd', 'a', { limit: 2, cursor: second.next! });
    expect([first, second, third].map((p) => p.readings.map((r) => r.size))).toEqual([
      [116, 117],
      [118, 119],
      [120],
    ]);
    expect(third.next).toBeUndefined();
    const window = await listReadings(redis, prefix, 'd', 'a', {
      from: reading(17).at,
      to: reading(18).at,
    });
    expect(window.readings.map((r) => r.size)).toEqual([117, 118]);
  });

  it('keep no email, phone or token, even when Meta echoes them; a state from before the counts is counted', async () => {
    const registry = { meta: metaConnector };
    const shop = scoresShop(
      90,
      `  meta:
    type: meta
    ad_account_id: act_1234567890
    access_token: \${META_READINGS_TOKEN}
    schema: [EMAIL]
    default_country: US
    throttle_wait_seconds: 0.05`,
    );
    const fake = new FakeGraph('https://graph.facebook.com', 'v25.0', '1234567890', META_TOKEN);
    fake.echoCredentials = true;
    const store = new StateStore(redis, shop.prefix);
    await runAsWorker(redis, shop.config, registry, store, log, new Date());
    const audience = fake.byName('Champions')[0]!;
    audience.approximate_count_lower_bound = 20;
    audience.delivery_status = {
      code: 300,
      description: 'Audience too small; contact buyer3@example.com or +1 415 555 0100',
    };
    // Meta answers the read of one audience with an error that repeats an email, a phone and the token.
    const slipping = fake.byName('Slipping')[0]!;
    fake.failNext(
      (r) => r.method === 'GET' && r.path.endsWith(`/${slipping.id}`),
      400,
      FakeGraph.error(
        100,
        `Invalid parameter for buyer4@example.com (+44 20 7946 0958), token ${META_TOKEN}`,
      ),
    );
    const readings = await readNow(shop.config, registry, store);
    expect(readings).toHaveLength(2);
    expect(readings.find((r) => r.error)).toMatchObject({ size: null });
    expect(readings.find((r) => !r.error)).toMatchObject({ size: 20 });

    // The state's counts: kept by every write; one written before they existed is counted at its next run.
    const { config } = loadConfig(shop.config);
    const n = shop.expected.get('Champions')!;
    const state = store.audience('meta', 'Champions');
    expect(await state.counts()).toEqual({ confirmed: n, addPending: 0, removePending: 0, rejected: 0 });
    // Each state put back as 0.1.0 kept it before the counts existed: every record in one bucket of
    // `{tag}:b`, no generation, no shards, no counts.
    const metas = await redis.keys(`${shop.prefix}:*:meta`);
    expect(metas).toHaveLength(2);
    for (const meta of metas) {
      const base = meta.slice(0, -':meta'.length);
      const [name, destination] = await redis.hmget(meta, 'name', 'destination');
      const records: StateRecord[] = [];
      for await (const some of store.audience(destination!, name!).scan()) records.push(...some);
      for (const key of await redis.keys(`${base.slice(0, -1)}.*`)) await redis.del(key);
      await redis.hdel(meta, 'gen', 'shard_bits', 'gen_seq', 'gc_from', 'n:0', 'n:1', 'n:2', 'n:3');
      await redis.hset(meta, 'bits', 0, 'format', 3, 'members', records.length);
      if (records.length > 0) await redis.hset(`${base}:b`, '0', encodeRecords(records));
    }
    expect(await state.counts()).toBeUndefined();
    expect((await audienceHealth(redis, shop.queuePrefix, config, 'meta', 'Champions')).confirmed).toBeNull();
    await runAsWorker(redis, shop.config, registry, store, log, new Date());
    expect(await state.counts()).toEqual({ confirmed: n, addPending: 0, removePending: 0, rejected: 0 });

    const returned = JSON.stringify(
      await Promise.all(
        ['Champions', 'Slipping'].map((a) => audienceHealth(redis, shop.queuePrefix, config, 'meta', a)),
      ),
    );
    const stored = (
      await Promise.all(
        (await redis.keys(`${shop.queuePrefix}:health*`)).map(async (k) => {
          const type = await redis.type(k);
          if (type === 'zset') return (await redis.zrange(k, 0, -1)).join('\n');
          if (type === 'hash') return JSON.stringify(await redis.hgetall(k));
          return (await redis.get(k)) ?? '';
        }),
      )
    ).join('\n');
    expect(stored).toContain('[email]');
    expect((await redis.keys(`${shop.queuePrefix}:health-fold:*`)).length).toBe(2);
    expect(returned).toContain('[redacted]');
    for (const text of [returned, stored]) {
      expect(text).not.toContain('@');
      expect(text).not.toContain(META_TOKEN);
      expect(text).not.toMatch(/415 555|7946/);
      for (const email of shop.emails) expect(text).not.toContain(email);
    }
  });

  it("shows a Meta audience flagged after its run as a failed health check, in Meta's words, in health and status", async () => {
    const registry = { meta: metaConnector };
    const shop = scoresShop(
      60,
      `  meta:
    type: meta
    ad_account_id: act_1234567890
    access_token: \${META_READINGS_TOKEN}
    schema: [EMAIL]
    default_country: US
    throttle_wait_seconds: 0.05`,
    );
    const fake = new FakeGraph('https://graph.facebook.com', 'v25.0', '1234567890', META_TOKEN);
    const store = new StateStore(redis, shop.prefix);
    const { config } = loadConfig(shop.config);
    await runAsWorker(redis, shop.config, registry, store, log, new Date());
    const healthOf = (audience: string) => audienceHealth(redis, shop.queuePrefix, config, 'meta', audience);
    expect((await healthOf('Champions')).platform?.problems).toEqual([]);

    // Meta flags the audience (the restriction of September 2025), as its API shows it.
    const flagged = fake.byName('Champions')[0]!;
    flagged.operation_status = {
      code: 471,
      description:
        "The custom audience or lookalike is blocked because it suggests the use of information (e.g., health, financial) not allowed under Meta's terms, and is restricted from running ads.",
    };
    // The next run fails on it, naming the flag, before any upload; its reading shows it at once.
    const [failed] = (await runAsWorker(redis, shop.config, registry, store, log, new Date())).filter(
      (r) => r.audience === 'Champions',
    );
    expect(failed!.error).toContain('flagged by Meta (operation_status 471');
    const afterRun = (await healthOf('Champions')).platform;
    expect([afterRun?.by, afterRun?.expected, afterRun?.problems?.length]).toEqual(['run', null, 1]);
    // And so does every scheduled read after it.
    await readNow(shop.config, registry, store);
    const problems = (await healthOf('Champions')).platform?.problems;
    expect(problems).toHaveLength(1);
    expect(problems![0]).toMatch(
      /^flagged by Meta \(operation_status 471: The custom audience or lookalike is blocked/,
    );
    expect((await healthOf('Slipping')).platform?.problems).toEqual([]);

    const json = cli(['--config', shop.config, 'status', '--json'], shop.dir);
    expect(json.code, json.stderr).toBe(0);
    const rows = (
      JSON.parse(json.stdout) as { audiences: { audience: string; platform_problems: string[] }[] }
    ).audiences;
    expect(Object.fromEntries(rows.map((r) => [r.audience, r.platform_problems.length]))).toEqual({
      Champions: 1,
      Slipping: 0,
    });
    const text = cli(['--config', shop.config, 'status'], shop.dir).stdout;
    expect(text).toContain('FAILED: the platform will not serve it');
    expect(text).toContain('meta / Champions: FAILED health check: flagged by Meta (operation_status 471');
    expect(text).not.toContain('meta / Slipping: FAILED');
  });
});
