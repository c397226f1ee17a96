import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { identify as fileIdentify } from '../../connectors/file/index.js';
import { identify as googleIdentify } from '../../connectors/google-ads/identifiers.js';
import { identify as metaIdentify } from '../../connectors/meta/identifiers.js';
import { SKIP_REASONS, type Person } from '../../src/identify/types.js';
import { tempDir } from '../helpers.js';
import { planSkips } from '../sync/harness.js';

const NO_COUNTRY =
  "invalid phone (no country code: set the destination's default_country or map a country column)";

/** Each connector with a phone slot, with no default country where the setting is optional. */
const connectors: [string, (person: Person) => unknown][] = [
  ['file (default_country US)', (p) => fileIdentify(p, { default_country: 'US' })],
  ['google_ads', (p) => googleIdentify(p, {})],
  ['meta', (p) => metaIdentify(p, { schema: ['PHONE'] })],
];

describe('a phone written without its country code', () => {
  it('is a listed skip reason (it is counted like the others)', () => {
    expect(SKIP_REASONS).toContain(NO_COUNTRY);
  });

  it.each(connectors)('%s: says to set default_country or map a country column', (_, identify) => {
    // A British mobile number in national form: not a US number, and no country to read it with.
    expect(identify({ phone: '07911 123456' })).toEqual({ skip: NO_COUNTRY });
  });

  it.each(connectors)(
    '%s: is a plain invalid phone when the person has a country or the number a +',
    (_, identify) => {
      expect(identify({ phone: '07911 12', country: 'GB' })).toEqual({ skip: 'invalid phone' });
      expect(identify({ phone: '+44 7911 12' })).toEqual({ skip: 'invalid phone' });
      // Too short to be anyone's number, whatever the country.
      expect(identify({ phone: '12' })).toEqual({ skip: 'invalid phone' });
    },
  );

  it.each(connectors)('%s: reads the same number once the country is known', (_, identify) => {
    expect(identify({ phone: '07911 123456', country: 'GB' })).toHaveProperty('slots');
  });
});

describe("a connector's own skip reasons", () => {
  it('are counted the same inline and in worker threads (the built CLI), each under its own words', () => {
    const dir = tempDir('audience-sync-reasons-');
    // By hand: c1 has a name and nothing else (Google: an incomplete address); c2 an external id of 40
    // characters and nothing else (Meta: too long for its slot); c3 only an email already hashed
    // (Mailchimp needs the address itself); c4 an email everyone takes.
    const hashed = createHash('sha256').update('c3@example.com').digest('hex');
    writeFileSync(
      path.join(dir, 'customers.csv'),
      [
        'customer_id,email,first_name,last_name,external_id,segment',
        'c1,,Jane,Doe,,Champions',
        `c2,,,,${'x'.repeat(40)},Champions`,
        `c3,${hashed},,,,Champions`,
        'c4,c4@example.com,,,,Champions',
      ].join('\n') + '\n',
    );
    writeFileSync(
      path.join(dir, 'audience-sync.yaml'),
      `source: { type: csv, path: customers.csv }
audiences:
  per_segment: false
  list:
    - { name: Champions, segments: [Champions] }
destinations:
  google:
    type: google_ads
    customer_id: 123-456-7890
    client_id: test-client.apps.googleusercontent.com
    client_secret: \${R_SECRET}
    refresh_token: \${R_REFRESH}
    identifiers: [email, address]
  meta:
    type: meta
    ad_account_id: act_1234567890
    access_token: \${R_META}
    schema: [EXTERN_ID, EMAIL]
  mail:
    type: mailchimp
    api_key: \${R_MAILCHIMP}
    list_id: r3a50n5
sync: { redis_prefix: reasons-${randomBytes(4).toString('hex')} }
`,
    );
    const secrets = {
      R_SECRET: 'client-secret',
      R_REFRESH: '1//refresh',
      R_META: 'EAAB-reasons-token-0123456789',
      R_MAILCHIMP: '0123456789abcdef0123456789abcdef-us7',
    };
    const want = {
      google: { 'incomplete address': 1, 'no usable identifier': 1 },
      meta: { 'identifier too long': 1, 'no usable identifier': 1 },
      mail: { 'hashed email': 1, 'no usable identifier': 2 },
    };
    expect(planSkips(dir, 2, secrets)).toEqual(want);
    expect(planSkips(dir, 0, secrets)).toEqual(want);
  });
});
