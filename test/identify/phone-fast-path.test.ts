import { afterEach, describe, expect, it, vi } from 'vitest';

// The library's parser, watched: clean international numbers must not need it.
const parse = vi.hoisted(() => ({ calls: 0 }));
vi.mock('libphonenumber-js', async (importOriginal) => {
  const lib = await importOriginal<typeof import('libphonenumber-js')>();
  return {
    ...lib,
    parsePhoneNumberFromString: (...args: Parameters<typeof lib.parsePhoneNumberFromString>) => {
      parse.calls++;
      return lib.parsePhoneNumberFromString(...args);
    },
  };
});

const { normalizePhone } = await import('../../src/identify/normalize.js');

describe('normalizePhone fast path', () => {
  afterEach(() => {
    parse.calls = 0;
  });

  it.each([
    ['+12125550123', 'US', '+12125550123'],
    ['+1 (212) 555-0123', 'US', '+12125550123'],
    [' +44 20 7946 0123 ', 'US', '+442079460123'],
    ['+44 (0)20 7946 0123', 'GB', '+442079460123'], // a national prefix after the calling code
    ['+49 30 23125123', 'US', '+493023125123'],
    ['+33 1 99 00 12 34', 'US', '+33199001234'],
    ['+1 416 555 0123', 'US', '+14165550123'], // Canada, behind the shared +1
    ['(212) 555-0123', 'US', '+12125550123'],
    ['1-212-555-0123', 'US', '+12125550123'], // the calling code without its +
    ['416.555.0123', 'US', '+14165550123'],
    ['020 7946 0123', 'GB', '+442079460123'],
    ['(030) 23125123', 'DE', '+493023125123'],
    ['0049 30 23125123', 'DE', '+493023125123'], // the international dialling prefix
    ['01 99 00 12 34', 'FR', '+33199001234'],
    ['+1 555 123 4567', 'US', undefined], // no area code 555
    ['07700 900123', 'GB', undefined], // Ofcom's drama range
  ])('decides %j (%s) without parsing', (raw, country, expected) => {
    expect(normalizePhone(raw, country)).toBe(expected);
    expect(parse.calls).toBe(0);
  });

  it.each([
    ['212 555 0123 ext. 4', 'US', '+12125550123'], // an extension
    ['＋１ ２１２ ５５５ ０１２３', 'US', '+12125550123'], // full-width digits
    ['tel:+1-212-555-0123', 'US', '+12125550123'], // an RFC 3966 URI
    ['(212) 555-0123', undefined, undefined], // national without a country
    ['(021) 2345-6789', 'BR', '+552123456789'], // a national prefix read by a rule
    ['+800 1234 5678', undefined, '+80012345678'], // a non-geographic calling code
  ])('leaves %j (%s) to the library', (raw, country, expected) => {
    expect(normalizePhone(raw, country)).toBe(expected);
    expect(parse.calls).toBe(1);
  });
});
