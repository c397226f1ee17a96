/** Field parsers for source rows. Each returns undefined for a value it cannot read. */

const MS_PER_DAY = 86_400_000;

/** Days since 1970-01-01 for a proleptic Gregorian date, or undefined when it is not a real date. */
export function dayNumber(y: number, m: number, d: number): number | undefined {
  if (m < 1 || m > 12 || d < 1 || d > 31 || y < 1000 || y > 9999) return undefined;
  if (d > daysInMonth(y, m)) return undefined;
  return Date.UTC(y, m - 1, d) / MS_PER_DAY;
}

function daysInMonth(y: number, m: number): number {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return m === 4 || m === 6 || m === 9 || m === 11 ? 30 : 31;
}

export function formatDay(day: number): string {
  return new Date(day * MS_PER_DAY).toISOString().slice(0, 10);
}

export function todayUtc(now = Date.now()): number {
  return Math.floor(now / MS_PER_DAY);
}

const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?)?$/;

/** A parser from text to a UTC day number, for one `date_format` setting. */
export type DateParser = (text: string) => number | undefined;

export function dateParser(format: string): DateParser {
  if (format === 'auto') return parseAutoDate;
  if (format === 'unix') return (t) => epochDay(Number(t) * 1000, t);
  if (format === 'unix_ms') return (t) => epochDay(Number(t), t);
  // A pattern of YYYY, MM and DD with one optional separator, e.g. DD/MM/YYYY or YYYYMMDD.
  const parts = format.match(/YYYY|MM|DD/g)!;
  const sep = format.replace(/YYYY|MM|DD/g, '').charAt(0);
  const widths = parts.map((p) => p.length);
  return (text) => {
    const t = text.trim();
    const fields = sep ? t.split(sep) : splitFixed(t, widths);
    if (!fields || fields.length !== 3) return undefined;
    let y = NaN;
    let m = NaN;
    let d = NaN;
    for (let i = 0; i < 3; i++) {
      const f = fields[i]!;
      if (!/^\d+$/.test(f) || f.length > widths[i]!) return undefined;
      const v = Number(f);
      if (parts[i] === 'YYYY') y = f.length === 4 ? v : NaN;
      else if (parts[i] === 'MM') m = v;
      else d = v;
    }
    return dayNumber(y, m, d);
  };
}

function splitFixed(t: string, widths: number[]): string[] | undefined {
  if (t.length !== widths.reduce((a, b) => a + b, 0)) return undefined;
  const out: string[] = [];
  let at = 0;
  for (const w of widths) {
    out.push(t.slice(at, at + w));
    at += w;
  }
  return out;
}

function epochDay(ms: number, text: string): number | undefined {
  if (text.trim() === '' || !Number.isFinite(ms)) return undefined;
  return Math.floor(ms / MS_PER_DAY);
}

/**
 * ISO dates and timestamps (`2024-05-01`, `2024-05-01 13:45:00`, `2024-05-01T13:45:00.123+02:00`).
 * A timestamp with an offset is converted to its UTC date; one without is taken as written.
 */
export function parseAutoDate(text: string): number | undefined {
  // Fast path for the common plain date.
  if (text.length === 10 && text.charCodeAt(4) === 45 && text.charCodeAt(7) === 45) {
    const y = digits(text, 0, 4);
    const m = digits(text, 5, 2);
    const d = digits(text, 8, 2);
    return y < 0 || m < 0 || d < 0 ? undefined : dayNumber(y, m, d);
  }
  const match = ISO_TIME.exec(text.trim());
  if (!match) return undefined;
  const day = dayNumber(Number(match[1]), Number(match[2]), Number(match[3]));
  if (day === undefined) return undefined;
  const zone = match[7];
  if (!zone || match[4] === undefined) return day;
  const hours = Number(match[4]);
  const minutes = Number(match[5]);
  const seconds = Number(match[6] ?? 0);
  if (hours > 23 || minutes > 59 || seconds > 60) return undefined;
  let offsetMinutes = 0;
  if (zone !== 'Z') {
    const sign = zone.startsWith('-') ? -1 : 1;
    const z = zone.slice(1).replace(':', '');
    offsetMinutes = sign * (Number(z.slice(0, 2)) * 60 + Number(z.slice(2) || 0));
  }
  const utcMinutes = hours * 60 + minutes - offsetMinutes;
  return day + Math.floor(utcMinutes / 1440);
}

function digits(s: string, at: number, n: number): number {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** A plain decimal number (`12`, `-3.50`, `1e3`); not hex, not empty, not `12,3`. */
export function parseAmount(text: string): number | undefined {
  const t =
    text.length > 0 && (text.charCodeAt(0) <= 32 || text.charCodeAt(text.length - 1) <= 32)
      ? text.trim()
      : text;
  if (!DECIMAL.test(t)) return undefined;
  const v = Number(t);
  return Number.isFinite(v) ? v : undefined;
}

const INFINITE = /^[+-]?inf(?:inity)?$/i;

/** A number too large for a double (`1e400`) or written as infinite (`Infinity`, `-inf`): not a bad value, a wrong column. */
export function isInfinite(text: string): boolean {
  const t = text.trim();
  return INFINITE.test(t) || (DECIMAL.test(t) && !Number.isFinite(Number(t)));
}

/** A non-negative whole number (order counts, scores). */
export function parseCount(text: string): number | undefined {
  const v = parseAmount(text);
  return v !== undefined && Number.isInteger(v) && v >= 0 ? v : undefined;
}

const TRUE = new Set(['true', 't', 'yes', 'y', '1', 'on']);
const FALSE = new Set(['false', 'f', 'no', 'n', '0', 'off', '']);

/** Flags as spreadsheets and databases write them; undefined for anything else. */
export function parseFlag(text: string): boolean | undefined {
  const t = text.trim().toLowerCase();
  if (TRUE.has(t)) return true;
  if (FALSE.has(t)) return false;
  return undefined;
}
