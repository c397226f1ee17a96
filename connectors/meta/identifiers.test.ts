import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { slotBuffers, type Person } from '../../src/identify/types.js';
import {
  identify,
  packPlain,
  SCHEMA_KEYS,
  schemaSetting,
  SLOTS,
  toRow,
  unpackPlain,
  usersBody,
  type SchemaKey,
} from './identifiers.js';

/** SHA-256 hex of the normalised string a test expects. */
const h = (normalized: string) => createHash('sha256').update(normalized, 'utf8').digest('hex');

/** The `data` row of a person for a schema. */
function row(
  person: Person,
  schema: readonly SchemaKey[] = SCHEMA_KEYS,
  defaultCountry = 'US',
): Record<string, string> {
  const id = identify(person, { schema, defaultCountry });
  if ('skip' in id) throw new Error(`skipped: ${id.skip}`);
  expect(id.slots).toHaveLength(schema.length);
  for (const s of id.slots) if (s) expect(s).toHaveLength(32);
  const data = toRow(slotBuffers(id.slots), schema);
  return Object.fromEntries(schema.map((key, i) => [key, data[i]!]));
}

const one = (key: SchemaKey, person: Person, defaultCountry?: string) =>
  row({ email: 'someone@example.com', ...person }, ['EMAIL', key], defaultCountry)[key];

describe('Meta EMAIL', () => {
  it("is Meta's example: mary@example.com", () => {
    expect(one('EMAIL', { email: 'mary@example.com' })).toBe(
      'f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79',
    );
  });

  it.each([
    [' Mary@Example.COM ', 'mary@example.com'],
    ['Jane.Doe+shop@Gmail.com', 'jane.doe+shop@gmail.com'], // no Gmail rule for Meta
    ['jane.doe@googlemail.com', 'jane.doe@googlemail.com'],
  ])('%j is the SHA-256 of %j', (email, normalized) => {
    expect(one('EMAIL', { email })).toBe(h(normalized));
  });

  it('passes an already-hashed email through', () => {
    expect(one('EMAIL', { email: h('mary@example.com').toUpperCase() })).toBe(h('mary@example.com'));
  });
});

describe('Meta PHONE: E.164 digits without the +', () => {
  it.each([
    ['+1 (212) 555-0123', 'US', '12125550123'], // the shape of Meta's +1 (555) 123-4567 → 15551234567
    ['(800) 555-0100', 'US', '18005550100'],
    ['020 7946 0123', 'GB', '442079460123'],
    ['+44 (0)20 7946 0123', 'GB', '442079460123'],
    ['0049 30 23125123', 'DE', '493023125123'],
    ['06.39.98.12.34', 'FR', '33639981234'],
  ])('%j in %s is the SHA-256 of %j', (phone, country, normalized) => {
    expect(one('PHONE', { phone, country })).toBe(h(normalized));
  });

  it("refuses Meta's illustration +1 (555) 123-4567: no area code 555 (libphonenumber-js)", () => {
    expect(identify({ phone: '+1 (555) 123-4567' }, { schema: ['PHONE'] })).toEqual({
      skip: 'invalid phone',
    });
  });
});

describe('Meta names', () => {
  it.each([
    ['FN', { first_name: 'José' }, 'josé'],
    ['FN', { first_name: 'Jose\u0301' }, 'josé'],
    ['FN', { first_name: ' MARY-ANN ' }, 'maryann'],
    ['FN', { first_name: 'Mary Ann' }, 'mary ann'],
    ['LN', { last_name: "O'Connor" }, 'oconnor'],
    ['LN', { last_name: 'Müller' }, 'müller'],
    ['FI', { first_name: 'José' }, 'j'],
    ['FI', { first_name: 'Élodie' }, 'é'],
  ] as const)('%s of %j is the SHA-256 of %j', (key, person, normalized) => {
    expect(one(key, person)).toBe(h(normalized));
  });

  it('has no initial from a hashed first name', () => {
    expect(one('FI', { first_name: h('jose') })).toBe('');
  });
});

describe('Meta location', () => {
  it.each([
    ['CT', { city: 'New York' }, 'newyork'],
    ['CT', { city: 'São Paulo' }, 'sãopaulo'],
    ['CT', { city: 'St. Louis' }, 'stlouis'],
    ['ST', { state: 'CA', country: 'US' }, 'ca'],
    ['ST', { state: 'California', country: 'US' }, 'ca'],
    ['ST', { state: 'new york', country: 'US' }, 'ny'],
    ['ST', { state: 'Bavaria', country: 'DE' }, 'bavaria'],
    ['ZIP', { postal_code: '94045-1234', country: 'US' }, '94045'],
    ['ZIP', { postal_code: '9539', country: 'US' }, '09539'],
    ['ZIP', { postal_code: 'SW1A 1AA', country: 'GB' }, 'sw1a1aa'],
    ['ZIP', { postal_code: '10115', country: 'DE' }, '10115'],
    ['COUNTRY', { country: 'United States' }, 'us'],
    ['COUNTRY', { country: ' gb ' }, 'gb'],
    ['COUNTRY', {}, 'us'], // the default country
  ] as const)('%s of %j is the SHA-256 of %j', (key, person, normalized) => {
    expect(one(key, person)).toBe(h(normalized));
  });
});

describe('Meta gender and birth date', () => {
  it.each([
    ['GEN', { gender: 'F' }, 'f'],
    ['GEN', { gender: 'male' }, 'm'],
    ['DOBY', { birth_date: '1990-07-04' }, '1990'],
    ['DOBM', { birth_date: '1990-07-04' }, '07'],
    ['DOBD', { birth_date: '1990-07-04' }, '04'],
  ] as const)('%s of %j is the SHA-256 of %j', (key, person, normalized) => {
    expect(one(key, person)).toBe(h(normalized));
  });

  it.each([
    ['GEN', { gender: 'x' }],
    ['DOBY', { birth_date: '1990-02-30' }],
    ['DOBM', { birth_date: '07/04/1990' }],
    ['DOBD', { birth_date: '1850-01-01' }],
  ] as const)('%s of %j is unknown', (key, person) => {
    expect(one(key, person)).toBe('');
  });
});

describe('Meta EXTERN_ID and MADID, sent as they are', () => {
  it.each([
    ['EXTERN_ID', 'cust-000123'],
    ['EXTERN_ID', 'x'.repeat(32)],
    ['MADID', '6D92078A-8246-4BA4-AE5B-76104861E7DC'], // an IDFA: 36 characters, packed as 16 bytes
    ['MADID', 'aece52e7-03ee-455a-b3c4-e57283966239'],
  ] as const)('%s %j', (key, value) => {
    const person = key === 'MADID' ? { madid: value } : { external_id: value };
    expect(one(key, person)).toBe(value);
  });

  it('leaves out what does not fit the slot', () => {
    expect(one('EXTERN_ID', { external_id: 'x'.repeat(33) })).toBe('');
    expect(one('MADID', { madid: '6D92078A-8246-4ba4-AE5B-76104861E7DC' })).toBe('');
    expect(identify({ external_id: 'x'.repeat(33) }, { schema: ['EXTERN_ID'] })).toEqual({
      skip: 'identifier too long',
    });
  });

  it('packs and unpacks', () => {
    for (const v of ['a', 'josé-42', 'y'.repeat(32), 'AECE52E7-03EE-455A-B3C4-E57283966239']) {
      expect(unpackPlain(packPlain(v)!)).toBe(v);
    }
    expect(packPlain('')).toBeUndefined();
    expect(packPlain('a\u0000b')).toBeUndefined();
  });
});

describe('Meta rows', () => {
  it('follow the schema of the request example, "" for unknown fields', () => {
    const schema = schemaSetting.parse(['EMAIL', 'PHONE', 'FN', 'LN', 'COUNTRY']);
    expect(row({ email: 'mary@example.com', last_name: 'Smith', country: 'US' }, schema)).toEqual({
      EMAIL: h('mary@example.com'),
      PHONE: '',
      FN: '',
      LN: h('smith'),
      COUNTRY: h('us'),
    });
  });

  it('use the default schema when none is configured', () => {
    const id = identify({ email: 'mary@example.com' });
    if ('skip' in id) throw new Error(id.skip);
    expect(toRow(slotBuffers(id.slots), SLOTS)).toEqual([h('mary@example.com'), '', '', '', '', '']);
  });

  it('fill every key', () => {
    const r = row({
      external_id: 'c-1',
      email: 'mary@example.com',
      phone: '(800) 555-0100',
      gender: 'f',
      birth_date: '1985-12-01',
      last_name: 'Smith',
      first_name: 'Mary',
      city: 'Mountain View',
      state: 'CA',
      postal_code: '94043',
      madid: 'aece52e7-03ee-455a-b3c4-e57283966239',
      country: 'US',
    });
    expect(r).toEqual({
      EXTERN_ID: 'c-1',
      EMAIL: h('mary@example.com'),
      PHONE: h('18005550100'),
      GEN: h('f'),
      DOBY: h('1985'),
      DOBM: h('12'),
      DOBD: h('01'),
      LN: h('smith'),
      FN: h('mary'),
      FI: h('m'),
      CT: h('mountainview'),
      ST: h('ca'),
      ZIP: h('94043'),
      MADID: 'aece52e7-03ee-455a-b3c4-e57283966239',
      COUNTRY: h('us'),
    });
  });
});

describe('Meta skips', () => {
  it.each<[Person, string]>([
    [{}, 'no usable identifier'],
    [{ country: 'US', postal_code: '94045', gender: 'f' }, 'no usable identifier'],
    [{ first_name: 'Mary', country: 'US' }, 'no usable identifier'],
    [{ email: 'nope' }, 'invalid email'],
    [{ email: 'nope', phone: '12' }, 'invalid email'],
    [{ phone: '12' }, 'invalid phone'],
  ])('%j: %s', (person, reason) => {
    expect(identify(person, { schema: SCHEMA_KEYS })).toEqual({ skip: reason });
  });

  it('takes first and last name together as enough', () => {
    expect('slots' in identify({ first_name: 'Mary', last_name: 'Smith' }, { schema: SCHEMA_KEYS })).toBe(
      true,
    );
  });

  it('only counts identifiers of the schema', () => {
    expect(identify({ email: 'mary@example.com' }, { schema: ['PHONE', 'FN'] })).toEqual({
      skip: 'no usable identifier',
    });
  });
});

describe('schemaSetting', () => {
  it('keeps the configured order', () => {
    expect(schemaSetting.parse(['PHONE', 'EMAIL'])).toEqual(['PHONE', 'EMAIL']);
  });

  it.each([[['EMAIL', 'E-MAIL']], [['EMAIL', 'EMAIL']], [[]]])('refuses %j', (keys) => {
    expect(schemaSetting.safeParse(keys).success).toBe(false);
  });
});

describe('identifier groups', () => {
  it('groups the keys that identify someone only together', async () => {
    const { identifierGroups } = await import('./identifiers.js');
    expect(identifierGroups(['EMAIL', 'PHONE', 'FN', 'LN', 'ZIP', 'COUNTRY'])).toEqual([[2, 3, 4, 5]]);
    expect(identifierGroups(['EMAIL', 'MADID'])).toEqual([]);
  });
});

describe('usersBody', () => {
  it('is byte for byte the JSON of the rows toRow gives, leaving out members with nothing for the schema', () => {
    const schema: SchemaKey[] = ['EXTERN_ID', 'EMAIL', 'PHONE', 'FN', 'MADID', 'COUNTRY'];
    const plain = ['cust-0042', 'quote " and \\ back', 'Zoë ü 😀', '6d92078a-8246-4ba4-ae5b-76104861e7dc'];
    const members = Array.from({ length: 40 }, (_, i) => ({
      slots: schema.map((key, c) => {
        if ((i * 7 + c * 3) % 5 === 0 || i % 13 === 0) return undefined;
        if (key === 'EXTERN_ID' || key === 'MADID') return packPlain(plain[(i + c) % plain.length]!);
        return createHash('sha256').update(`${i}-${c}`).digest();
      }),
    }));
    const rows = members.map((m) => toRow(m.slots, schema)).filter((r) => r.some((v) => v !== ''));
    const empty = members.flatMap((m, i) => (toRow(m.slots, schema).every((v) => v === '') ? [i] : []));
    expect(empty.length).toBeGreaterThan(0);
    const session = { session_id: 7, batch_seq: 1, last_batch_flag: true, estimated_num_total: rows.length };
    for (const s of [undefined, session]) {
      const built = usersBody(members, schema, s);
      expect(built.body.toString('utf8')).toBe(
        JSON.stringify({ payload: { schema, data: rows }, ...(s ? { session: s } : {}) }),
      );
      expect(built.rows).toBe(rows.length);
      expect(built.empty).toEqual(empty);
    }
    expect(usersBody([], schema).body.toString()).toBe(JSON.stringify({ payload: { schema, data: [] } }));
  });

  it('reads slots in place from a row (a table member) exactly as from a list, and never asks for the list', () => {
    const schema: SchemaKey[] = ['EMAIL', 'PHONE', 'FN', 'LN', 'COUNTRY'];
    // Three members side by side in one buffer, after 7 bytes of something else; slot c at 7 + (k * 5 + c) * 32.
    const bytes = randomBytes(7 + 3 * 5 * 32);
    const masks = [0b11111, 0b10100, 0];
    const members = masks.map((mask, k) => ({
      row: { bytes, at: 7 + k * 5 * 32, mask },
      get slots(): (Buffer | undefined)[] {
        throw new Error('the list was asked for');
      },
    }));
    const hex = (k: number, c: number) =>
      bytes.toString('hex', 7 + (k * 5 + c) * 32, 7 + (k * 5 + c + 1) * 32);
    const data = [[0, 1, 2, 3, 4].map((c) => hex(0, c)), ['', '', hex(1, 2), '', hex(1, 4)]];
    const built = usersBody(members, schema);
    expect(built.body.toString('utf8')).toBe(JSON.stringify({ payload: { schema, data } }));
    expect(built.rows).toBe(2);
    expect(built.empty).toEqual([2]);
  });
});
