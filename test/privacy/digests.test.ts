import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { connectors } from '../../connectors/index.js';
import { erasureDigests } from '../../src/privacy/identifiers.js';
import { Suppression } from '../../src/privacy/suppression.js';
import type { Destination } from '../../src/sync/run.js';

/** Expected digests computed here by hand (node:crypto over the normalised text), not with our identity code. */
const sha = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
const md5Slot = (text: string) => createHash('md5').update(text, 'utf8').digest('hex') + '0'.repeat(32);

function destination(name: string, raw: Record<string, unknown>): Destination {
  const connector = connectors[raw.type as string]!;
  return { name, connector, config: connector.configSchema.parse(raw) };
}

const destinations = [
  destination('local', { type: 'file', path: 'out' }),
  destination('meta', {
    type: 'meta',
    ad_account_id: 'act_1',
    access_token: 'x',
    default_country: 'US',
    schema: ['EMAIL', 'PHONE', 'FN', 'LN', 'ZIP', 'COUNTRY'],
  }),
  destination('google', {
    type: 'google_ads',
    customer_id: '123-456-7890',
    client_id: 'id.apps.googleusercontent.com',
    client_secret: 'x',
    refresh_token: 'x',
  }),
  destination('mailchimp', { type: 'mailchimp', api_key: 'x-us1', list_id: 'abc' }),
];

describe('erasure digests', () => {
  it("are each platform's normalised digests of the email and phone, and nothing that would match strangers", () => {
    const d = erasureDigests(
      { email: '  Ada.Lovelace+ads@GMail.com ', phone: '+44 20 7946 0958' },
      destinations,
    );
    expect(new Set(d.hashes)).toEqual(
      new Set([
        sha('ada.lovelace+ads@gmail.com'), // file and Meta: trimmed, lowercased
        sha('adalovelace@gmail.com'), // Google: Gmail without dots and the +tag
        md5Slot('ada.lovelace+ads@gmail.com'), // Mailchimp: the subscriber hash, padded to a slot
        sha('+442079460958'), // file and Google: E.164
        sha('442079460958'), // Meta: digits only
      ]),
    );
    expect(d.keys).toEqual([]);
    expect(d.given).toEqual(['email', 'phone']);
  });

  it('are the same whatever the consent settings: an erasure reaches people who never consented', () => {
    const withConsent = [
      destination('meta', {
        type: 'meta',
        ad_account_id: 'act_1',
        access_token: 'x',
        default_country: 'US',
        schema: ['EMAIL', 'PHONE', 'FN', 'LN', 'ZIP', 'COUNTRY'],
        consent: { ads: { column: 'ads_ok' } },
      }),
      destination('google', {
        type: 'google_ads',
        customer_id: '123-456-7890',
        client_id: 'id.apps.googleusercontent.com',
        client_secret: 'x',
        refresh_token: 'x',
        eea: true,
        consent: { ad_user_data: { column: 'ads_ok' }, ad_personalization: 'granted' },
      }),
      // An EEA audience with its consent left unset: runs are refused, erasures are not.
      destination('mailchimp', { type: 'mailchimp', api_key: 'x-us1', list_id: 'abc', eea: true }),
    ];
    const d = erasureDigests({ email: 'Ada.Lovelace+ads@GMail.com' }, withConsent);
    expect(new Set(d.hashes)).toEqual(
      new Set([
        sha('ada.lovelace+ads@gmail.com'),
        sha('adalovelace@gmail.com'),
        md5Slot('ada.lovelace+ads@gmail.com'),
      ]),
    );
  });

  it('refuse an erasure with nothing to go on, or with a value no destination can read', () => {
    expect(() => erasureDigests({}, destinations)).toThrow(/an email, a phone or a customer id/);
    expect(() => erasureDigests({ email: 'not-an-address' }, destinations)).toThrow(
      /email given is not usable/,
    );
  });

  it('match a customer by any standalone digest or by key', () => {
    const d = erasureDigests({ email: 'ada@example.org', customerId: 'C1' }, destinations);
    const list = Suppression.of([{ id: 'x', added_at: '', keys: d.keys, hashes: d.hashes }]);
    const slot = (hex: string) => Buffer.from(hex, 'hex');
    const other = Buffer.alloc(8, 7);
    expect(list.matches(other, (s) => (s === 0 ? slot(sha('ada@example.org')) : undefined), 2)).toBe(true);
    expect(list.matches(other, (s) => (s === 1 ? slot(sha('+15550100')) : undefined), 2)).toBe(false);
    expect(list.matches(Buffer.from(d.keys[0]!, 'hex'), () => undefined, 2)).toBe(true);
    expect(Suppression.none.matches(other, () => slot(sha('ada@example.org')), 2)).toBe(false);
  });
});
