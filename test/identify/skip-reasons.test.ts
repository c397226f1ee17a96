import { describe, expect, it } from 'vitest';
import { identify as fileIdentify } from '../../connectors/file/index.js';
import { identify as googleIdentify } from '../../connectors/google-ads/identifiers.js';
import { identify as metaIdentify } from '../../connectors/meta/identifiers.js';
import { SKIP_REASONS, type Person } from '../../src/identify/types.js';

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
