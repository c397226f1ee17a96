/**
 * Deterministic generator of synthetic shops: an `orders.csv` and a `customers.csv` with realistic
 * distributions (skewed recency, long-tailed order counts and spend) and realistic dirt in the identifiers
 * (mixed case, stray spaces, Gmail dots and +tags, local phone formats, missing fields, shared household
 * emails). Everything is streamed, so millions of customers never sit in memory, and the same options
 * always produce byte-identical files.
 *
 * All people are fictional: names come from small built-in lists, non-Gmail addresses use reserved
 * example domains, and phone numbers come from ranges reserved for fiction (US 555-01xx, Ofcom drama
 * numbers, Bundesnetzagentur "drama numbers", ARCEP fiction numbers).
 */
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';

import { Rng } from './rng.js';

export interface ShopOptions {
  /** Number of customers. */
  customers: number;
  /** PRNG seed (safe integer), default 42. */
  seed?: number;
  /** 'YYYY-MM-DD', default '2026-01-01'. All orders are on or before this date, over ~3 years before it. */
  analysisDate?: string;
  /** Mean orders per customer (>= 1), default 5. */
  ordersPerCustomer?: number;
  /** Share of customers who opted out of marketing, default 0.02. */
  optOutShare?: number;
  /** Share of order rows made invalid (bad date, bad amount or empty customer id), default 0. */
  badRowShare?: number;
  /** Called from time to time with the number of customers written so far. */
  onProgress?: (customersDone: number, customersTotal: number) => void;
}

export interface ShopSummary {
  customers: number;
  orders: number;
  badRows: number;
  files: { orders: string; customers: string };
}

export const ORDERS_HEADER = 'customer_id,order_date,amount';
export const CUSTOMERS_HEADER =
  'customer_id,email,phone,first_name,last_name,country,postal_code,opted_out,favorite_brand,sessions';
export const BRANDS = ['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli'] as const;
export const DEFAULT_SEED = 42;
export const DEFAULT_ANALYSIS_DATE = '2026-01-01';
export const DEFAULT_ORDERS_PER_CUSTOMER = 5;
export const DEFAULT_OPT_OUT_SHARE = 0.02;
/** Orders are spread over this many days, ending on the analysis date (inclusive). */
export const HISTORY_DAYS = 3 * 365 + 1;

const MAX_ORDERS_PER_CUSTOMER = 1000;
const MAX_CUSTOMERS = 100_000_000;
const CHUNK_BYTES = 1 << 20;
const STREAM_HIGH_WATER_MARK = 8 << 20;
/** Upper bound of one order row in bytes: id (<= 10), date (10), amount (<= 9), separators (3). */
const MAX_ORDER_ROW_BYTES = 48;

// Independent PRNG streams: behaviour (orders, sessions), identity (names, contacts) and bad-row injection,
// so that e.g. turning on bad rows or changing the opt-out share does not shift the order statistics.
const STREAM_BEHAVIOUR = 1;
const STREAM_IDENTITY = 2;
const STREAM_BAD_ROWS = 3;
const STREAM_EMAIL_NUMBERS = 4;

// ---------------------------------------------------------------------------------------------------------
// Options

interface ResolvedOptions {
  customers: number;
  seed: number;
  analysisDate: string;
  analysisDay: number;
  ordersPerCustomer: number;
  optOutShare: number;
  badRowShare: number;
}

function checkShare(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0 || value > 1) {
    throw new RangeError(`${name} must be a number between 0 and 1, got ${value}`);
  }
  return value;
}

/** Days since 1970-01-01 of a strict 'YYYY-MM-DD' date, or throws. */
export function parseIsoDay(date: string): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  if (!m) throw new RangeError(`analysisDate must look like YYYY-MM-DD, got ${JSON.stringify(date)}`);
  const y = Number(m[1]);
  const mo = Number(m[2]);
  const d = Number(m[3]);
  const ms = Date.UTC(y, mo - 1, d);
  const check = new Date(ms);
  if (check.getUTCFullYear() !== y || check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== d) {
    throw new RangeError(`analysisDate is not a valid calendar date: ${date}`);
  }
  return Math.round(ms / 86_400_000);
}

function resolveOptions(options: ShopOptions): ResolvedOptions {
  const customers = options.customers;
  if (!Number.isSafeInteger(customers) || customers < 0 || customers > MAX_CUSTOMERS) {
    throw new RangeError(`customers must be an integer between 0 and ${MAX_CUSTOMERS}, got ${customers}`);
  }
  const seed = options.seed ?? DEFAULT_SEED;
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const analysisDate = options.analysisDate ?? DEFAULT_ANALYSIS_DATE;
  const analysisDay = parseIsoDay(analysisDate);
  const year = Number(analysisDate.slice(0, 4));
  if (year < 1900) throw new RangeError(`analysisDate must be in 1900 or later, got ${analysisDate}`);
  const ordersPerCustomer = options.ordersPerCustomer ?? DEFAULT_ORDERS_PER_CUSTOMER;
  if (!Number.isFinite(ordersPerCustomer) || ordersPerCustomer < 1 || ordersPerCustomer > 100) {
    throw new RangeError(`ordersPerCustomer must be between 1 and 100, got ${ordersPerCustomer}`);
  }
  return {
    customers,
    seed,
    analysisDate,
    analysisDay,
    ordersPerCustomer,
    optOutShare: checkShare('optOutShare', options.optOutShare ?? DEFAULT_OPT_OUT_SHARE),
    badRowShare: checkShare('badRowShare', options.badRowShare ?? 0),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Output

/** A file write stream fed with large byte chunks, honouring back-pressure and surfacing errors. */
class ChunkSink {
  private readonly stream: WriteStream;
  private error: Error | null = null;

  constructor(path: string) {
    this.stream = createWriteStream(path, { highWaterMark: STREAM_HIGH_WATER_MARK });
    this.stream.on('error', (err) => {
      this.error ??= err;
    });
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.error) throw this.error;
    if (!this.stream.write(chunk)) await once(this.stream, 'drain');
  }

  async close(): Promise<void> {
    if (this.error) throw this.error;
    this.stream.end();
    await finished(this.stream);
    if (this.error) throw this.error;
  }

  destroy(): void {
    this.stream.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Formatting helpers

const TWO_DIGITS: readonly string[] = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));

const COMMA = 0x2c;
const NEWLINE = 0x0a;
const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;

/** Writes an amount in cents as e.g. `23.90` or `-5.00` at `pos`; returns the position after it. */
function writeCents(buf: Uint8Array, pos: number, cents: number): number {
  let p = pos;
  let c = cents;
  if (c < 0) {
    buf[p++] = MINUS;
    c = -c;
  }
  let units = Math.floor(c / 100);
  const fraction = c - units * 100;
  let len = 1;
  for (let t = units; t >= 10; t = Math.floor(t / 10)) len++;
  p += len;
  for (let q = p - 1; q >= p - len; q--) {
    const next = Math.floor(units / 10);
    buf[q] = ZERO + units - next * 10;
    units = next;
  }
  const tens = Math.floor(fraction / 10);
  buf[p++] = DOT;
  buf[p++] = ZERO + tens;
  buf[p++] = ZERO + fraction - tens * 10;
  return p;
}

function writeAscii(buf: Uint8Array, pos: number, bytes: Uint8Array): number {
  let p = pos;
  for (let i = 0; i < bytes.length; i++) buf[p++] = bytes[i] as number;
  return p;
}

/**
 * ASCII 'YYYY-MM-DD' of each day of the history, concatenated: day k (0 = oldest, HISTORY_DAYS - 1 = the
 * analysis date) is at bytes [10k, 10k + 10).
 */
function buildDateTable(analysisDay: number): Uint8Array {
  let text = '';
  for (let k = 0; k < HISTORY_DAYS; k++) {
    const d = new Date((analysisDay - HISTORY_DAYS + 1 + k) * 86_400_000);
    text +=
      String(d.getUTCFullYear()).padStart(4, '0') +
      '-' +
      TWO_DIGITS[d.getUTCMonth() + 1] +
      '-' +
      TWO_DIGITS[d.getUTCDate()];
  }
  return Buffer.from(text, 'latin1');
}

const BAD_DATES = [Buffer.from('not-a-date', 'latin1'), Buffer.from('2024-13-45', 'latin1')];
const BAD_AMOUNTS = [Buffer.from('"12,3x"', 'latin1'), Buffer.from('abc', 'latin1')];

function digits(rng: Rng, count: number): string {
  let s = '';
  for (let i = 0; i < count; i++) s += String(rng.int(10));
  return s;
}

function pairs(s: string, sep: string): string {
  let out = s.slice(0, 2);
  for (let i = 2; i < s.length; i += 2) out += sep + s.slice(i, i + 2);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Countries, names, phones, postal codes

interface Person {
  readonly display: string;
  /** Lower-case ASCII letters only, for email local parts. */
  readonly ascii: string;
}

function toAscii(name: string): string {
  return name
    .replace(/ß/g, 'ss')
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z]/g, '');
}

function people(names: readonly string[]): readonly Person[] {
  return names.map((display) => ({ display, ascii: toAscii(display) }));
}

interface Country {
  readonly code: string;
  readonly weight: number;
  readonly firstNames: readonly Person[];
  readonly lastNames: readonly Person[];
  phone(rng: Rng): string;
  postalCode(rng: Rng): string;
}

const US_AREA_CODES = ['206', '212', '213', '305', '312', '404', '415', '503', '512', '617', '646', '702'];

function usPhone(rng: Rng): string {
  const a = rng.pick(US_AREA_CODES);
  const line = '01' + TWO_DIGITS[rng.int(100)]; // 555-0100..555-0199 are reserved for fiction
  switch (rng.int(7)) {
    case 0:
      return `(${a}) 555-${line}`;
    case 1:
      return `${a}.555.${line}`;
    case 2:
      return `+1 ${a} 555 ${line}`;
    case 3:
      return `${a}-555-${line}`;
    case 4:
      return `${a}555${line}`;
    case 5:
      return `1-${a}-555-${line}`;
    default:
      return `+1${a}555${line}`;
  }
}

function usPostalCode(rng: Rng): string {
  let zip = String(1001 + rng.int(98_950)).padStart(5, '0');
  // Spreadsheet dirt: ZIP codes that lost their leading zero.
  if (zip.startsWith('0') && rng.chance(0.25)) zip = zip.slice(1);
  if (rng.chance(0.15)) zip += '-' + digits(rng, 4);
  return zip;
}

function gbPhone(rng: Rng): string {
  const x = digits(rng, 3);
  if (rng.chance(0.55)) {
    // London drama numbers 020 7946 0000..0999
    switch (rng.int(5)) {
      case 0:
        return `+44 20 7946 0${x}`;
      case 1:
        return `(020) 7946 0${x}`;
      case 2:
        return `02079460${x}`;
      case 3:
        return `+44 (0)20 7946 0${x}`;
      default:
        return `020 7946 0${x}`;
    }
  }
  // Mobile drama numbers 07700 900000..900999
  switch (rng.int(5)) {
    case 0:
      return `+44 7700 900${x}`;
    case 1:
      return `07700900${x}`;
    case 2:
      return `+447700900${x}`;
    case 3:
      return `07700 900 ${x}`;
    default:
      return `07700 900${x}`;
  }
}

// prettier-ignore
const GB_OUTWARD = [
  'SW1A', 'SW3', 'SE1', 'N1', 'E2', 'W1D', 'EC1A', 'WC2H', 'NW3', 'M1', 'M20', 'B15', 'L1', 'LS6', 'G12',
  'EH1', 'BS8', 'CF10', 'OX1', 'CB2', 'BN1', 'NE1',
];
const GB_INWARD_LETTERS = 'ABDEFGHJLNPQRSTUWXYZ';

function gbPostalCode(rng: Rng): string {
  const outward = rng.pick(GB_OUTWARD);
  const inward =
    String(rng.int(10)) +
    GB_INWARD_LETTERS.charAt(rng.int(GB_INWARD_LETTERS.length)) +
    GB_INWARD_LETTERS.charAt(rng.int(GB_INWARD_LETTERS.length));
  const style = rng.float();
  if (style < 0.1) return `${outward} ${inward}`.toLowerCase();
  if (style < 0.2) return outward + inward;
  return `${outward} ${inward}`;
}

// Bundesnetzagentur drama numbers: <area code> <block> 000..999
const DE_DRAMA_BLOCKS: readonly (readonly [string, string])[] = [
  ['30', '23125'],
  ['40', '66969'],
  ['69', '90009'],
  ['89', '99998'],
  ['221', '4710'],
];

function dePhone(rng: Rng): string {
  const [area, block] = rng.pick(DE_DRAMA_BLOCKS);
  const sub = block + digits(rng, 3);
  switch (rng.int(7)) {
    case 0:
      return `+49 ${area} ${sub}`;
    case 1:
      return `0${area}/${sub}`;
    case 2:
      return `(0${area}) ${sub}`;
    case 3:
      return `+49 (0)${area} ${sub}`;
    case 4:
      return `0${area}${sub}`;
    case 5:
      return `0049 ${area} ${sub}`;
    default:
      return `0${area} ${sub}`;
  }
}

function dePostalCode(rng: Rng): string {
  return String(1067 + rng.int(98_932)).padStart(5, '0');
}

// ARCEP numbers reserved for fiction: 01 99 00 xx xx (geographic) and 06 39 98 xx xx (mobile)
const FR_FICTION_PREFIXES = ['019900', '063998'];

function frPhone(rng: Rng): string {
  const national = rng.pick(FR_FICTION_PREFIXES) + digits(rng, 4);
  switch (rng.int(6)) {
    case 0:
      return national;
    case 1:
      return pairs(national, '.');
    case 2:
      return `+33 ${national.charAt(1)} ${pairs(national.slice(2), ' ')}`;
    case 3:
      return '+33' + national.slice(1);
    case 4:
      return pairs(national, '-');
    default:
      return pairs(national, ' ');
  }
}

function frPostalCode(rng: Rng): string {
  return String((1 + rng.int(95)) * 1000 + rng.int(1000)).padStart(5, '0');
}

// prettier-ignore
const COUNTRIES: readonly Country[] = [
  {
    code: 'US',
    weight: 0.5,
    firstNames: people([
      'James', 'Mary', 'Michael', 'Jennifer', 'Robert', 'Linda', 'David', 'Olivia', 'Emma', 'Noah', 'Liam',
      'Sophia', 'José', 'Zoë', 'Ana', 'Carlos', 'Aiden', 'Chloe', 'Ethan', 'Grace', 'Jane', 'John',
    ]),
    lastNames: people([
      'Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Garcia', 'Miller', 'Davis', 'Rodríguez', 'Martinez',
      'Lee', 'Nguyen', "O'Connor", 'Peña', 'Doe',
    ]),
    phone: usPhone,
    postalCode: usPostalCode,
  },
  {
    code: 'GB',
    weight: 0.2,
    firstNames: people([
      'Oliver', 'Amelia', 'George', 'Isla', 'Harry', 'Ava', 'Jack', 'Sophie', 'Charlie', 'Zoë', 'Siobhán',
      'Rhys', 'Freya', 'Thomas', 'Ellie',
    ]),
    lastNames: people([
      'Smith', 'Jones', 'Taylor', 'Brown', 'Williams', 'Wilson', 'Evans', 'Thomas', 'Davies', "O'Brien",
      'Patel', 'Hughes',
    ]),
    phone: gbPhone,
    postalCode: gbPostalCode,
  },
  {
    code: 'DE',
    weight: 0.15,
    firstNames: people([
      'Lukas', 'Mia', 'Leon', 'Hannah', 'Jürgen', 'Björn', 'Lena', 'Felix', 'Sophie', 'Jonas', 'Zoë',
      'Günter', 'Anja', 'Maximilian',
    ]),
    lastNames: people([
      'Müller', 'Schmidt', 'Schneider', 'Fischer', 'Weber', 'Meyer', 'Wagner', 'Becker', 'Schäfer', 'Koch',
      'Hoffmann', 'Groß',
    ]),
    phone: dePhone,
    postalCode: dePostalCode,
  },
  {
    code: 'FR',
    weight: 0.15,
    firstNames: people([
      'Léa', 'Chloé', 'Hugo', 'Louis', 'Camille', 'Zoë', 'François', 'Emma', 'Jules', 'Manon', 'Noël',
      'Renée', 'Théo', 'Inès',
    ]),
    lastNames: people([
      'Martin', 'Bernard', 'Dubois', 'Thomas', 'Robert', 'Richard', 'Petit', 'Durand', 'Lefèvre', 'Girard',
      'Moreau', 'Leroy',
    ]),
    phone: frPhone,
    postalCode: frPostalCode,
  },
];

function pickCountry(rng: Rng): Country {
  let x = rng.float();
  for (const c of COUNTRIES) {
    x -= c.weight;
    if (x < 0) return c;
  }
  return COUNTRIES[COUNTRIES.length - 1] as Country;
}

function pickBrand(rng: Rng): string {
  const x = rng.float();
  if (x < 0.3) return 'Acme';
  if (x < 0.55) return 'Globex';
  if (x < 0.75) return 'Initech';
  if (x < 0.9) return 'Umbrella';
  return 'Hooli';
}

// ---------------------------------------------------------------------------------------------------------
// Identifier dirt

function dirtyCountry(rng: Rng, code: string): string {
  const x = rng.float();
  if (x < 0.8) return code;
  if (x < 0.9) return code.toLowerCase();
  if (x < 0.94) return ' ' + code;
  if (x < 0.97) return code + ' ';
  return code.charAt(0) + code.slice(1).toLowerCase();
}

function dirtyName(rng: Rng, name: string): string {
  const x = rng.float();
  if (x < 0.03) return '';
  if (x < 0.11) return name.toLowerCase();
  if (x < 0.15) return name.toUpperCase();
  if (x < 0.18) return ' ' + name + ' ';
  if (x < 0.21) return name + ' ';
  if (x < 0.23) return ' ' + name;
  return name;
}

const GMAIL = 'gmail.com';
const GOOGLEMAIL = 'googlemail.com';
const EMAIL_TAGS = ['promo', 'shop', 'news', 'deals', 'ads', '2025', 'x'];
const GMAIL_DOMAIN_SPELLINGS = ['GMail.com', 'Gmail.com', 'GMAIL.COM', 'gmail.COM'];

function pickDomain(rng: Rng): string {
  const x = rng.float();
  if (x < 0.4) return GMAIL;
  if (x < 0.44) return GOOGLEMAIL;
  if (x < 0.62) return 'example.com';
  if (x < 0.74) return 'example.org';
  if (x < 0.86) return 'mail.example.net';
  if (x < 0.93) return 'inbox.example.org';
  return 'webmail.example.com';
}

/**
 * Clean email local part: name letters, a separator and a number that is unique per customer, so that
 * distinct customers never share an address unless they are deliberately made a household.
 */
function emailLocal(rng: Rng, first: Person, last: Person, uniqueNumber: number): string {
  const f = first.ascii || 'user';
  const l = last.ascii || 'shopper';
  let letters: string;
  switch (rng.int(6)) {
    case 0:
      letters = `${f}.${l}`;
      break;
    case 1:
      letters = f + l;
      break;
    case 2:
      letters = `${f.charAt(0)}.${l}`;
      break;
    case 3:
      letters = `${f}_${l}`;
      break;
    case 4:
      letters = `${l}.${f}`;
      break;
    default:
      letters = f + l.charAt(0);
  }
  const sep = rng.float();
  return letters + (sep < 0.7 ? '' : sep < 0.85 ? '.' : '_') + uniqueNumber;
}

function insertGmailDots(rng: Rng, local: string): string {
  let out = local;
  const n = 1 + rng.int(2);
  for (let k = 0; k < n; k++) {
    const p = 1 + rng.int(Math.max(1, out.length - 1));
    if (p >= out.length || out.charAt(p - 1) === '.' || out.charAt(p) === '.') continue;
    out = out.slice(0, p) + '.' + out.slice(p);
  }
  return out;
}

function capitaliseParts(local: string): string {
  return local.replace(/(^|[._])([a-z])/g, (_m, sep: string, ch: string) => sep + ch.toUpperCase());
}

/** Raw email as a customer might have typed it, from a clean local part and domain. */
function dirtyEmail(rng: Rng, local: string, domain: string): string {
  let l = local;
  let d = domain;
  const isGoogle = domain === GMAIL || domain === GOOGLEMAIL;
  if (isGoogle) {
    const dots = rng.float();
    if (dots < 0.25) l = insertGmailDots(rng, l);
    else if (dots < 0.35) l = l.replace(/\./g, '');
    if (rng.chance(0.15)) l += '+' + rng.pick(EMAIL_TAGS);
    if (domain === GMAIL && rng.chance(0.2)) d = rng.pick(GMAIL_DOMAIN_SPELLINGS);
  } else if (rng.chance(0.04)) {
    l += '+' + rng.pick(EMAIL_TAGS);
  }
  let email = l + '@' + d;
  const c = rng.float();
  if (c < 0.12) email = capitaliseParts(l) + '@' + d;
  else if (c < 0.16) email = email.toUpperCase();
  const s = rng.float();
  if (s < 0.03) email = ' ' + email + ' ';
  else if (s < 0.05) email = ' ' + email;
  else if (s < 0.07) email = email + ' ';
  return email;
}

// ---------------------------------------------------------------------------------------------------------
// Generator

interface HouseholdSeed {
  country: Country;
  last: Person;
  postal: string;
  local: string;
  domain: string;
}

/**
 * A seeded bijection of [0, 10^k) (10^k >= customers), so that each customer gets a distinct,
 * random-looking number for its email address. Bijective mixing of k-bit integers (add, multiply by an
 * odd constant, xor-shift), cycle-walked back into range.
 */
function uniqueNumberPermutation(customers: number, seed: number): (index: number) => number {
  let modulus = 100;
  while (modulus < customers) modulus *= 10;
  let bits = 1;
  while (2 ** bits < modulus) bits++;
  const mask = bits >= 32 ? -1 : (1 << bits) - 1;
  const shift = Math.max(1, bits >> 1);
  const rng = new Rng(seed, STREAM_EMAIL_NUMBERS);
  const keys = [rng.nextU32(), rng.nextU32(), rng.nextU32()];
  const round = (x: number): number => {
    let v = x;
    for (const key of keys) {
      v = (v + key) & mask;
      v = Math.imul(v, 0x2c1b3c6d) & mask;
      v ^= v >>> shift;
    }
    return v >>> 0;
  };
  return (index) => {
    let v = round(index % modulus);
    while (v >= modulus) v = round(v);
    return v;
  };
}

/**
 * Writes `orders.csv` and `customers.csv` into `dir` (created if missing). Deterministic for given options.
 */
export async function generateShop(dir: string, options: ShopOptions): Promise<ShopSummary> {
  const o = resolveOptions(options);
  await mkdir(dir, { recursive: true });
  const files = { orders: join(dir, 'orders.csv'), customers: join(dir, 'customers.csv') };

  const behaviour = new Rng(o.seed, STREAM_BEHAVIOUR);
  const identity = new Rng(o.seed, STREAM_IDENTITY);
  const badRng = new Rng(o.seed, STREAM_BAD_ROWS);
  const dates = buildDateTable(o.analysisDay);
  const idWidth = Math.max(7, String(o.customers).length);
  const uniqueNumber = uniqueNumberPermutation(o.customers, o.seed);
  const days = new Int32Array(MAX_ORDERS_PER_CUSTOMER);
  const idBytes = new Uint8Array(idWidth + 1);
  idBytes[0] = 0x43; // 'C'
  const extraOrdersPerCustomer = o.ordersPerCustomer - 1;
  const badShare = o.badRowShare;

  const ordersSink = new ChunkSink(files.orders);
  const customersSink = new ChunkSink(files.customers);
  let orderCount = 0;
  let badRows = 0;
  let household: HouseholdSeed | null = null;

  try {
    let ob = Buffer.allocUnsafe(CHUNK_BYTES);
    let op = ob.write(ORDERS_HEADER + '\n', 0, 'latin1');
    let cb = Buffer.allocUnsafe(CHUNK_BYTES);
    let cp = cb.write(CUSTOMERS_HEADER + '\n', 0, 'utf8');

    for (let i = 1; i <= o.customers; i++) {
      const id = 'C' + String(i).padStart(idWidth, '0');
      for (let c = 0, v = i; c < idWidth; c++, v = Math.floor(v / 10)) idBytes[idWidth - c] = ZERO + (v % 10);

      // --- Behaviour: order count, dates, amounts, sessions -------------------------------------------
      // Loyalty is lognormal with mean 1; the order count is 1 + geometric with mean (K - 1) * loyalty,
      // a mixture with a long tail.
      const loyalty = Math.exp(0.9 * behaviour.normal() - 0.405);
      const extraMean = extraOrdersPerCustomer * loyalty;
      const u = behaviour.floatOpen();
      let count = 1;
      if (extraMean > 0) count += Math.floor(Math.log(u) / Math.log(extraMean / (1 + extraMean)));
      if (count > MAX_ORDERS_PER_CUSTOMER) count = MAX_ORDERS_PER_CUSTOMER;

      // Recency: most customers bought recently (exponential, mean ~10 weeks), the rest lapsed at any time;
      // loyal customers are more likely to be active.
      let recency: number;
      const active = behaviour.float() < (loyalty > 2 ? 0.85 : 0.6);
      const ru = behaviour.floatOpen();
      if (active) {
        recency = Math.floor(-Math.log(ru) * 70);
        if (recency >= HISTORY_DAYS) recency = Math.floor(ru * HISTORY_DAYS);
      } else {
        recency = 60 + Math.floor(ru * (HISTORY_DAYS - 60));
      }
      const lastDay = HISTORY_DAYS - 1 - recency;
      // Tenure: the span between first and last purchase, longer for customers with more orders
      // (distributed like the maximum of count - 1 uniforms).
      const su = behaviour.float();
      const span =
        count > 1 ? Math.min(lastDay, Math.floor(Math.pow(su, 1 / (count - 1)) * (lastDay + 1))) : 0;
      const firstDay = lastDay - span;
      days[0] = firstDay;
      days[count - 1] = lastDay;
      for (let k = 1; k < count - 1; k++) {
        // insertion into the sorted prefix days[1..k)
        const day = firstDay + Math.floor(behaviour.float() * (span + 1));
        let j = k;
        while (j > 1 && (days[j - 1] as number) > day) {
          days[j] = days[j - 1] as number;
          j--;
        }
        days[j] = day;
      }

      // Spend: lognormal basket per customer (median ~28), a few big spenders, per-order variation.
      let basket = 3.33 + 0.55 * behaviour.normal();
      if (behaviour.float() < 0.03) basket += 1.6;

      if (op + count * MAX_ORDER_ROW_BYTES > ob.length) {
        await ordersSink.write(ob.subarray(0, op));
        ob = Buffer.allocUnsafe(CHUNK_BYTES);
        op = 0;
        options.onProgress?.(i - 1, o.customers);
      }
      for (let k = 0; k < count; k++) {
        let cents = Math.round(Math.exp(basket + 0.35 * behaviour.normal()) * 100);
        if (cents < 50) cents = 50;
        else if (cents > 5_000_000) cents = 5_000_000;
        // Rare refunds (negative) and free / fully discounted orders (zero).
        const special = behaviour.float();
        if (special < 0.003) cents = -cents;
        else if (special < 0.005) cents = 0;

        // Bad rows replace one field of an otherwise normal row; they come from their own PRNG stream.
        const bad = badShare > 0 && badRng.float() < badShare ? 1 + badRng.int(5) : 0;
        if (bad) badRows++;
        if (bad !== 5) op = writeAscii(ob, op, idBytes);
        ob[op++] = COMMA;
        if (bad === 1 || bad === 2) {
          op = writeAscii(ob, op, BAD_DATES[bad - 1] as Uint8Array);
        } else {
          const d = (days[k] as number) * 10;
          for (let b = 0; b < 10; b++) ob[op++] = dates[d + b] as number;
        }
        ob[op++] = COMMA;
        if (bad === 3 || bad === 4) op = writeAscii(ob, op, BAD_AMOUNTS[bad - 3] as Uint8Array);
        else op = writeCents(ob, op, cents);
        ob[op++] = NEWLINE;
      }
      orderCount += count;

      // Engagement: sessions grow with orders, plus browsing noise.
      const sessions = Math.floor(
        count * (1 + 3 * Math.exp(0.5 * behaviour.normal() - 0.125)) - Math.log(behaviour.floatOpen()) * 6,
      );

      // --- Identity ------------------------------------------------------------------------------------
      // A few customers join the previous customer's household: same address, last name and email.
      const hh: HouseholdSeed | null = household !== null && identity.chance(0.004) ? household : null;
      const country: Country = hh ? hh.country : pickCountry(identity);
      const first: Person = identity.pick(country.firstNames);
      const last: Person = hh ? hh.last : identity.pick(country.lastNames);
      const local: string = hh ? hh.local : emailLocal(identity, first, last, uniqueNumber(i));
      const domain: string = hh ? hh.domain : pickDomain(identity);
      const email: string = identity.chance(hh ? 0 : 0.05) ? '' : dirtyEmail(identity, local, domain);
      const phone = identity.chance(0.2) ? '' : country.phone(identity);
      let postal: string;
      if (hh) postal = hh.postal;
      else postal = identity.chance(0.04) ? '' : country.postalCode(identity);
      const optedOut = identity.float() < o.optOutShare;
      const brand = pickBrand(identity);
      household = hh !== null || email === '' ? null : { country, last, postal, local, domain };

      const row =
        id +
        ',' +
        email +
        ',' +
        phone +
        ',' +
        dirtyName(identity, first.display) +
        ',' +
        dirtyName(identity, last.display) +
        ',' +
        dirtyCountry(identity, country.code) +
        ',' +
        postal +
        ',' +
        (optedOut ? 'true' : 'false') +
        ',' +
        brand +
        ',' +
        sessions +
        '\n';

      if (cp + row.length * 3 > cb.length) {
        await customersSink.write(cb.subarray(0, cp));
        cb = Buffer.allocUnsafe(CHUNK_BYTES);
        cp = 0;
      }
      cp += cb.write(row, cp, 'utf8');
    }

    await ordersSink.write(ob.subarray(0, op));
    await customersSink.write(cb.subarray(0, cp));
    await Promise.all([ordersSink.close(), customersSink.close()]);
    options.onProgress?.(o.customers, o.customers);
  } catch (err) {
    ordersSink.destroy();
    customersSink.destroy();
    throw err;
  }

  return { customers: o.customers, orders: orderCount, badRows, files };
}
