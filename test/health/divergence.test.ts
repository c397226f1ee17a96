import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { FakeMailchimp } from '../../connectors/mailchimp/fixtures/fake.js';
import { mailchimpConnector } from '../../connectors/mailchimp/index.js';
import { FakeGraph } from '../../connectors/meta/fixtures/fake-graph.js';
import { metaConnector } from '../../connectors/meta/index.js';
import { loadConfig } from '../../src/config/load.js';
import { audienceHealth, readDestination } from '../../src/health/audience.js';
import { divergenceOf } from '../../src/health/divergence.js';
import { foldKey, listReadings } from '../../src/health/readings.js';
import { audienceHealthSchema, type AudienceHealth } from '../../src/health/schema.js';
import { createLogger } from '../../src/log.js';
import { StateStore } from '../../src/record/store.js';
import { destinationsOf } from '../../src/sync/prepare.js';
import { cli } from '../sync/harness.js';
import { runAsWorker, scoresShop } from './shop.js';

/**
 * Divergence against Meta at the wire (the Graph fake through nock): Meta's approximate count lags behind
 * an upload, settles at 60 % matched, then drops by half and comes back. Readings are taken at set times
 * (two days ago onwards) so that "longer than Meta's hour" does not depend on the machine's speed.
 */

const TOKEN = 'EAAB-health-token-5566778899';
const redis = new Redis(inject('redisUrl'));
const log = createLogger({ level: 'silent', json: true });
const registry = { meta: metaConnector };
const MIN = 60_000;

beforeAll(() => (process.env.META_HEALTH_TOKEN = TOKEN));
afterAll(() => {
  delete process.env.META_HEALTH_TOKEN;
  redis.disconnect();
});
beforeEach(() => nock.disableNetConnect());
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

function metaShop() {
  return scoresShop(
    210,
    `  meta:
    type: meta
    ad_account_id: act_1234567890
    access_token: \${META_HEALTH_TOKEN}
    schema: [EMAIL]
    default_country: US
    throttle_wait_seconds: 0.05`,
    'health: { band: 0.2 }',
  );
}

/** Every value health returns passes its own schema, through JSON as the API sends it. */
function checked(h: AudienceHealth): AudienceHealth {
  return audienceHealthSchema.parse(JSON.parse(JSON.stringify(h)));
}

describe('divergence', () => {
  it('is raised when Meta’s size stays out of the band longer than its hour, and cleared when it comes back', async () => {
    const shop = metaShop();
    const fake = new FakeGraph('https://graph.facebook.com', 'v25.0', '1234567890', TOKEN);
    const store = new StateStore(redis, shop.prefix);
    const t0 = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 2 * 86_400_000);
    const at = (minutes: number) => new Date(t0.getTime() + minutes * MIN);

    await runAsWorker(redis, shop.config, registry, store, log, t0);
    const n = shop.expected.get('Champions')!; // counted from the rows, by hand
    expect(n).toBeGreaterThan(40);
    const [audience] = fake.byName('Champions');
    expect(audience!.identifiers.size).toBe(n);

    const { config, dir } = loadConfig(shop.config);
    const [destination] = destinationsOf(config, registry);
    const health = async (minutes: number) =>
      checked(
        await audienceHealth(redis, shop.queuePrefix, config, 'meta', 'Champions', { now: at(minutes) }),
      );
    const read = async (minutes: number, count: number) => {
      audience!.approximate_count_lower_bound = count;
      audience!.approximate_count_upper_bound = count < 0 ? -1 : Math.round(count * 1.1);
      const client = destination!.connector.create(destination!.config, {
        destination: 'meta',
        baseDir: dir,
        log,
      });
      try {
        await readDestination(redis, shop.queuePrefix, config, store, destination!, client, () =>
          at(minutes),
        );
      } finally {
        await client.close?.();
      }
      return health(minutes);
    };

    // Right after the run Meta has not counted the audience: its size is unknown, not 0.
    let h = await health(0);
    expect(h.expected).toBe(n);
    expect(h.confirmed).toBe(n);
    expect(h.platform).toMatchObject({
      by: 'run',
      size: null,
      expected: n,
      sent: n,
      confirmed: n,
      changed: true,
    });
    expect(h.divergence).toMatchObject({ state: 'unknown', divergent: false });
    expect(h.lastRun).toMatchObject({ outcome: 'completed', added: n, removed: 0, rejected: 0 });

    // Meta lags: 0 counted. Outside the band, but within Meta's hour: settling.
    h = await read(10, 0);
    expect(h.divergence).toMatchObject({ state: 'settling', divergent: false, platformSize: 0 });
    expect(h.divergence.since).toBe(at(10).toISOString());
    h = await read(50, 0);
    expect(h.divergence).toMatchObject({ state: 'settling', divergent: false });

    // Meta settles: 60 % matched. In band; that ratio is the audience's own from now on.
    const settled = Math.round(n * 0.6);
    h = await read(120, settled);
    expect(h.divergence).toMatchObject({ state: 'in_band', divergent: false, since: null });
    expect(h.divergence.baseline).toEqual({ ratio: settled / n, from: 'learned' });
    h = await read(180, settled + 2);
    expect(h.divergence.state).toBe('in_band');

    // Meta drops half the audience with nothing sent: settling for its hour, then divergent.
    const dropped = Math.round(settled / 2);
    h = await read(240, dropped);
    expect(h.divergence).toMatchObject({ state: 'settling', divergent: false });
    h = await health(270);
    expect(h.divergence.divergent).toBe(false);
    h = await read(310, dropped);
    // The band around ratio × sent, by hand: the ratio is the last settled reading in band, (settled + 2) / n.
    const centre = settled + 2;
    const slack = Math.max(centre * 0.2, 10);
    expect(h.divergence).toEqual({
      state: 'divergent',
      divergent: true,
      since: at(240).toISOString(),
      reading: at(310).toISOString(),
      expected: n,
      sent: n,
      platformSize: dropped,
      baseline: { ratio: centre / n, from: 'learned' },
      band: { low: Math.floor(centre - slack), high: Math.ceil(centre + slack) },
      share: 0.2,
      processingMinutes: 60,
    });

    // Operators see it where they look: status (the readings are in the past, so it is divergent now).
    const status = cli(['status', '--json', '--config', shop.config], shop.dir);
    expect(status.code, status.stderr).toBe(0);
    const row = JSON.parse(status.stdout).audiences.find(
      (r: { audience: string }) => r.audience === 'Champions',
    );
    expect(row).toMatchObject({
      expected: n,
      confirmed: n,
      platform_size: dropped,
      divergence: { divergent: true },
    });
    const text = cli(['status', '--config', shop.config], shop.dir);
    expect(text.stdout).toMatch(/DIVERGENT/);
    expect(text.stdout).toContain(`meta / Champions: DIVERGENT since`);
    expect(text.stdout).toContain(`the platform counts ${dropped}`);

    // Meta counts them again: back in band, the flag cleared.
    h = await read(360, settled);
    expect(h.divergence).toMatchObject({
      state: 'in_band',
      divergent: false,
      since: null,
      platformSize: settled,
    });
    expect(h.readings.map((r) => r.size)).toEqual([
      null,
      0,
      0,
      settled,
      settled + 2,
      dropped,
      dropped,
      settled,
    ]);

    // The fold health keeps between calls gives what a fold over every reading gives.
    const kept = await audienceHealth(redis, shop.queuePrefix, config, 'meta', 'Champions', { now: at(360) });
    await redis.del(foldKey(shop.queuePrefix, 'meta', 'Champions'));
    const fresh = await audienceHealth(redis, shop.queuePrefix, config, 'meta', 'Champions', {
      now: at(360),
    });
    expect(fresh.divergence).toEqual(kept.divergence);
    expect(kept.divergence).toEqual(
      divergenceOf((await listReadings(redis, shop.queuePrefix, 'meta', 'Champions')).readings, {
        share: 0.2,
        processingMinutes: 60,
        now: at(360),
      }),
    );
  });

  it('is raised at the first reading on Mailchimp, which counts a tag at once, and cleared when the tag is whole again', async () => {
    const KEY = '0123456789abcdef0123456789abcdef-us9';
    process.env.MAILCHIMP_HEALTH_KEY = KEY;
    const registry = { mailchimp: mailchimpConnector };
    const shop = scoresShop(
      150,
      '  mc: { type: mailchimp, api_key: "${MAILCHIMP_HEALTH_KEY}", list_id: a1b2c3d4e5, missing_members: upsert }',
    );
    const fake = new FakeMailchimp(KEY, 'a1b2c3d4e5').install();
    const store = new StateStore(redis, shop.prefix);
    const t0 = new Date(Date.now() - 86_400_000);
    await runAsWorker(redis, shop.config, registry, store, log, t0);
    const n = shop.expected.get('Champions')!;
    const { config, dir } = loadConfig(shop.config);
    const [destination] = destinationsOf(config, registry);
    const read = async (minutes: number) => {
      const client = destination!.connector.create(destination!.config, {
        destination: 'mc',
        baseDir: dir,
        log,
      });
      try {
        await readDestination(redis, shop.queuePrefix, config, store, destination!, client, () =>
          at(minutes),
        );
      } finally {
        await client.close?.();
      }
      return checked(
        await audienceHealth(redis, shop.queuePrefix, config, 'mc', 'Champions', { now: at(minutes) }),
      );
    };
    const at = (minutes: number) => new Date(t0.getTime() + minutes * MIN);

    // Right after the run the tag counts every member: in band at ratio 1, learned at once.
    let h = checked(await audienceHealth(redis, shop.queuePrefix, config, 'mc', 'Champions', { now: t0 }));
    expect(h.platform).toMatchObject({ size: n, expected: n, sent: n, confirmed: n });
    expect(h.divergence).toMatchObject({
      state: 'in_band',
      baseline: { ratio: 1, from: 'learned' },
      processingMinutes: 0,
    });

    // A third of the tagged contacts are archived on Mailchimp's side: divergent at the next reading.
    const tag = [...fake.segments].find(([, s]) => s.name === 'Champions')![0];
    const tagged = [...fake.contacts.values()].filter((c) => c.tags.has(tag));
    expect(tagged).toHaveLength(n);
    const gone = tagged.slice(0, Math.ceil(n / 3));
    for (const c of gone) c.tags.delete(tag);
    h = await read(30);
    expect(h.divergence).toMatchObject({
      state: 'divergent',
      divergent: true,
      since: at(30).toISOString(),
      platformSize: n - gone.length,
      sent: n,
      band: { low: Math.floor(n - Math.max(n * 0.2, 10)), high: Math.ceil(n + Math.max(n * 0.2, 10)) },
    });

    for (const c of gone) c.tags.add(tag);
    h = await read(60);
    expect(h.divergence).toMatchObject({ state: 'in_band', divergent: false, since: null, platformSize: n });
    delete process.env.MAILCHIMP_HEALTH_KEY;
  });
});
