import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Person } from '../../src/identify/types.js';
import { identify, packAddress, SLOTS, unpackAddress, userIdentifiers } from './identifiers.js';
import { slotBuffers } from '../../src/identify/types.js';

/** SHA-256 hex of the normalised string a test expects. */
const h = (normalized: string) => createHash('sha256').update(normalized, 'utf8').digest('hex');

function slots(person: Person, defaultCountry = 'US'): Record<string, string | undefined> {
  const id = identify(person, { defaultCountry });
  if ('skip' in id) throw new Error(`skipped: ${id.skip}`);
  expect(id.slots).toHaveLength(SLOTS.length);
  for (const s of id.slots) if (s) expect(s).toHaveLength(32);
  const bytes = slotBuffers(id.slots);
  return Object.fromEntries(SLOTS.map((name, i) => [name, bytes[i]?.toString('hex')]));
}

describe('Google email', () => {
  it.each([
    ['mary@example.com', 'mary@example.com'],
    [' Mary@Example.COM ', 'mary@example.com'],
    ['Jane.Doe@gmail.com', 'janedoe@gmail.com'],
    ['jane.doe+shop@GMail.com', 'janedoe@gmail.com'],
    ['J.A.N.E.Doe+promo@googlemail.com', 'janedoe@googlemail.com'],
    ['jane.doe+shop@example.com', 'jane.doe+shop@example.com'],
  ])('%j is the SHA-256 of %j', (email, normalized) => {
    expect(slots({ email }).email).toBe(h(normalized));
  });

  it('passes an already-hashed email through, in either case', () => {
    const hex = h('janedoe@gmail.com');
    expect(slots({ email: hex.toUpperCase() }).email).toBe(hex);
  });
});

describe('Google phone', () => {
  it.each([
    ['(800) 555-0100', 'US', '+18005550100'], // Google's own example
    ['+1 212 555 0123', 'DE', '+12125550123'],
    ['020 7946 0123', 'GB', '+442079460123'],
    ['030 23125123', 'DE', '+493023125123'],
    ['06 39 98 12 34', 'FR', '+33639981234'],
  ])('%j in %s is the SHA-256 of %j', (phone, country, normalized) => {
    expect(slots({ phone, country }).phone).toBe(h(normalized));
  });

  it('reads a national number in the default country when the customer has none', () => {
    expect(slots({ phone: '020 7946 0123' }, 'GB').phone).toBe(h('+442079460123'));
    expect(slots({ phone: '020 7946 0123', country: 'Narnia' }, 'GB').phone).toBe(h('+442079460123'));
  });

  it('keeps email and phone as separate identifiers', () => {
    const s = slots({ email: 'mary@example.com', phone: '(800) 555-0100' });
    expect(s.email).toBe(h('mary@example.com'));
    expect(s.phone).toBe(h('+18005550100'));
  });
});

describe('Google name and address', () => {
  const complete: Person = {
    first_name: ' Mr. José ',
    last_name: "O'Connor Jr.",
    country: 'us',
    postal_code: '94045-1234',
  };

  it('are given with all four parts: names hashed, country and postal code not', () => {
    const s = slots(complete);
    expect(s.first_name).toBe(h('josé'));
    expect(s.last_name).toBe(h('oconnor'));
    expect(unpackAddress(Buffer.from(s.address!, 'hex'))).toEqual({ regionCode: 'US', postalCode: '94045' });
  });

  it.each([
    ['first_name', { ...complete, first_name: '' }],
    ['last_name', { ...complete, last_name: '...' }],
    ['postal_code', { ...complete, postal_code: undefined }],
    ['postal_code', { ...complete, postal_code: 'ABC' }],
  ])('are all left out without a usable %s', (_part, person) => {
    const s = slots({ ...person, email: 'mary@example.com' });
    expect(s).toEqual({
      email: h('mary@example.com'),
      phone: undefined,
      first_name: undefined,
      last_name: undefined,
      address: undefined,
    });
  });

  it('take the default country when the customer has none', () => {
    const s = slots({ ...complete, country: undefined, postal_code: 'sw1a1aa' }, 'GB');
    expect(unpackAddress(Buffer.from(s.address!, 'hex'))).toEqual({
      regionCode: 'GB',
      postalCode: 'SW1A 1AA',
    });
  });

  it('pad a US ZIP that lost its leading zero', () => {
    const s = slots({ ...complete, postal_code: '9539' });
    expect(unpackAddress(Buffer.from(s.address!, 'hex')).postalCode).toBe('09539');
  });

  it('make a member on their own', () => {
    const s = slots(complete);
    expect(s.email).toBeUndefined();
    expect(s.phone).toBeUndefined();
    expect(s.address).toBeDefined();
  });

  it('pass hashed names through', () => {
    const s = slots({ ...complete, first_name: h('josé').toUpperCase() });
    expect(s.first_name).toBe(h('josé'));
  });
});

describe('Google skips', () => {
  it.each<[Person, string]>([
    [{}, 'no usable identifier'],
    [{ email: '  ', phone: '' }, 'no usable identifier'],
    [{ email: 'not-an-email' }, 'invalid email'],
    [{ email: 'not-an-email', phone: '12' }, 'invalid email'],
    [{ phone: '12' }, 'invalid phone'],
    [{ first_name: 'Jane', last_name: 'Doe', country: 'US' }, 'incomplete address'],
    [{ first_name: 'Jane', last_name: 'Doe', postal_code: '94045' }, 'incomplete address'],
  ])('%j: %s', (person, reason) => {
    expect(identify(person, {})).toEqual({ skip: reason });
  });

  it('keeps a member with an invalid email when the phone is good', () => {
    const id = identify({ email: 'nope', phone: '(800) 555-0100' }, { defaultCountry: 'US' });
    expect('slots' in id && slotBuffers(id.slots)[1]?.toString('hex')).toBe(h('+18005550100'));
  });
});

describe('packAddress', () => {
  it('is the country, a zero byte and the postal code, zero-padded to 32 bytes', () => {
    const slot = packAddress('US', '94045')!;
    expect(slot).toEqual(Buffer.concat([Buffer.from('US\u000094045'), Buffer.alloc(24)]));
    expect(unpackAddress(slot)).toEqual({ regionCode: 'US', postalCode: '94045' });
  });

  it('refuses what does not fit', () => {
    expect(packAddress('GB', 'X'.repeat(30))).toBeUndefined();
  });
});

describe('userIdentifiers (Data Manager API)', () => {
  it('lists email, phone and the complete address, as in the API reference', () => {
    const id = identify(
      {
        email: 'mary@example.com',
        phone: '(800) 555-0100',
        first_name: 'Mary',
        last_name: 'Smith',
        country: 'US',
        postal_code: '94045',
      },
      { defaultCountry: 'US' },
    );
    if ('skip' in id) throw new Error(id.skip);
    expect(userIdentifiers(slotBuffers(id.slots))).toEqual([
      { emailAddress: h('mary@example.com') },
      { phoneNumber: h('+18005550100') },
      { address: { givenName: h('mary'), familyName: h('smith'), regionCode: 'US', postalCode: '94045' } },
    ]);
  });

  it('leaves out what a member lacks, and an address missing a part', () => {
    const address = packAddress('US', '94045');
    const phone = Buffer.from(h('+18005550100'), 'hex');
    expect(userIdentifiers([undefined, phone, undefined, undefined, undefined])).toEqual([
      { phoneNumber: h('+18005550100') },
    ]);
    expect(userIdentifiers([undefined, phone, Buffer.from(h('mary'), 'hex'), undefined, address])).toEqual([
      { phoneNumber: h('+18005550100') },
    ]);
  });
});

describe('identifier groups', () => {
  it('treats first name, last name and address as one identifier', async () => {
    const { IDENTIFIER_GROUPS, SLOTS } = await import('./identifiers.js');
    expect(IDENTIFIER_GROUPS.map((g) => g.map((i) => SLOTS[i]))).toEqual([
      ['first_name', 'last_name', 'address'],
    ]);
  });
});
