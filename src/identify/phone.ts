import { Metadata, parsePhoneNumberFromString, type CountryCode, type PhoneNumber } from 'libphonenumber-js';

/**
 * Phone numbers to E.164 with libphonenumber-js (its default "min" metadata): a number is valid when the
 * library says so, `parsePhoneNumberFromString(raw, region)?.isValid()`, and its E.164 form is the library's.
 *
 * This runs once per customer and platform, millions of times, and the library spends most of its time
 * compiling the same regular expressions again on every call (about 10 µs a number). So input written
 * with digits and `+ ()-./` only takes a fast path that follows the library's own steps on its own
 * metadata, with the patterns compiled once: calling code, international dialling prefix, national
 * prefix, region among those sharing a calling code, number types. Anything else (extensions, letters,
 * national prefixes rewritten by a rule as in Brazil) is parsed by the library once, and its result checked
 * against the compiled patterns instead of `isValid()` repeating the work.
 *
 * Where the fast path is not sure to take the library's road, it leaves the number to the library.
 * `test/identity/phone.test.ts` compares the results with the plain library on every region's numbers,
 * valid and not; it fails if an upgrade of the library changes a step.
 */

/** The library's number types; a match of any makes a number valid. */
const TYPES = [
  'FIXED_LINE',
  'MOBILE',
  'PREMIUM_RATE',
  'TOLL_FREE',
  'SHARED_COST',
  'VOIP',
  'PERSONAL_NUMBER',
  'PAGER',
  'UAN',
  'VOICEMAIL',
] as const;

/** Input the library refuses before parsing (its MAX_INPUT_STRING_LENGTH). */
const MAX_INPUT_LENGTH = 250;
/** Bounds of a national significant number in the library (MIN_LENGTH_FOR_NSN, MAX_LENGTH_FOR_NSN). */
const MIN_NATIONAL = 2;
const MAX_NATIONAL = 17;
const MAX_CALLING_CODE_DIGITS = 3;

// The parts of the library's Metadata class read here; its typings declare fewer of them.
interface TypeView {
  pattern(): string;
  possibleLengths(): number[] | undefined;
}
interface PlanView {
  callingCode(): string;
  IDDPrefix(): string | undefined;
  nationalNumberPattern(): string;
  possibleLengths(): number[] | undefined;
  nationalPrefixForParsing(): string | undefined;
  leadingDigits(): string | undefined;
  hasTypes(): boolean;
  type(name: string): TypeView | undefined;
}
interface MetadataView {
  hasCallingCode(callingCode: string): boolean | undefined;
  getCountryCodesForCallingCode(callingCode: string): string[] | undefined;
  selectNumberingPlan(countryOrCallingCode: string): MetadataView;
  numberingPlan: PlanView | undefined;
}

/** One numbering plan (a region's, or a calling code's main region's) with its patterns compiled. */
interface Plan {
  callingCode: string;
  national: RegExp;
  lengths: readonly number[] | undefined;
  /** Undefined when the metadata has no number types for the plan: then `national` alone decides. */
  types: { pattern: RegExp; lengths: readonly number[] | undefined }[] | undefined;
  leadingDigits: RegExp | undefined;
  nationalPrefix: RegExp | undefined;
  /** True when the national prefix pattern has no groups: the library then strips what it matches. */
  plainPrefix: boolean;
  /** International dialling prefix (`00`, `011`). */
  idd: RegExp | undefined;
}

/** A geographic calling code: its main plan, and the regions sharing it in the library's order. */
interface CallingCode {
  main: Plan;
  regions: Plan[];
}

const entirely = (pattern: string): RegExp => new RegExp('^(?:' + pattern + ')$');
const atStart = (pattern: string | undefined): RegExp | undefined =>
  pattern ? new RegExp('^(?:' + pattern + ')') : undefined;

let metadata: MetadataView | undefined;
const plans = new Map<string, Plan>();
const callingCodes = new Map<string, CallingCode | null>();
/** Set when the library's internals are not what this file expects: from then on the library decides. */
let fastPathOff = false;

function meta(): MetadataView {
  return (metadata ??= new Metadata() as unknown as MetadataView);
}

function plan(regionOrCallingCode: string): Plan {
  let p = plans.get(regionOrCallingCode);
  if (!p) {
    const view = meta().selectNumberingPlan(regionOrCallingCode).numberingPlan;
    if (!view) throw new Error(`no numbering plan for ${regionOrCallingCode}`);
    let types: Plan['types'];
    if (view.hasTypes()) {
      types = [];
      for (const name of TYPES) {
        const t = view.type(name);
        const pattern = t?.pattern();
        if (t && pattern) types.push({ pattern: entirely(pattern), lengths: t.possibleLengths() });
      }
    }
    const prefix = view.nationalPrefixForParsing();
    p = {
      callingCode: view.callingCode(),
      national: entirely(view.nationalNumberPattern()),
      lengths: view.possibleLengths(),
      types,
      leadingDigits: atStart(view.leadingDigits()),
      nationalPrefix: atStart(prefix),
      plainPrefix: !prefix?.includes('('),
      idd: atStart(view.IDDPrefix()),
    };
    plans.set(regionOrCallingCode, p);
  }
  return p;
}

/** A geographic calling code's plans; null for a non-geographic one (+800…), left to the library. */
function callingCode(code: string): CallingCode | null {
  let cc = callingCodes.get(code);
  if (cc === undefined) {
    const regions = meta().getCountryCodesForCallingCode(code);
    cc = regions ? { main: plan(code), regions: regions.map(plan) } : null;
    callingCodes.set(code, cc);
  }
  return cc;
}

/** The library's getNumberType(...) !== undefined: the national pattern, then any type with its lengths. */
function hasType(p: Plan, national: string): boolean {
  if (!p.national.test(national) || !p.types) return false;
  for (const t of p.types) {
    if ((t.lengths === undefined || t.lengths.includes(national.length)) && t.pattern.test(national))
      return true;
  }
  return false;
}

/** The library's isValid() in a plan. */
function validIn(p: Plan, national: string): boolean {
  return p.types ? hasType(p, national) : p.national.test(national);
}

/** The region the library assigns among those sharing a calling code: by leading digits, else by type. */
function regionOf(cc: CallingCode, national: string): Plan | undefined {
  if (cc.regions.length === 1) return cc.regions[0];
  for (const p of cc.regions) {
    if (p.leadingDigits) {
      if (p.leadingDigits.test(national)) return p;
    } else if (hasType(p, national)) return p;
  }
  return undefined;
}

/** The library's checkNumberLength(...) === 'TOO_LONG' | 'IS_POSSIBLE' (as opposed to too short or invalid). */
function possibleOrTooLong(lengths: readonly number[] | undefined, length: number): boolean {
  if (!lengths) return true;
  return length >= lengths[0]! && (length > lengths[lengths.length - 1]! || lengths.includes(length));
}

function tooLong(lengths: readonly number[] | undefined, length: number): boolean {
  return lengths !== undefined && length > lengths[lengths.length - 1]!;
}

/**
 * The library's extractNationalNumber in plan `p`: the national prefix stripped when what remains is
 * still a national number of a possible length; undefined when the prefix is one the fast path leaves alone.
 */
function nationalNumber(p: Plan, cc: CallingCode, digits: string): string | undefined {
  const prefix = p.nationalPrefix?.exec(digits);
  if (!prefix) return digits;
  if (!p.plainPrefix) return undefined;
  const national = digits.slice(prefix[0].length);
  if (national === digits || (p.national.test(digits) && !p.national.test(national))) return digits;
  if (p.lengths && !possibleOrTooLong((regionOf(cc, national) ?? p).lengths, national.length)) return digits;
  return national;
}

/**
 * What the fast path finds: the E.164 number, null for a number the library finds invalid, or undefined
 * when the library has to decide.
 */
type Fast = string | null | undefined;

/** The library's verdict on a national number: valid in the region it assigns, else in `fallback`. */
function verdict(cc: CallingCode, national: string | undefined, fallback: Plan): Fast {
  if (national === undefined) return undefined;
  if (national.length < MIN_NATIONAL || national.length > MAX_NATIONAL) return null;
  return validIn(regionOf(cc, national) ?? fallback, national) ? '+' + cc.main.callingCode + national : null;
}

/** Digits after a `+` (or an international dialling prefix). */
function fastInternational(digits: string): Fast {
  if (digits.charCodeAt(0) === 48) return null; // no calling code starts with 0
  for (let n = 1; n <= MAX_CALLING_CODE_DIGITS && n < digits.length; n++) {
    const code = digits.slice(0, n);
    if (!meta().hasCallingCode(code)) continue;
    const cc = callingCode(code);
    return cc ? verdict(cc, nationalNumber(cc.main, cc, digits.slice(n)), cc.main) : undefined;
  }
  return null;
}

/** Digits without a `+`, read in the customer's region. */
function fastNational(digits: string, region: CountryCode): Fast {
  const home = plan(region);
  const cc = callingCode(home.callingCode);
  if (!cc) return undefined;
  const idd = home.idd?.exec(digits);
  if (idd) {
    const rest = digits.slice(idd[0].length);
    // After the prefix, a 0 (or nothing) sends the library down a road the fast path does not take.
    return rest && rest.charCodeAt(0) !== 48 ? fastInternational(rest) : undefined;
  }
  if (digits.startsWith(home.callingCode)) {
    // The calling code without its `+`, if reading it so turns an impossible number into a national one.
    const shorter = digits.slice(home.callingCode.length);
    const withCode = nationalNumber(home, cc, shorter);
    const whole = nationalNumber(home, cc, digits);
    if (withCode === undefined || whole === undefined) return undefined;
    if ((!home.national.test(whole) && home.national.test(withCode)) || tooLong(home.lengths, whole.length)) {
      return verdict(cc, nationalNumber(cc.main, cc, shorter), cc.main);
    }
  }
  return verdict(cc, nationalNumber(home, cc, digits), home);
}

/**
 * The digits of input written only with digits and spaces `()-./`, after an optional `+`: input the library
 * reads as exactly those digits (no extension, no RFC 3966 URI, nothing cut off). Undefined otherwise.
 */
function plainDigits(raw: string): { plus: boolean; digits: string } | undefined {
  if (raw.length > MAX_INPUT_LENGTH) return undefined;
  let i = 0;
  while (i < raw.length && (raw.charCodeAt(i) === 32 || raw.charCodeAt(i) === 9)) i++;
  const plus = raw.charCodeAt(i) === 43;
  if (plus) i++;
  let digits = '';
  for (; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c >= 48 && c <= 57) digits += raw[i];
    // space ( ) - . /
    else if (c !== 32 && c !== 40 && c !== 41 && c !== 45 && c !== 46 && c !== 47) return undefined;
  }
  // Fewer than 3 digits is no viable number for the library.
  return digits.length >= 3 ? { plus, digits } : undefined;
}

/** The library's isValid() for a number it parsed, from the compiled patterns. */
function isValid(p: PhoneNumber): boolean {
  if (!fastPathOff) {
    try {
      return validIn(plan(p.country ?? p.countryCallingCode), p.nationalNumber);
    } catch {
      fastPathOff = true;
    }
  }
  return p.isValid();
}

function libraryE164(raw: string, region: CountryCode | undefined): string | undefined {
  const p = parsePhoneNumberFromString(raw, region);
  return p && isValid(p) ? p.number : undefined;
}

/**
 * E.164 (`+18005550100`) of a phone number, or undefined when the library finds it invalid.
 * `region` (ISO alpha-2, already normalised) reads national formats; international input ignores it.
 */
export function phoneE164(raw: string, region: CountryCode | undefined): string | undefined {
  if (!fastPathOff) {
    try {
      const input = plainDigits(raw);
      let fast: Fast;
      if (input?.plus) fast = fastInternational(input.digits);
      else if (input && region) fast = fastNational(input.digits, region);
      if (fast !== undefined) return fast ?? undefined;
    } catch {
      fastPathOff = true;
    }
  }
  return libraryE164(raw, region);
}
