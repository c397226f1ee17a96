import {
  getCountries,
  getCountryCallingCode,
  parsePhoneNumberFromString,
  type CountryCode,
} from 'libphonenumber-js';
import examples from 'libphonenumber-js/mobile/examples';
import { describe, expect, it } from 'vitest';
import { normalizePhone } from '../../src/identify/normalize.js';

/** What normalizePhone must always equal: the plain library. */
function library(raw: string, region: CountryCode | undefined): string | undefined {
  const p = parsePhoneNumberFromString(raw, region);
  return p?.isValid() ? p.number : undefined;
}

describe('normalizePhone: the platforms’ examples', () => {
  it('Google: (800) 555-0100 with US → +18005550100', () => {
    expect(normalizePhone('(800) 555-0100', 'US')).toBe('+18005550100');
  });

  it('Meta: +1 (555) 123-4567 is refused, as the library finds no area code 555', () => {
    // Meta's illustration number is fictional; the format rule it shows is tested in connectors/meta.
    expect(normalizePhone('+1 (555) 123-4567')).toBeUndefined();
    expect(normalizePhone('+1 (212) 555-0123')).toBe('+12125550123');
  });
});

describe('normalizePhone: national formats read with the customer’s country', () => {
  it.each([
    ['(212) 555-0123', 'US', '+12125550123'],
    ['212.555.0123', 'US', '+12125550123'],
    ['1-212-555-0123', 'US', '+12125550123'],
    ['2125550123', 'us', '+12125550123'],
    ['020 7946 0123', 'GB', '+442079460123'],
    ['(020) 7946 0123', 'United Kingdom', '+442079460123'],
    ['07400 123456', 'UK', '+447400123456'],
    ['+44 (0)20 7946 0123', 'GB', '+442079460123'],
    ['030 23125123', 'DE', '+493023125123'],
    ['030/23125123', 'Deutschland', '+493023125123'],
    ['0049 30 23125123', 'DE', '+493023125123'],
    ['+49 (0)30 23125123', 'DE', '+493023125123'],
    ['01 99 00 12 34', 'FR', '+33199001234'],
    ['06.39.98.12.34', 'FR', '+33639981234'],
    ['+33 6 39 98 12 34', 'FR', '+33639981234'],
  ])('%s with %s → %s', (raw, country, expected) => {
    expect(normalizePhone(raw, country)).toBe(expected);
  });

  it('takes the country from the number when it has one, whatever the default', () => {
    expect(normalizePhone('+44 20 7946 0123', 'US')).toBe('+442079460123');
    expect(normalizePhone('+442079460123', undefined)).toBe('+442079460123');
  });

  it('needs a country for a national number', () => {
    expect(normalizePhone('020 7946 0123')).toBeUndefined();
    expect(normalizePhone('020 7946 0123', 'Narnia')).toBeUndefined();
  });

  it('reads the same digits differently in different countries', () => {
    expect(normalizePhone('0201234567', 'NL')).toBe('+31201234567');
    expect(normalizePhone('0201234567', 'US')).toBeUndefined();
  });
});

describe('normalizePhone: invalid input', () => {
  it.each([
    '',
    '   ',
    'n/a',
    '12',
    '555-0100',
    '+1 555',
    '+999 123456',
    '+0 212 555 0123',
    '0000000000',
    '1111111111',
    // Ofcom's drama mobile range, which the library does not count as valid UK numbers.
    '+44 7700 900123',
    '+1 212 555 01234567',
    '+1' + '2'.repeat(300),
  ])('%j → undefined', (raw) => {
    expect(normalizePhone(raw, 'US')).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------------------
// The fast path must give exactly the library's answer. Inputs: every region's example number in many
// writings, and random numbers after every calling code, valid and not.

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function cases(): [string, CountryCode | undefined][] {
  const random = rng(7);
  const digits = (n: number) => Array.from({ length: n }, () => Math.floor(random() * 10)).join('');
  const out: [string, CountryCode | undefined][] = [];
  for (const region of getCountries()) {
    const cc = getCountryCallingCode(region);
    const example = examples[region];
    const nationals = [example, example.slice(0, -1), example + '5', example.slice(0, -3) + digits(3)];
    for (let k = 0; k < 150; k++) nationals.push(digits(3 + Math.floor(random() * 12)));
    for (const n of nationals) {
      out.push([`+${cc}${n}`, undefined]);
      out.push([`+${cc} ${n.slice(0, 3)} ${n.slice(3)}`, region]);
      out.push([`+${cc} (0)${n}`, region]);
      out.push([`+${cc}0${n}`, undefined]);
      out.push([n, region]);
      out.push([`0${n}`, region]);
      out.push([`(0${n.slice(0, 2)}) ${n.slice(2, 5)}-${n.slice(5)}`, region]);
      out.push([`00${cc}${n}`, region]);
      out.push([`${cc}${n}`, region]);
    }
  }
  return out;
}

describe('normalizePhone equals libphonenumber-js', () => {
  it('on every region’s numbers, international and national, valid and not', () => {
    const all = cases();
    const mismatches = all
      .map(([raw, region]) => ({ raw, region, got: normalizePhone(raw, region), want: library(raw, region) }))
      .filter((r) => r.got !== r.want);
    expect(all.length).toBeGreaterThan(250_000);
    expect(all.filter(([raw, region]) => library(raw, region) !== undefined).length).toBeGreaterThan(20_000);
    expect(mismatches.length, JSON.stringify(mismatches.slice(0, 10))).toBe(0);
  });
});
