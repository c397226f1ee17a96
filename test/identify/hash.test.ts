import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  hashed,
  hashIdentifier,
  isSha256Hex,
  md5Hex,
  repeatedIdentifier,
  sha256,
} from '../../src/identify/hash.js';
import { normalizeEmail, normalizeName } from '../../src/identify/normalize.js';
import { slotBuffers } from '../../src/identify/types.js';

const sha256Hex = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

describe('sha256', () => {
  it.each(['', 'mary@example.com', '+18005550100', 'josé', 'müller'])('of %j is 32 bytes of SHA-256', (s) => {
    const h = sha256(s);
    expect(h).toHaveLength(32);
    expect(h.toString('hex')).toBe(sha256Hex(s));
  });

  it("gives Meta's example: mary@example.com", () => {
    expect(sha256('mary@example.com').toString('hex')).toBe(
      'f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79',
    );
  });
});

describe('md5Hex', () => {
  it("gives Mailchimp's example: jane@example.com", () => {
    expect(md5Hex('jane@example.com')).toBe('9e26471d35a78862c17e467d87cddedf');
    expect(md5Hex('jane@example.com')).toBe(createHash('md5').update('jane@example.com').digest('hex'));
  });
});

describe('isSha256Hex', () => {
  const h = sha256Hex('mary@example.com');
  it.each([
    [h, true],
    [h.toUpperCase(), true],
    [h.slice(1), false],
    [h + '0', false],
    [h.slice(0, 63) + 'g', false],
    ['', false],
  ])('%j → %s', (s, expected) => {
    expect(isSha256Hex(s)).toBe(expected);
  });
});

describe('hashed', () => {
  const h = sha256Hex('mary@example.com');

  it('passes a hex digest through, in either case, never hashing it twice', () => {
    expect(hashed(h).toString('hex')).toBe(h);
    expect(hashed(h.toUpperCase()).toString('hex')).toBe(h);
    expect(hashed(` ${h} `).toString('hex')).toBe(h);
  });

  it('hashes anything else', () => {
    expect(hashed('mary@example.com').toString('hex')).toBe(h);
  });
});

describe('hashIdentifier', () => {
  const email = (v: string) => normalizeEmail(v);

  it('hashes the normalised value', () => {
    // A digest slot: the 32 bytes as latin1 characters, no Buffer.
    const slot = hashIdentifier('  Mary@Example.com ', email);
    expect(typeof slot).toBe('string');
    expect(Buffer.from(slot as string, 'latin1').toString('hex')).toBe(sha256Hex('mary@example.com'));
  });

  it('checks for a hash before normalising', () => {
    const h = sha256Hex('mary@example.com').toUpperCase();
    expect(slotBuffers([hashIdentifier(h, email)!])[0]!.toString('hex')).toBe(h.toLowerCase());
  });

  it('tells absent (undefined) from unusable (null)', () => {
    expect(hashIdentifier(undefined, email)).toBeUndefined();
    expect(hashIdentifier('  ', email)).toBeUndefined();
    expect(hashIdentifier('not an email', email)).toBeNull();
  });
});

describe('repeatedIdentifier', () => {
  it('gives what hashIdentifier gives, normalising each distinct value once, within two generations of its bound', () => {
    const seen: string[] = [];
    const slot = repeatedIdentifier((v) => {
      seen.push(v);
      return normalizeName(v);
    }, 4);
    const values = [' Anna ', 'ANNA', ' Anna ', '', '   ', '123', 'Ben', 'Chloé', 'Dev', ' Anna ', undefined];
    for (const raw of values) expect(slot(raw)).toEqual(hashIdentifier(raw, (v) => normalizeName(v)));
    // ' Anna ' again from memory; four more values fill the recent generation, and ' Anna ' is still
    // remembered from the older one (and now recent again).
    expect(seen).toEqual(['Anna', 'ANNA', '123', 'Ben', 'Chloé', 'Dev']);
    expect(slot('Dev')).toBe(slot('Dev')); // the same digest, not a copy
    // Two generations of new values later, 'ANNA' (not used since) is forgotten and normalised anew;
    // ' Anna ', used in the meantime, is not.
    for (const raw of ['E', 'F', 'G', 'H']) slot(raw);
    expect(slot(' Anna ')).toEqual(hashIdentifier(' Anna ', (v) => normalizeName(v)));
    for (const raw of ['I', 'J', 'K']) slot(raw);
    seen.length = 0;
    slot('ANNA');
    slot(' Anna ');
    expect(seen).toEqual(['ANNA']);
  });
});
