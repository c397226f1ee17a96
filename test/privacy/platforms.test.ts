import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectors } from '../../connectors/index.js';
import { FakeDataManager, identifierKey } from '../../connectors/google-ads/fixtures/fake-datamanager.js';
import { FakeMailchimp } from '../../connectors/mailchimp/fixtures/fake.js';
import { startWorker, type RunningWorker } from '../../app/worker.js';
import { createLogger } from '../../src/log.js';
import { receiptsOf } from '../../src/privacy/erasure.js';
import { privacyKeys } from '../../src/privacy/keys.js';
import { StateStore } from '../../src/record/store.js';
import type { AudienceResult } from '../../src/sync/run.js';
import { cli, makeShop, syncOnce, syncUntilSettled } from '../sync/harness.js';

/**
 * Erasure on the platforms that do more than take a removal: Google's Data Manager, which processes a
 * removal later (the receipt is `sent`, then `removed` once Google says it is done), and Mailchimp, where
 * `--mailchimp-delete` also deletes the contact. A worker in this process (so nock fakes the platforms at
 * the wire), the CLI for the operator, real Redis. Expected digests are computed here with node:crypto.
 */

const DM = 'https://datamanager.fake';
const TOKEN_URL = 'https://oauth.fake/token';
const MC_KEY = '0123456789abcdef0123456789abcdef-us9';
const LIST = 'a1b2c3d4e5';
const sha = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
const md5 = (text: string) => createHash('md5').update(text, 'utf8').digest('hex');
const redis = new Redis(inject('redisUrl'));
const logLines: string[] = [];
const log = createLogger({
  level: 'debug',
  json: true,
  stream: new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      done();
    },
  }),
});
const quickRetry = { attempts: 2, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 1000 };
const workers: RunningWorker[] = [];

beforeAll(() => {
  process.env.GOOGLE_CLIENT_SECRET = 'client-secret-erasure';
  process.env.GOOGLE_REFRESH_TOKEN = '1//refresh-erasure';
  process.env.MAILCHIMP_API_KEY = MC_KEY;
  process.env.REDIS_URL = inject('redisUrl');
  nock.disableNetConnect();
  nock.enableNetConnect(/127\.0\.0\.1|localhost/);
});
afterEach(async () => {
  for (const w of workers.splice(0)) await w.close();
  nock.cleanAll();
});
afterAll(() => {
  nock.enableNetConnect();
  redis.disconnect();
});

interface Receipt {
  destination: string;
  status: string;
  requested_at: string;
  sent_at?: string;
  removed_at?: string;
  attempts: number;
  audiences: number;
  members: number;
  contact?: { mode: string; deleted: number; absent: number; at: string };
}

/** The receipt of one destination for one erasure, as `audience-sync erasures --json` prints it. */
function printed(config: string, dir: string, id: string, destination: string): Receipt | undefined {
  const list = JSON.parse(cli(['--config', config, 'erasures', '--json'], dir).stdout) as {
    erasures: { id: string; receipts: Receipt[] }[];
  };
  return list.erasures.find((e) => e.id === id)?.receipts.find((r) => r.destination === destination);
}

/** The same, read from Redis (polled: cheaper than a CLI process per look). */
async function kept(prefix: string, id: string, destination: string): Promise<Receipt | undefined> {
  return (await receiptsOf(redis, prefix, id)).find((r) => r.destination === destination);
}

/** Polls until `check` returns a value; the deadline only catches a hang (a busy machine is slower, not wrong). */
async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 540_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Customers with a plain example.com/org email who are not opted out, from the shop's customer file. */
function people(dir: string) {
  const [header, ...lines] = readFileSync(path.join(dir, 'shop', 'customers.csv'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(','));
  const col = (n: string) => header!.indexOf(n);
  return lines
    .filter(
      (r) => /^[a-z][a-z0-9.]*@example\.(org|com)$/.test(r[col('email')]!) && r[col('opted_out')] === 'false',
    )
    .map((r) => ({ id: r[col('customer_id')]!, email: r[col('email')]! }));
}

async function shopWith(destinations: string) {
  const shop = await makeShop({
    customers: 300,
    sync: 'max_removal_share: 1, poll_seconds: 1',
    destinations,
  });
  shop.write('2026-01-01', 'privacy: { erasure_retry_seconds: 1 }');
  const store = new StateStore(redis, shop.prefix);
  const sync = (destination: string) =>
    syncUntilSettled(
      async (): Promise<AudienceResult[]> =>
        syncOnce(shop.config, connectors, { store, log, destination, retry: quickRetry }),
      { most: 8 },
    );
  return { shop, sync };
}

describe('a Google erasure settles', () => {
  it('is sent while Google processes the removal, and removed only once Google says it succeeded', async () => {
    const { shop, sync } = await shopWith(`  google:
    type: google_ads
    customer_id: 123-456-7890
    client_id: test-client.apps.googleusercontent.com
    client_secret: \${GOOGLE_CLIENT_SECRET}
    refresh_token: \${GOOGLE_REFRESH_TOKEN}
    default_country: US
    consent: { ad_user_data: granted, ad_personalization: granted }
    endpoints: { data_manager: ${DM}, token_url: ${TOKEN_URL} }`);
    const fake = new FakeDataManager(DM, TOKEN_URL, '1234567890');
    fake.install();
    await sync('google');
    const holding = (key: string) => [...fake.lists.values()].filter((l) => l.identifiers.has(key)).length;
    const person = people(shop.dir).find((p) => holding(identifierKey({ emailAddress: sha(p.email) })) > 0)!;
    expect(person).toBeDefined();
    const key = identifierKey({ emailAddress: sha(person.email) });

    // Google takes its time: every status poll says PROCESSING.
    fake.holdProcessing = true;
    workers.push(await startWorker({ configFile: shop.config, log, schedules: false }));
    const forget = cli(['--config', shop.config, 'forget', '--email', person.email], shop.dir);
    expect(forget.code, forget.stderr).toBe(0);
    const erasure = forget.stdout.trim();

    const sent = await until('the Google receipt sent', async () => {
      const r = await kept(shop.prefix, erasure, 'google');
      return r?.status === 'sent' ? r : undefined;
    });
    expect(sent.sent_at).toBeDefined();
    expect(sent.removed_at).toBeUndefined();
    expect(fake.batches.filter((b) => b.op === 'remove').length).toBeGreaterThan(0);
    // Sent, not settled: Google still holds the person, and later attempts keep the receipt at `sent`.
    expect(holding(key)).toBeGreaterThan(0);
    const attempts = sent.attempts;
    await until('another attempt', async () => {
      const r = (await kept(shop.prefix, erasure, 'google'))!;
      return r.attempts > attempts ? r : undefined;
    });
    expect((await kept(shop.prefix, erasure, 'google'))!.status).toBe('sent');

    fake.holdProcessing = false;
    const removed = await until('the Google receipt removed', async () => {
      const r = await kept(shop.prefix, erasure, 'google');
      return r?.status === 'removed' ? r : undefined;
    });
    expect(holding(key)).toBe(0);
    expect(removed.sent_at).toBe(sent.sent_at);
    expect(Date.parse(removed.removed_at!)).toBeGreaterThanOrEqual(Date.parse(sent.sent_at!));
    expect(removed.members).toBeGreaterThan(0);
    // As the operator reads it.
    expect(printed(shop.config, shop.dir, erasure, 'google')).toEqual(removed);
  });
});

describe('forget --mailchimp-delete', () => {
  it('untags, then archives or deletes the contact for good as asked; the receipt says what was done', async () => {
    const { shop, sync } = await shopWith(
      `  mc: { type: mailchimp, api_key: "\${MAILCHIMP_API_KEY}", list_id: ${LIST}, missing_members: upsert, ` +
        'batch_poll_seconds: 0.01 }',
    );
    const fake = new FakeMailchimp(MC_KEY, LIST).install();
    await sync('mc');
    const tagged = (email: string) =>
      [...fake.segments.values()].filter((s) => fake.tagged(s.name).has(email));
    const [first, second] = people(shop.dir).filter((p) => tagged(p.email).length > 0);
    expect(first && second).toBeTruthy();

    // An unknown mode is refused before anything is recorded.
    const bad = cli(
      ['--config', shop.config, 'forget', '--email', first!.email, '--mailchimp-delete', 'purge'],
      shop.dir,
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/archive, permanent/);

    workers.push(await startWorker({ configFile: shop.config, log, schedules: false }));
    const forget = (by: string[], mode: string) => {
      const r = cli(['--config', shop.config, 'forget', ...by, '--mailchimp-delete', mode], shop.dir);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim();
    };
    const permanent = forget(['--email', first!.email], 'permanent');
    const archive = forget(['--customer-id', second!.id], 'archive');
    const done = (id: string) =>
      until(`erasure ${id} removed`, async () => {
        const r = await kept(shop.prefix, id, 'mc');
        return r?.status === 'removed' ? r : undefined;
      });

    const gone = await done(permanent);
    expect(printed(shop.config, shop.dir, permanent, 'mc')).toEqual(gone);
    expect(gone.contact).toMatchObject({ mode: 'permanent', deleted: 1, absent: 0 });
    expect(fake.contacts.has(md5(first!.email))).toBe(false);
    expect(fake.forgotten.has(first!.email)).toBe(true);
    // Untagged first: every tag taken off before the contact went.
    const hash = md5(first!.email);
    const mine = fake.requests.filter(
      (r) => r.path.includes(hash) || JSON.stringify(r.body ?? '').includes(first!.email),
    );
    expect(mine.at(-1)).toMatchObject({
      method: 'POST',
      path: `/3.0/lists/${LIST}/members/${hash}/actions/delete-permanent`,
    });
    expect(mine.slice(0, -1).some((r) => r.path.endsWith('/tags') || r.path.includes('/segments/'))).toBe(
      true,
    );

    const archived = await done(archive);
    expect(archived.contact).toMatchObject({ mode: 'archive', deleted: 1, absent: 0 });
    expect(fake.contacts.get(md5(second!.email))).toMatchObject({ status: 'archived' });
    expect(tagged(second!.email)).toEqual([]);
    expect(fake.calls('DELETE', new RegExp(`/members/${md5(second!.email)}$`))).toHaveLength(1);

    // A contact already gone counts as done.
    const again = forget(['--email', first!.email], 'permanent');
    expect((await done(again)).contact).toMatchObject({ mode: 'permanent', deleted: 0, absent: 1 });

    // The choice is kept on the request, never the person's email.
    const requests = await redis.hvals(privacyKeys.erasures(shop.prefix));
    const text = [...requests, logLines.join('')].join('\n');
    expect(text).toContain('"mailchimp_delete":"permanent"');
    for (const p of [first!, second!]) expect(text).not.toContain(p.email);
  });
});
