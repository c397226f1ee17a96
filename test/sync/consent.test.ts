import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { connectors } from '../../connectors/index.js';
import { FakeDataManager } from '../../connectors/google-ads/fixtures/fake-datamanager.js';
import { FakeMailchimp, md5 } from '../../connectors/mailchimp/fixtures/fake.js';
import { FakeGraph } from '../../connectors/meta/fixtures/fake-graph.js';
import { lastRuns, recordRun, runRecord } from '../../jobs/history.js';
import { exitCodeOf } from '../../app/cli/sync.js';
import { loadConfig } from '../../src/config/load.js';
import { ExitCode } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { StateStore } from '../../src/record/store.js';
import type { AudienceResult } from '../../src/sync/run.js';
import { tempDir } from '../helpers.js';
import { planSkips, syncOnce, syncUntilSettled } from './harness.js';

/**
 * Consent per customer and per purpose, against each platform at the wire (Google's Data Manager API,
 * Meta's Graph API, Mailchimp) and real Redis: a hand-made customer file whose consent columns keep
 * people out of one platform and not another, then consents withdrawn. What each platform should hold,
 * and each run's counts per reason, are worked out by hand from the table below.
 */

const DM = 'https://datamanager.consent.test';
const TOKEN_URL = 'https://oauth.consent.test/token';
const META_TOKEN = 'EAAB-consent-token-0123456789';
const MC_KEY = '0123456789abcdef0123456789abcdef-us7';
const LIST = 'c0n5en7';
const AUDIENCE = 'Champions';

const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
const redis = new Redis(inject('redisUrl'));
const log = createLogger({ level: 'silent', json: true });

/**
 * Everyone is a Champion. Google reads ad_user_data from `ads_ok` and ad_personalization from `perso_ok`,
 * Meta its ads consent from `meta_ok`, Mailchimp its marketing-email consent from `mail_ok`; granted,
 * true, yes, y and 1 grant. c7 has a phone and no email: Mailchimp cannot reach them.
 */
const HEADER = 'customer_id,email,phone,segment,ads_ok,perso_ok,meta_ok,mail_ok';
const ROWS: Record<string, string> = {
  c1: 'c1@example.com,,Champions,yes,yes,yes,yes',
  c2: 'c2@example.com,,Champions,no,yes,yes,yes',
  c3: 'c3@example.com,,Champions,yes,no,no,yes',
  c4: 'c4@example.com,,Champions,yes,yes,,no',
  c5: 'c5@example.com,,Champions,true,1,y,granted',
  c6: 'c6@example.com,,Champions,yes,yes,yes,no',
  c7: ',+1 415 555 0107,Champions,yes,yes,yes,yes',
  c8: 'c8@example.com,,Champions,yes,,yes,yes',
};

function writeCustomers(dir: string, rows: Record<string, string>): void {
  const lines = Object.entries(rows).map(([id, rest]) => `${id},${rest}`);
  writeFileSync(path.join(dir, 'customers.csv'), [HEADER, ...lines].join('\n') + '\n');
}

function writeConfig(dir: string, prefix: string, google = ''): void {
  writeFileSync(
    path.join(dir, 'audience-sync.yaml'),
    `source: { type: csv, path: customers.csv, attributes: [ads_ok, perso_ok, meta_ok, mail_ok] }
audiences:
  per_segment: false
  list:
    - { name: ${AUDIENCE}, segments: [Champions] }
destinations:
  google:
    type: google_ads
    customer_id: 123-456-7890
    client_id: test-client.apps.googleusercontent.com
    client_secret: \${GOOGLE_CLIENT_SECRET}
    refresh_token: \${GOOGLE_REFRESH_TOKEN}
    identifiers: [email, phone]
    endpoints: { data_manager: ${DM}, token_url: ${TOKEN_URL} }
${google || '    eea: true\n    consent: { ad_user_data: { column: ads_ok }, ad_personalization: { column: perso_ok } }\n'}  meta:
    type: meta
    ad_account_id: act_1234567890
    access_token: \${CONSENT_META_TOKEN}
    schema: [EMAIL, PHONE]
    eea: true
    consent: { ads: { column: meta_ok } }
  mail:
    type: mailchimp
    api_key: \${CONSENT_MAILCHIMP_KEY}
    list_id: ${LIST}
    missing_members: upsert
    status_if_new: subscribed
    batch_poll_seconds: 0.01
    consent: { email_marketing: { column: mail_ok } }
sync: { redis_prefix: ${prefix}, lease_seconds: 2, max_removal_share: 1 }
`,
  );
}

beforeAll(() => {
  process.env.GOOGLE_CLIENT_SECRET = 'client-secret';
  process.env.GOOGLE_REFRESH_TOKEN = '1//refresh';
  process.env.CONSENT_META_TOKEN = META_TOKEN;
  process.env.CONSENT_MAILCHIMP_KEY = MC_KEY;
});
afterAll(() => redis.disconnect());
beforeEach(() => nock.disableNetConnect());
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

async function setup(googleSettings?: string) {
  const dir = tempDir('audience-sync-consent-');
  const prefix = `consent-${randomBytes(4).toString('hex')}`;
  writeCustomers(dir, ROWS);
  writeConfig(dir, prefix, googleSettings);
  const dm = new FakeDataManager(DM, TOKEN_URL, '1234567890');
  dm.install();
  const graph = new FakeGraph('https://graph.facebook.com', undefined, '1234567890', META_TOKEN);
  const mailchimp = new FakeMailchimp(MC_KEY, LIST).install();
  const store = new StateStore(redis, prefix);
  const config = path.join(dir, 'audience-sync.yaml');
  const run = (destination: string) =>
    syncOnce(config, connectors, {
      store,
      log,
      destination,
      retry: { attempts: 2, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 100 },
    });
  /** Google processes later: runs until it has taken everything. */
  const google = async (): Promise<AudienceResult> => {
    const runs = await syncUntilSettled(() => run('google'), { most: 6 });
    return runs[0]![0]!;
  };
  const one = async (destination: string): Promise<AudienceResult> => {
    const [result] = await run(destination);
    expect(result!.error, destination).toBeUndefined();
    return result!;
  };
  return { dir, dm, graph, mailchimp, run, google, one };
}

/** What each platform holds, as its identifiers: Google `email:<sha>`, Meta `EMAIL=<sha>`, Mailchimp emails. */
function holdings(s: Awaited<ReturnType<typeof setup>>) {
  return {
    google: [...(s.dm.list(AUDIENCE) ?? [])].sort(),
    meta: [...(s.graph.byName(AUDIENCE)[0]?.identifiers ?? [])].sort(),
    mail: [...s.mailchimp.tagged(AUDIENCE)].sort(),
  };
}

const googleOf = (ids: string[]) =>
  ids
    .map((id) => (id === 'c7' ? `phone:${sha('+14155550107')}` : `email:${sha(`${id}@example.com`)}`))
    .sort();
const metaOf = (ids: string[]) =>
  ids.map((id) => (id === 'c7' ? `PHONE=${sha('14155550107')}` : `EMAIL=${sha(`${id}@example.com`)}`)).sort();
const mailOf = (ids: string[]) => ids.map((id) => `${id}@example.com`).sort();

describe('consent per customer and per purpose', () => {
  it('keeps people out per platform and purpose, counts each reason, and removes those who withdraw', async () => {
    const s = await setup();

    // By hand from ROWS. Google: c2 lacks ad_user_data; c3 and c8 ad_personalization.
    // Meta: c3 and c4 lack the ads consent. Mailchimp: c4 and c6 lack it; c7 has no email.
    const google = await s.google();
    expect(google.skipped).toEqual({
      'consent not granted (ad_user_data)': 1,
      'consent not granted (ad_personalization)': 2,
    });
    expect(google.members).toBe(5);
    const meta = await s.one('meta');
    expect(meta.skipped).toEqual({ 'consent not granted (ads)': 2 });
    expect(meta.members).toBe(6);
    const mail = await s.one('mail');
    expect(mail.skipped).toEqual({ 'consent not granted (email marketing)': 2, 'no usable identifier': 1 });
    expect(mail.members).toBe(5);
    expect(holdings(s)).toEqual({
      google: googleOf(['c1', 'c4', 'c5', 'c6', 'c7']),
      meta: metaOf(['c1', 'c2', 'c5', 'c6', 'c7', 'c8']),
      mail: mailOf(['c1', 'c2', 'c3', 'c5', 'c8']),
    });
    // Left out for consent, like an opt-out, is in no share of unusable customers: the run is not partial.
    const { config } = loadConfig(path.join(s.dir, 'audience-sync.yaml'));
    expect(exitCodeOf([google, meta], config, log)).toBe(ExitCode.ok);

    // Mailchimp adds contacts (as subscribers here): never someone without consent to marketing e-mail.
    expect(s.mailchimp.contacts.has(md5('c4@example.com'))).toBe(false);
    expect(s.mailchimp.contacts.has(md5('c6@example.com'))).toBe(false);
    const sentToMailchimp = JSON.stringify(s.mailchimp.requests.map((r) => r.body));
    expect(sentToMailchimp).not.toContain('c4@example.com');
    expect(sentToMailchimp).not.toContain('c6@example.com');
    // Google's Data Manager API got each member's own EU consent with it.
    expect(s.dm.ingestedConsent).toEqual({ member: 5, request: 0 });

    // c1 withdraws ads and marketing-email consent, c5 Google's ad_user_data: each leaves those platforms only.
    writeCustomers(s.dir, {
      ...ROWS,
      c1: 'c1@example.com,,Champions,yes,yes,no,no',
      c5: 'c5@example.com,,Champions,no,1,y,granted',
    });
    const google2 = await s.google();
    expect(google2.skipped).toEqual({
      'consent not granted (ad_user_data)': 2,
      'consent not granted (ad_personalization)': 2,
    });
    expect([google2.plannedRemoves, google2.plannedAdds]).toEqual([1, 0]);
    const meta2 = await s.one('meta');
    expect(meta2.skipped).toEqual({ 'consent not granted (ads)': 3 });
    expect([meta2.removed, meta2.added]).toEqual([1, 0]);
    const mail2 = await s.one('mail');
    expect(mail2.skipped).toEqual({ 'consent not granted (email marketing)': 3, 'no usable identifier': 1 });
    expect([mail2.removed, mail2.added]).toEqual([1, 0]);
    expect(holdings(s)).toEqual({
      google: googleOf(['c1', 'c4', 'c6', 'c7']),
      meta: metaOf(['c2', 'c5', 'c6', 'c7', 'c8']),
      mail: mailOf(['c2', 'c3', 'c5', 'c8']),
    });
    expect(s.dm.ingestedConsent).toEqual({ member: 5, request: 0 });
  });

  it('gives the same reasons when customers are identified in worker threads (the built CLI)', async () => {
    const s = await setup();
    const want = {
      google: { 'consent not granted (ad_user_data)': 1, 'consent not granted (ad_personalization)': 2 },
      meta: { 'consent not granted (ads)': 2 },
      mail: { 'consent not granted (email marketing)': 2, 'no usable identifier': 1 },
    };
    expect(planSkips(s.dir, 2)).toEqual(want);
    expect(planSkips(s.dir, 0)).toEqual(want);
  });

  it('run history keeps the reasons per purpose, and still reads runs recorded with the old reason', async () => {
    const prefix = `{consent-history-${randomBytes(4).toString('hex')}}`;
    const meta = { run: 'r1', at: new Date(0).toISOString(), reason: 'manual' as const, full: false };
    const result = (skipped: Record<string, number>): AudienceResult => ({
      destination: 'google',
      audience: AUDIENCE,
      segmentSize: 8,
      members: 5,
      plannedAdds: 5,
      plannedRemoves: 0,
      added: 5,
      removed: 0,
      unchanged: 0,
      waiting: 0,
      pending: 0,
      skipped,
      rejected: 0,
      rejectedReasons: {},
      failed: 0,
      inFlight: 0,
      durationMs: 1,
    });
    const old = { 'consent not granted': 3 };
    const perPurpose = {
      'consent not granted (ad_user_data)': 1,
      'consent not granted (ad_personalization)': 2,
    };
    await recordRun(redis, prefix, [runRecord(result(old), meta)]);
    await recordRun(redis, prefix, [runRecord(result(perPurpose), { ...meta, run: 'r2' })]);
    const [newer, older] = await lastRuns(redis, prefix, 'google', AUDIENCE, 2);
    expect(newer?.outcome === 'completed' && newer.skipped).toEqual(perPurpose);
    expect(older?.outcome === 'completed' && older.skipped).toEqual(old);
    await redis.del(`${prefix}:history:google:${AUDIENCE}`);
  });

  it('refuses to upload to an EEA account whose consent is not written out, before anything is sent', async () => {
    const s = await setup('    eea: true\n');
    const [result] = await s.run('google');
    expect(result!.error).toContain(
      'destinations.google.consent.ad_user_data and destinations.google.consent.ad_personalization must be set ' +
        "for an EEA account (eea: true): 'granted' if every customer consented, or { column: <attribute> }",
    );
    expect(result!.errorKind).toBe('permanent');
    expect([result!.added, result!.removed, s.dm.created, s.dm.batches.length]).toEqual([0, 0, 0, 0]);
    // The other destinations, their consent written out, go on.
    expect((await s.one('meta')).added).toBe(6);
  });

  it('refuses a config whose consent reads a column the source does not keep, naming the setting and the fix', async () => {
    const s = await setup(
      '    consent: { ad_user_data: { column: ads_okay }, ad_personalization: { column: perso_ok } }\n',
    );
    // A misspelt column would withdraw everyone's consent, and the next run would empty the audience.
    await expect(s.run('google')).rejects.toThrow(
      "destinations.google.consent.ad_user_data reads column 'ads_okay', which is not among the source's attributes (ads_ok, perso_ok, meta_ok, mail_ok)",
    );
    expect([s.dm.created, s.dm.batches.length]).toEqual([0, 0]);
  });
});
