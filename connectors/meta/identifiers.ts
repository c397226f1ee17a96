import { z } from 'zod';
import {
  hashIdentifier,
  isSha256Hex,
  repeatedIdentifier,
  sha256Slot,
  SLOT_BYTES,
} from '../../src/identify/hash.js';
import {
  normalizeCountry,
  normalizeEmail,
  normalizeName,
  normalizePhone,
  normalizePostal,
  phoneSkip,
} from '../../src/identify/normalize.js';
import {
  PHONE_WITHOUT_COUNTRY,
  type Identified,
  type Person,
  type SkipReason,
  type Slot,
} from '../../src/identify/types.js';
import type { Member } from '../../src/connector.js';
import { slotMask } from '../../src/record/records.js';

/**
 * Meta custom audience identifiers, one slot per key of the configured schema, in its order. Everything
 * is the SHA-256 of Meta's normalised form, except EXTERN_ID and MADID, which Meta takes in plaintext:
 * those are stored as they are, packed into the 32-byte slot (`packPlain`); a value that does not fit is
 * left out ('identifier too long' when it was all there was).
 *
 * Person fields read: email, phone, first_name, last_name, city, state, postal_code, country, gender,
 * birth_date (`YYYY-MM-DD`), external_id, madid.
 */

/** An EXTERN_ID or MADID that does not fit the 32-byte state slot (the person is left out if it was all there was). */
export const TOO_LONG = 'identifier too long';

export const SCHEMA_KEYS = [
  'EXTERN_ID',
  'EMAIL',
  'PHONE',
  'GEN',
  'DOBY',
  'DOBM',
  'DOBD',
  'LN',
  'FN',
  'FI',
  'CT',
  'ST',
  'ZIP',
  'MADID',
  'COUNTRY',
] as const;
export type SchemaKey = (typeof SCHEMA_KEYS)[number];

/** The schema when none is configured: what a customer file usually has. EXTERN_ID is opt-in (plaintext). */
export const SLOTS: readonly SchemaKey[] = ['EMAIL', 'PHONE', 'FN', 'LN', 'ZIP', 'COUNTRY'];

/** Keys that identify someone on their own; the rest (names, city, ZIP, …) only together. */
const STANDALONE: readonly SchemaKey[] = ['EMAIL', 'PHONE', 'EXTERN_ID', 'MADID'];

/** For a schema, the slots that form one identifier for removals: every key that does not stand alone. */
export function identifierGroups(schema: readonly SchemaKey[]): number[][] {
  const together = schema.flatMap((key, i) => (STANDALONE.includes(key) ? [] : [i]));
  return together.length > 0 ? [together] : [];
}

const PLAINTEXT: ReadonlySet<SchemaKey> = new Set(['EXTERN_ID', 'MADID']);
/** Keys that identify someone alone; names only as a pair. The others only refine a match. */
const IDENTIFYING: ReadonlySet<SchemaKey> = new Set(['EXTERN_ID', 'EMAIL', 'PHONE', 'MADID']);

/** The `schema` setting: Meta's keys, each once, in the order of the data rows. */
export const schemaSetting = z
  .array(z.enum(SCHEMA_KEYS))
  .min(1, `list some of ${SCHEMA_KEYS.join(', ')}`)
  .refine((keys) => new Set(keys).size === keys.length, 'list each key once');

export interface MetaIdentifyOptions {
  schema?: readonly SchemaKey[];
  /** Country (ISO alpha-2) of customers without a usable country: reads their phones, ZIP and COUNTRY. */
  defaultCountry?: string | undefined;
}

export function identify(person: Person, options: MetaIdentifyOptions = {}): Identified {
  const schema = options.schema ?? SLOTS;
  const country =
    (person.country && normalizeCountry(person.country)) ||
    (options.defaultCountry ? normalizeCountry(options.defaultCountry) : undefined);
  const dob = birthDate(person.birth_date);

  const slots: (Slot | undefined)[] = [];
  const unusable = new Set<SkipReason>();
  let identifying = false;
  let names = 0;
  for (const key of schema) {
    let slot: Slot | null | undefined;
    switch (key) {
      case 'EMAIL':
        slot = hashIdentifier(person.email, (v) => normalizeEmail(v));
        if (slot === null) unusable.add('invalid email');
        break;
      case 'PHONE':
        slot = hashIdentifier(person.phone, (v) => normalizePhone(v, country)?.slice(1));
        if (slot === null) unusable.add(phoneSkip(person.phone!, person.country));
        break;
      case 'FN':
        slot = nameSlot(person.first_name);
        break;
      case 'LN':
        slot = nameSlot(person.last_name);
        break;
      case 'FI':
        slot = hashOf(firstInitial(person.first_name));
        break;
      case 'CT':
        slot = citySlot(person.city);
        break;
      case 'ST':
        slot = hashIdentifier(person.state, (v) => state(v, country));
        break;
      case 'ZIP':
        slot = hashIdentifier(person.postal_code, (v) => metaZip(v, country));
        break;
      case 'COUNTRY':
        slot = countrySlot(country ?? person.country);
        break;
      case 'GEN':
        slot = genderSlot(person.gender);
        break;
      case 'DOBY':
      case 'DOBM':
      case 'DOBD':
        slot = hashOf(dob?.[key]);
        break;
      case 'EXTERN_ID':
      case 'MADID': {
        const value = (key === 'MADID' ? person.madid : person.external_id)?.trim();
        slot = value ? (packPlain(value) ?? null) : undefined;
        if (slot === null) unusable.add(TOO_LONG);
        break;
      }
    }
    slots.push(slot ?? undefined);
    if (slot && IDENTIFYING.has(key)) identifying = true;
    if (slot && (key === 'FN' || key === 'LN')) names++;
  }
  if (identifying || names === 2) return { slots };
  return { skip: SKIP_ORDER.find((r) => unusable.has(r)) ?? 'no usable identifier' };
}

// Fields whose values repeat: each distinct value is hashed once (ST and ZIP depend on the country too).
const nameSlot = repeatedIdentifier((v) => normalizeName(v));
const citySlot = repeatedIdentifier(letters);
const countrySlot = repeatedIdentifier((v) => normalizeCountry(v)?.toLowerCase());
const genderSlot = repeatedIdentifier(gender);

/** The most telling reason first. */
const SKIP_ORDER: readonly SkipReason[] = ['invalid email', 'invalid phone', PHONE_WITHOUT_COUNTRY, TOO_LONG];

/** `identify` with a destination's settings (what the connector and the identify threads call). */
export function identifyMember(
  person: Person,
  config: { schema: readonly SchemaKey[]; default_country?: string | undefined },
): Identified {
  return identify(person, { schema: config.schema, defaultCountry: config.default_country });
}

/** The `data` row of a member for the schema: hex hashes, EXTERN_ID and MADID in plaintext, `""` if unknown. */
export function toRow(slots: readonly (Buffer | undefined)[], schema: readonly SchemaKey[]): string[] {
  return schema.map((key, i) => {
    const slot = slots[i];
    if (!slot) return '';
    return PLAINTEXT.has(key) ? unpackPlain(slot) : slot.toString('hex');
  });
}

const HEX = Buffer.from('0123456789abcdef', 'latin1');
/**
 * Two bytes' four hex digits, as the little-endian word that writes them in order: a slot is written in
 * 16 word stores, not 64 byte stores (0.37 s against 0.61 s for 5 M slots read in order, measured).
 */
const HEX4 = Uint32Array.from(
  { length: 65536 },
  (_, v) => HEX[v >> 12]! | (HEX[(v >> 8) & 15]! << 8) | (HEX[(v >> 4) & 15]! << 16) | (HEX[v & 15]! << 24),
);

/**
 * The JSON body of a `/users` or `/usersreplace` request, written from the members' slots straight into
 * bytes: what `JSON.stringify({ payload: { schema, data }, session })` gives for `toRow`'s rows, byte for
 * byte, without a string per cell (a request carries 10,000 members with up to 15 cells each). Members
 * with nothing for the schema are left out; `empty` has their indexes.
 */
export function usersBody(
  members: readonly Pick<Member, 'slots' | 'row'>[],
  schema: readonly SchemaKey[],
  session?: Record<string, number | boolean>,
): { body: Buffer; rows: number; empty: number[] } {
  const head = `{"payload":{"schema":${JSON.stringify(schema)},"data":[`;
  const tail = `]}${session ? `,"session":${JSON.stringify(session)}` : ''}}`;
  const plain = schema.map((key) => PLAINTEXT.has(key));
  const texts: string[] = [];
  const empty: number[] = [];
  // An upper bound of the size: a hashed cell is 64 hex digits in quotes, a plaintext one its JSON, and
  // every cell at most three more bytes of quotes and comma.
  let size = head.length + tail.length;
  members.forEach((m, index) => {
    // Its row's mask where it has one: the list of slots is read only for plaintext cells.
    const mask = slotMask(m);
    let cells = 0;
    for (let c = 0; c < schema.length; c++) {
      if (!(mask & (1 << c))) continue;
      cells++;
      if (!plain[c]) size += 64;
      else {
        const text = JSON.stringify(unpackPlain(m.slots[c]!));
        texts.push(text);
        size += Buffer.byteLength(text);
      }
    }
    if (cells === 0) empty.push(index);
    else size += schema.length * 3 + 2;
  });
  const out = Buffer.allocUnsafe(size);
  const words = new DataView(out.buffer, out.byteOffset, out.byteLength);
  let at = out.write(head, 0, 'utf8');
  let text = 0;
  let rows = 0;
  let skip = 0;
  for (let index = 0; index < members.length; index++) {
    if (empty[skip] === index) {
      skip++;
      continue;
    }
    const m = members[index]!;
    const mask = slotMask(m);
    if (rows++ > 0) out[at++] = 0x2c; // ,
    out[at++] = 0x5b; // [
    for (let c = 0; c < schema.length; c++) {
      if (c > 0) out[at++] = 0x2c;
      const present = (mask & (1 << c)) !== 0;
      if (present && plain[c]) {
        at += out.write(texts[text++]!, at, 'utf8');
        continue;
      }
      out[at++] = 0x22; // "
      if (present) {
        const bytes = m.row ? m.row.bytes : m.slots[c]!;
        const from = m.row ? m.row.at + c * SLOT_BYTES : 0;
        for (let k = from; k < from + SLOT_BYTES; k += 2) {
          words.setUint32(at, HEX4[(bytes[k]! << 8) | bytes[k + 1]!]!, true);
          at += 4;
        }
      }
      out[at++] = 0x22;
    }
    out[at++] = 0x5d; // ]
  }
  at += out.write(tail, at, 'utf8');
  return { body: out.subarray(0, at), rows, empty };
}

// ---------------------------------------------------------------------------------------------------------
// Meta's formats

/** Lowercase letters only (CT; Meta: "lowercase letters only"), accented letters kept, in NFC. */
function letters(raw: string): string | undefined {
  return normalizeName(raw)?.replaceAll(' ', '') || undefined;
}

const hashOf = (normalized: string | undefined): Slot | undefined =>
  normalized === undefined ? undefined : sha256Slot(normalized);

/** FI: the first letter of the normalised first name (none from a hashed one). */
function firstInitial(raw: string | undefined): string | undefined {
  const value = raw?.trim();
  const name = value && !isSha256Hex(value) ? normalizeName(value) : undefined;
  return name === undefined ? undefined : String.fromCodePoint(name.codePointAt(0)!);
}

// prettier-ignore
const US_STATES: ReadonlyMap<string, string> = new Map(Object.entries({
  alabama: 'al', alaska: 'ak', arizona: 'az', arkansas: 'ar', california: 'ca', colorado: 'co',
  connecticut: 'ct', delaware: 'de', districtofcolumbia: 'dc', florida: 'fl', georgia: 'ga', hawaii: 'hi',
  idaho: 'id', illinois: 'il', indiana: 'in', iowa: 'ia', kansas: 'ks', kentucky: 'ky', louisiana: 'la',
  maine: 'me', maryland: 'md', massachusetts: 'ma', michigan: 'mi', minnesota: 'mn', mississippi: 'ms',
  missouri: 'mo', montana: 'mt', nebraska: 'ne', nevada: 'nv', newhampshire: 'nh', newjersey: 'nj',
  newmexico: 'nm', newyork: 'ny', northcarolina: 'nc', northdakota: 'nd', ohio: 'oh', oklahoma: 'ok',
  oregon: 'or', pennsylvania: 'pa', rhodeisland: 'ri', southcarolina: 'sc', southdakota: 'sd',
  tennessee: 'tn', texas: 'tx', utah: 'ut', vermont: 'vt', virginia: 'va', washington: 'wa',
  westvirginia: 'wv', wisconsin: 'wi', wyoming: 'wy',
}));

/** ST: the two-letter code in lowercase; a US state's name becomes its code, elsewhere letters only. */
function state(raw: string, country: string | undefined): string | undefined {
  const s = letters(raw);
  if (s === undefined || country !== 'US') return s;
  return s.length === 2 ? s : US_STATES.get(s);
}

/** ZIP: Meta's "lowercase, no spaces, US first 5 digits", after the shared postal clean-up. */
export function metaZip(raw: string, country: string | undefined): string | undefined {
  return normalizePostal(raw, country)?.replace(/ /g, '').toLowerCase();
}

function gender(raw: string): string | undefined {
  const g = raw.toLowerCase();
  if (g === 'm' || g === 'male') return 'm';
  if (g === 'f' || g === 'female') return 'f';
  return undefined;
}

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** DOBY `YYYY`, DOBM `MM`, DOBD `DD` of a real date from 1900 to this year. */
function birthDate(raw: string | undefined): Record<'DOBY' | 'DOBM' | 'DOBD', string> | undefined {
  const m = raw ? ISO_DATE.exec(raw.trim()) : null;
  if (!m) return undefined;
  const [, y, mo, d] = m as unknown as [string, string, string, string];
  const date = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  const real = date.getUTCMonth() === Number(mo) - 1 && date.getUTCDate() === Number(d);
  if (!real || Number(y) < 1900 || Number(y) > new Date().getUTCFullYear()) return undefined;
  return { DOBY: y, DOBM: mo, DOBD: d };
}

// ---------------------------------------------------------------------------------------------------------
// Plaintext in a 32-byte slot

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UUID_LOWER = 1;
const UUID_UPPER = 2;

/**
 * A plaintext identifier in 32 bytes: its UTF-8 bytes zero-padded when they fit (and hold no zero byte);
 * a 36-character UUID (IDFA, GAID) as a zero byte, its case, and its 16 bytes. Undefined if neither fits.
 */
export function packPlain(text: string): Buffer | undefined {
  const slot = Buffer.alloc(SLOT_BYTES);
  if (text && !text.includes('\u0000') && Buffer.byteLength(text) <= SLOT_BYTES) {
    slot.write(text, 'utf8');
    return slot;
  }
  const lower = text.toLowerCase();
  const upper = text.toUpperCase();
  if (!UUID.test(lower) || (text !== lower && text !== upper)) return undefined;
  slot[1] = text === lower ? UUID_LOWER : UUID_UPPER;
  Buffer.from(lower.replaceAll('-', ''), 'hex').copy(slot, 2);
  return slot;
}

export function unpackPlain(slot: Buffer): string {
  if (slot[0] !== 0) {
    const end = slot.indexOf(0);
    return slot.toString('utf8', 0, end === -1 ? SLOT_BYTES : end);
  }
  const h = slot.subarray(2, 18).toString('hex');
  const uuid = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  return slot[1] === UUID_UPPER ? uuid.toUpperCase() : uuid;
}
