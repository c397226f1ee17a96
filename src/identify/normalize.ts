import { getCountries, type CountryCode } from 'libphonenumber-js';
import { phoneE164 } from './phone.js';
import { PHONE_WITHOUT_COUNTRY } from './types.js';

/**
 * Building blocks of the platforms' identifier rules (see connectors/<platform>/identifiers.ts for which
 * platform uses what). Each takes a raw source value and returns the normalised string, or undefined when
 * the value is unusable.
 */

// Whitespace, including the zero-width characters that copy-paste leaves in addresses.
const ANY_SPACE = /[\s\u200b-\u200d\u2060\ufeff]+/g;
const DOMAIN = /^[^.@]+(?:\.[^.@]+)+$/;
const GOOGLE_MAIL = new Set(['gmail.com', 'googlemail.com']);

/**
 * Email without whitespace, lowercased; undefined unless it has one `@`, a local part, and a domain with
 * a dot. `canonicalGmail` (Google only): on gmail.com and googlemail.com, dots and any `+tag` are dropped
 * from the local part, as Gmail delivers them to the same mailbox.
 */
export function normalizeEmail(raw: string, options: { canonicalGmail?: boolean } = {}): string | undefined {
  const email = raw.replace(ANY_SPACE, '').toLowerCase();
  const at = email.indexOf('@');
  if (at <= 0 || at !== email.lastIndexOf('@')) return undefined;
  const domain = email.slice(at + 1);
  if (!DOMAIN.test(domain)) return undefined;
  if (!options.canonicalGmail || !GOOGLE_MAIL.has(domain)) return email;
  const local = email.slice(0, at).split('+', 1)[0]!.replaceAll('.', '');
  return local ? local + '@' + domain : undefined;
}

/** Region codes: ISO 3166-1 alpha-2 as libphonenumber-js knows them (it adds AC, TA, XK; lacks AQ, BV…). */
const REGIONS: ReadonlySet<string> = new Set(getCountries());

/** Spellings seen in shop exports, by their uppercase form without dots. Deliberately short. */
const COUNTRY_ALIASES: ReadonlyMap<string, CountryCode> = new Map([
  ['UK', 'GB'],
  ['UNITED KINGDOM', 'GB'],
  ['GREAT BRITAIN', 'GB'],
  ['USA', 'US'],
  ['UNITED STATES', 'US'],
  ['UNITED STATES OF AMERICA', 'US'],
  ['GERMANY', 'DE'],
  ['DEUTSCHLAND', 'DE'],
  ['FRANCE', 'FR'],
]);

/** ISO 3166-1 alpha-2 in uppercase (` us ` → `US`, `U.K.` → `GB`, `Deutschland` → `DE`); undefined if unknown. */
export function normalizeCountry(raw: string): CountryCode | undefined {
  const key = raw.replace(/\./g, '').replace(ANY_SPACE, ' ').trim().toUpperCase();
  if (key.length === 2 && REGIONS.has(key)) return key as CountryCode;
  return COUNTRY_ALIASES.get(key);
}

// A country column has few distinct values: remember them, up to a bound against a column of junk.
const regionCache = new Map<string, CountryCode | undefined>();
const REGION_CACHE_LIMIT = 1000;

function region(raw: string): CountryCode | undefined {
  if (regionCache.has(raw)) return regionCache.get(raw);
  const code = normalizeCountry(raw);
  if (regionCache.size < REGION_CACHE_LIMIT) regionCache.set(raw, code);
  return code;
}

/**
 * E.164 (`+18005550100`) per libphonenumber-js, or undefined when it finds the number invalid.
 * `defaultCountry` (a code or a spelling `normalizeCountry` knows) reads national formats: pass the
 * customer's own country when known, else the configured default.
 */
export function normalizePhone(raw: string, defaultCountry?: string): string | undefined {
  if (!raw) return undefined;
  return phoneE164(raw, defaultCountry ? region(defaultCountry) : undefined);
}

/** Digits of the shortest national numbers worth a hint (libphonenumber's shortest are 4-5; those are rare). */
const NATIONAL_DIGITS = 6;

/**
 * Why a phone `normalizePhone` refused is unusable: written without its country code (no `+`) for a person
 * with no country of their own, it is a number a country would read, so the reason says how to give one;
 * otherwise it is an invalid phone.
 */
export function phoneSkip(
  raw: string,
  ownCountry: string | undefined,
): 'invalid phone' | typeof PHONE_WITHOUT_COUNTRY {
  const value = raw.trim();
  if (value.startsWith('+') || (ownCountry !== undefined && region(ownCountry) !== undefined))
    return 'invalid phone';
  return (value.match(/\d/g)?.length ?? 0) >= NATIONAL_DIGITS ? PHONE_WITHOUT_COUNTRY : 'invalid phone';
}

// Letters and their combining marks are kept; punctuation, symbols and digits are not part of a name.
const NOT_NAME = /[^\p{L}\p{M}\s]+/gu;
const NAME_PREFIXES: ReadonlySet<string> = new Set(['mr', 'mrs', 'ms', 'dr']);
const NAME_SUFFIXES: ReadonlySet<string> = new Set(['jr', 'sr', 'ii', 'iii', 'iv']);

/**
 * Name lowercased, in Unicode NFC (`José` → `josé` whichever way the accent was encoded), without
 * punctuation, symbols or digits, words separated by one space (`O'Brien-Smith  Jr.` → `obriensmith jr`).
 * `stripAffixes` (Google: "no prefixes or suffixes") drops leading mr/mrs/ms/dr and trailing jr/sr/ii/iii/iv.
 */
export function normalizeName(raw: string, options: { stripAffixes?: boolean } = {}): string | undefined {
  const words = raw.toLowerCase().normalize('NFC').replace(NOT_NAME, '').split(ANY_SPACE);
  let start = 0;
  let end = words.length;
  while (start < end && words[start] === '') start++;
  while (end > start && words[end - 1] === '') end--;
  if (options.stripAffixes) {
    while (start < end && NAME_PREFIXES.has(words[start]!)) start++;
    while (end > start && NAME_SUFFIXES.has(words[end - 1]!)) end--;
  }
  return start < end ? words.slice(start, end).join(' ') : undefined;
}

/** Countries whose postal codes are always five digits: a four-digit one lost its leading zero. */
const FIVE_DIGITS: ReadonlySet<string> = new Set(['US', 'DE', 'FR', 'ES', 'IT']);
// The code, then an optional four-digit extension, dash or not (`940451234`, `9539-1234`).
const FIVE_DIGITS_WITH_EXTENSION = /^(\d{3,5})(?:-?\d{4})?$/;
/** UK and Canadian postcodes end with a three-character inward code, written after one space. */
const INWARD_CODE = { GB: /^([A-Z]{1,2}\d[A-Z\d]?)(\d[A-Z]{2})$/, CA: /^([A-Z]\d[A-Z])(\d[A-Z]\d)$/ };
const POSTAL = /^[A-Z\d](?:[A-Z\d -]{0,10}[A-Z\d])?$/;

/**
 * Postal code as Google takes it ("US: 5 digits or ZIP+4; elsewhere no extension"), for a normalised
 * country code:
 * - US: the five-digit ZIP; a ZIP+4 is cut to its ZIP and a ZIP that lost leading zeros in a spreadsheet
 *   is padded (`9539` → `09539`), so one address keeps one form;
 * - DE, FR, ES, IT: five digits, padded the same way, any `-1234` extension dropped;
 * - GB, CA: uppercase with the one space before the inward code (`sw1a1aa` → `SW1A 1AA`);
 * - elsewhere: uppercase, spaces collapsed, as the country writes it.
 * Undefined when the value cannot be a postal code of that country.
 */
export function normalizePostal(raw: string, country: string | undefined): string | undefined {
  const compact = raw.replace(ANY_SPACE, '').toUpperCase();
  if (!compact) return undefined;
  if (country && FIVE_DIGITS.has(country)) {
    const m = FIVE_DIGITS_WITH_EXTENSION.exec(compact);
    return m ? m[1]!.padStart(5, '0') : undefined;
  }
  if (country === 'GB' || country === 'CA') {
    const m = INWARD_CODE[country].exec(compact);
    return m ? `${m[1]} ${m[2]}` : undefined;
  }
  const written = raw.replace(ANY_SPACE, ' ').trim().toUpperCase();
  return POSTAL.test(written) ? written : undefined;
}
