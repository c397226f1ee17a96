import { describe, expect, it } from 'vitest';
import {
  normalizeCountry,
  normalizeEmail,
  normalizeName,
  normalizePostal,
} from '../../src/identify/normalize.js';

describe('normalizeEmail', () => {
  it.each([
    ['mary@example.com', 'mary@example.com'],
    ['  Mary@Example.COM ', 'mary@example.com'],
    ['JANE.DOE@EXAMPLE.ORG', 'jane.doe@example.org'],
    ['jane doe@example.org', 'janedoe@example.org'],
    ['jane\u200b@example.org\t', 'jane@example.org'],
    ['jane+news@example.org', 'jane+news@example.org'],
    ['Jane.Doe+shop@GMail.com', 'jane.doe+shop@gmail.com'],
    ['josé@exämple.com', 'josé@exämple.com'],
  ])('%j → %j', (raw, expected) => {
    expect(normalizeEmail(raw)).toBe(expected);
  });

  it.each([
    ['Jane.Doe@gmail.com', 'janedoe@gmail.com'],
    ['j.a.n.e.doe+promo@GMAIL.COM', 'janedoe@gmail.com'],
    ['jane.doe+a+b@googlemail.com', 'janedoe@googlemail.com'],
    [' JaneDoe@Gmail.com ', 'janedoe@gmail.com'],
    ['jane.doe+shop@example.com', 'jane.doe+shop@example.com'],
    ['jane.doe@mail.gmail.com', 'jane.doe@mail.gmail.com'],
  ])('canonical Gmail (Google): %j → %j', (raw, expected) => {
    expect(normalizeEmail(raw, { canonicalGmail: true })).toBe(expected);
  });

  it.each([
    '',
    ' ',
    'jane',
    'jane@',
    '@example.com',
    'jane@example',
    'jane@@example.com',
    'a@b@example.com',
    'jane@.com',
    'jane@example.',
    'jane@example..com',
  ])('invalid: %j', (raw) => {
    expect(normalizeEmail(raw)).toBeUndefined();
    expect(normalizeEmail(raw, { canonicalGmail: true })).toBeUndefined();
  });

  it('refuses a Gmail address with nothing left of its local part', () => {
    expect(normalizeEmail('+tag@gmail.com', { canonicalGmail: true })).toBeUndefined();
    expect(normalizeEmail('...@gmail.com', { canonicalGmail: true })).toBeUndefined();
  });
});

describe('normalizeName', () => {
  it.each([
    ['José', 'josé'],
    ['Jose\u0301', 'josé'], // decomposed accent → NFC
    ['  MÜLLER ', 'müller'],
    ["O'Connor", 'oconnor'],
    ['Jean-Luc', 'jeanluc'],
    ['Mary   Ann', 'mary ann'],
    ['Mary - Ann', 'mary ann'],
    ['Zoë', 'zoë'],
    ['Groß', 'groß'],
    ['Siobhán', 'siobhán'],
    ['Peña', 'peña'],
    ['Mr. John', 'mr john'],
    ['R2-D2', 'rd'],
  ])('%j → %j', (raw, expected) => {
    expect(normalizeName(raw)).toBe(expected);
  });

  it.each([
    ['Mr. John', 'john'],
    ['Dr Mrs Jane', 'jane'],
    ['MS. Ann Marie', 'ann marie'],
    ['Smith Jr.', 'smith'],
    ['Henry VIII', 'henry viii'],
    ['John Smith III', 'john smith'],
    ['Smith, Sr', 'smith'],
    ['Drake', 'drake'],
    ['Ivy', 'ivy'],
  ])('without affixes (Google): %j → %j', (raw, expected) => {
    expect(normalizeName(raw, { stripAffixes: true })).toBe(expected);
  });

  it.each(['', '   ', '...', '123', "'-'"])('unusable: %j', (raw) => {
    expect(normalizeName(raw)).toBeUndefined();
  });

  it('has nothing left of a name that is only a title', () => {
    expect(normalizeName('Dr.', { stripAffixes: true })).toBeUndefined();
    expect(normalizeName('Dr.')).toBe('dr');
  });
});

describe('normalizeCountry', () => {
  it.each([
    ['us', 'US'],
    [' US ', 'US'],
    ['Us', 'US'],
    ['gb', 'GB'],
    ['UK', 'GB'],
    ['U.K.', 'GB'],
    ['United Kingdom', 'GB'],
    ['USA', 'US'],
    ['U.S.A.', 'US'],
    ['united  states', 'US'],
    ['Germany', 'DE'],
    ['Deutschland', 'DE'],
    ['France', 'FR'],
    ['de', 'DE'],
  ])('%j → %j', (raw, expected) => {
    expect(normalizeCountry(raw)).toBe(expected);
  });

  it.each(['', 'XX', 'EU', 'Narnia', 'U', 'Allemagne', 'USAA'])('unknown: %j', (raw) => {
    expect(normalizeCountry(raw)).toBeUndefined();
  });
});

describe('normalizePostal (Google)', () => {
  it.each([
    ['94045', 'US', '94045'],
    [' 94045 ', 'US', '94045'],
    ['94045-1234', 'US', '94045'],
    ['940451234', 'US', '94045'],
    ['9539', 'US', '09539'], // a spreadsheet dropped the leading zero
    ['501', 'US', '00501'],
    ['9539-1234', 'US', '09539'],
    ['10115', 'DE', '10115'],
    ['1067', 'DE', '01067'],
    ['75001', 'FR', '75001'],
    ['SW1A 1AA', 'GB', 'SW1A 1AA'],
    ['sw1a1aa', 'GB', 'SW1A 1AA'],
    [' ec1a  1bb ', 'GB', 'EC1A 1BB'],
    ['M1 1AE', 'GB', 'M1 1AE'],
    ['k1a0b1', 'CA', 'K1A 0B1'],
    ['1012 ab', 'NL', '1012 AB'],
    ['01310-100', 'BR', '01310-100'],
  ])('%j in %s → %j', (raw, country, expected) => {
    expect(normalizePostal(raw, country)).toBe(expected);
  });

  it.each([
    ['', 'US'],
    ['ABCDE', 'US'],
    ['940451', 'US'],
    ['12', 'US'],
    ['123456', 'DE'],
    ['SW1A', 'GB'],
    ['12345', 'GB'],
    ['#1', 'NL'],
    ['1234567890ABCD', 'NL'],
  ])('unusable: %j in %s', (raw, country) => {
    expect(normalizePostal(raw, country)).toBeUndefined();
  });
});
