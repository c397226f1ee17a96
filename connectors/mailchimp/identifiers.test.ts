import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { identify, SLOTS, subscriberHash } from './identifiers.js';

/** MD5 hex of the normalised email a test expects. */
const md5 = (normalized: string) => createHash('md5').update(normalized, 'utf8').digest('hex');

describe('Mailchimp subscriber hash', () => {
  it("is Mailchimp's example: jane@example.com", () => {
    const id = identify({ email: 'jane@example.com' });
    if ('skip' in id) throw new Error(id.skip);
    expect(subscriberHash(id.slots[0]!)).toBe('9e26471d35a78862c17e467d87cddedf');
  });

  it.each([
    [' Jane@Example.COM ', 'jane@example.com'],
    ['Jane.Doe+news@Gmail.com', 'jane.doe+news@gmail.com'], // no Gmail rule
  ])('of %j is the MD5 of %j, with the email in plain', (email, normalized) => {
    const id = identify({ email });
    if ('skip' in id) throw new Error(id.skip);
    expect(id.slots).toHaveLength(SLOTS.length);
    expect(subscriberHash(id.slots[0]!)).toBe(md5(normalized));
    expect(id.plain).toEqual({ email: normalized });
  });

  it('fills a 32-byte slot: 16 bytes of MD5, then zeros', () => {
    const id = identify({ email: 'jane@example.com' });
    if ('skip' in id) throw new Error(id.skip);
    const slot = id.slots[0]!;
    expect(slot).toHaveLength(32);
    expect(slot.subarray(0, 16).toString('hex')).toBe(md5('jane@example.com'));
    expect(slot.subarray(16)).toEqual(Buffer.alloc(16));
  });
});

describe('Mailchimp skips', () => {
  it.each([
    [{}, 'no usable identifier'],
    [{ email: ' ', phone: '(800) 555-0100' }, 'no usable identifier'],
    [{ email: 'jane@example' }, 'invalid email'],
    [{ email: createHash('sha256').update('jane@example.com').digest('hex') }, 'hashed email'],
  ])('%j: %s', (person, reason) => {
    expect(identify(person)).toEqual({ skip: reason });
  });
});
