import { describe, expect, it } from 'vitest';
import { fileConnector, memberLine } from './index.js';
import { slotBuffers } from '../../src/identify/types.js';

/** Digests from `printf '%s' <value> | sha256sum`. */
const JANE = '86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d';
const US_PHONE = '36a2cef4ff9bf7a1abd2a93359136b870393be4106e6c5d19b72ff564f9deca4'; // +14155550123
const GB_PHONE = 'faad3b10918e39b5f4d5334f1e1e128719608e8bd3ad3b963dc30187b4518e23'; // +442079460018

const config = fileConnector.configSchema.parse({ type: 'file', path: 'out' });
const line = (person: Record<string, string>) => {
  const id = fileConnector.identify(person, config);
  return 'skip' in id ? id.skip : memberLine(slotBuffers(id.slots));
};

describe('file destination: identifiers', () => {
  it('hashes the email without spaces, lowercased, and the phone in E.164', () => {
    expect(line({ email: ' Jane.Doe@Example.COM ', phone: '(415) 555-0123' })).toBe(
      `email=${JANE} phone=${US_PHONE}`,
    );
    expect(line({ phone: '020 7946 0018', country: ' gb' })).toBe(`phone=${GB_PHONE}`);
    expect(line({ phone: '+44 20 7946 0018' })).toBe(`phone=${GB_PHONE}`);
  });

  it('keeps a value that already is a SHA-256, and says why someone has nothing usable', () => {
    expect(line({ email: JANE.toUpperCase() })).toBe(`email=${JANE}`);
    expect(line({ email: 'not an email' })).toBe('invalid email');
    expect(line({})).toBe('no usable identifier');
  });

  it('refuses keys it does not read', () => {
    expect(() =>
      fileConnector.configSchema.parse({ type: 'file', path: 'out', endpoint: 'http://x' }),
    ).toThrow(/endpoint/);
  });
});
