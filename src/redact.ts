/**
 * The one redaction step. Every text that comes from a platform (error descriptions, bodies, URLs, SDK
 * errors) goes through `redact` before it reaches an error, a log, Redis or the screen. It takes out:
 * - the process's secrets: each credential the config took from the environment (registered by the config
 *   loader) and each token obtained at run time (registered by the connector that obtained it), in any
 *   form a platform may echo them: as sent, URL-encoded (once or twice), JSON-escaped (`\/`, `\uXXXX`);
 * - values that are credentials by their place: `client_secret=…`, `"refresh_token": "…"`,
 *   `Authorization: …`, `Bearer …` / `Basic …`, the password of `scheme://user:pass@host`;
 * - tokens recognisable by their shape (Google's `ya29.`, `1//`, `GOCSPX-`, `AIza`; Meta's `EAA…`;
 *   Mailchimp's `…-us21`), for a token no one registered.
 * Each becomes `[redacted]`, which keeps JSON, URLs and log lines well-formed.
 */

export const REDACTED = '[redacted]';

/** Shorter values are no credential worth the name, and would take words out of every message. */
const MIN_LENGTH = 4;
/** Values shorter than this are taken out only where they stand alone (not inside a longer word). */
const LOOSE_LENGTH = 8;
/** Tokens renewed hourly by a worker that runs for months: the oldest are forgotten past this many. */
const MAX_SECRETS = 256;

const secrets = new Set<string>();
let secretPattern: RegExp | null | undefined;

/** Registers a secret of this process: from now on `redact` takes it out wherever it appears. */
export function registerSecret(value: string | null | undefined): void {
  if (typeof value !== 'string' || value.length < MIN_LENGTH) return;
  if (secrets.has(value)) {
    // Newest last, so that eviction takes the longest-unused.
    secrets.delete(value);
    secrets.add(value);
    return;
  }
  secrets.add(value);
  if (secrets.size > MAX_SECRETS) secrets.delete(secrets.values().next().value!);
  secretPattern = undefined;
}

/** Registers the password of a URL (`scheme://user:pass@host`), as written and decoded. */
export function registerUrlPassword(url: string | null | undefined): void {
  const match = /^[a-z][a-z0-9+.-]*:\/\/[^/?#@]*?:([^/?#@]*)@/i.exec(url ?? '');
  if (!match?.[1]) return;
  registerSecret(match[1]);
  try {
    registerSecret(decodeURIComponent(match[1]));
  } catch {
    // Not valid percent-encoding: the raw form is registered.
  }
}

/** Forgets every registered secret (tests). */
export function forgetSecrets(): void {
  secrets.clear();
  secretPattern = undefined;
}

const hexDigit = (d: string) => (/[a-f]/i.test(d) ? `[${d.toLowerCase()}${d.toUpperCase()}]` : d);
const hex = (n: number, width: number) => [...n.toString(16).padStart(width, '0')].map(hexDigit).join('');
const escapeRegExp = (s: string) => s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');

/** One character of a secret in each form it can take in an echo: itself, %-encoded, JSON-escaped. */
function charPattern(c: string): string {
  if (/[A-Za-z0-9_.~-]/.test(c)) return escapeRegExp(c);
  const bytes = [...Buffer.from(c, 'utf8')];
  const alternatives = [
    escapeRegExp(c),
    bytes.map((b) => `%${hex(b, 2)}`).join(''),
    bytes.map((b) => `%25${hex(b, 2)}`).join(''),
  ];
  if (c === ' ') alternatives.push('\\+');
  const code = c.codePointAt(0)!;
  if (code <= 0xffff) alternatives.push(`\\\\{1,3}u${hex(code, 4)}`);
  // `\/`, `\"` and `\\` in JSON, and JSON inside JSON.
  if (c === '/' || c === '"' || c === '\\') alternatives.push(`\\\\{1,3}${escapeRegExp(c)}`);
  return `(?:${alternatives.join('|')})`;
}

function buildSecretPattern(): RegExp | null {
  if (secrets.size === 0) return null;
  const parts = [...secrets]
    .sort((a, b) => b.length - a.length)
    .map((secret) => {
      const body = [...secret].map(charPattern).join('');
      return secret.length < LOOSE_LENGTH ? `(?<![A-Za-z0-9_])${body}(?![A-Za-z0-9_])` : body;
    });
  return new RegExp(parts.join('|'), 'g');
}

/** Names of parameters, JSON fields and headers whose values are credentials. */
const NAME = String.raw`[A-Za-z0-9_.-]*(?:secret|token|password|passwd|pwd|api[_-]?key|apikey|credentials?|signature)|key|sig`;
const HEADER = String.raw`(?:proxy-)?authorization|x-api-key|api-key|x-goog-api-key|developer-token|cookie|set-cookie`;
const NOT_IN_NAME = '(?<![A-Za-z0-9_.-])';
const NOT_REDACTED = String.raw`(?!\[redacted\])`;

const CONTEXT: readonly [RegExp, string][] = [
  // `Bearer <token>` / `Basic <base64>`: a credential has a digit or punctuation, unlike an English word.
  [
    /\b(Bearer|bearer|BEARER|Basic)(\s+|%20|\+)(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}/g,
    `$1$2${REDACTED}`,
  ],
  // The password of `scheme://user:password@host`.
  [/\b([a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*:)(?!\[redacted\])[^\s/?#@]+@/gi, `$1${REDACTED}@`],
  // A quoted value after a credential's name: JSON (plain or escaped), util.inspect, YAML.
  [
    new RegExp(
      String.raw`${NOT_IN_NAME}(${NAME}|${HEADER})(\\?["']?\s*[:=]\s*)(\\?["'])${NOT_REDACTED}(?:\\.|[^\n\\])*?\3`,
      'gi',
    ),
    `$1$2$3${REDACTED}$3`,
  ],
  // `name=value` in a query string, a form body or a text.
  [
    new RegExp(String.raw`${NOT_IN_NAME}(${NAME})(=|%3[dD])${NOT_REDACTED}[^&\s"'<>,;)}\]\\]+`, 'gi'),
    `$1$2${REDACTED}`,
  ],
  // A header as a line of text: `Authorization: …`, `developer-token: …`.
  [
    new RegExp(
      String.raw`${NOT_IN_NAME}(${HEADER})(\s*:\s*)${NOT_REDACTED}(?!\\?["'])[^\r\n"'\\,;)}]+`,
      'gi',
    ),
    `$1$2${REDACTED}`,
  ],
  // Tokens by their shape: Google access, refresh, OAuth client secret, API key; Meta; Mailchimp.
  [
    /\bya29\.[A-Za-z0-9_.-]+|\b1(?:\/|%2[fF]){2}0[A-Za-z0-9_-]{20,}|\bGOCSPX-[A-Za-z0-9_-]{10,}|\bAIza[A-Za-z0-9_-]{35}|\bEAA[A-Za-z0-9]{20,}|\b[0-9a-f]{32}-us[0-9]{1,2}\b/g,
    REDACTED,
  ],
];

/** The text with every secret, and every value in a credential's place, replaced by `[redacted]`. */
export function redact(text: string): string {
  if (secretPattern === undefined) secretPattern = buildSecretPattern();
  let out = secretPattern ? text.replace(secretPattern, REDACTED) : text;
  for (const [pattern, replacement] of CONTEXT) out = out.replace(pattern, replacement);
  return out;
}

/** An error with the same name and redacted message and stack, and none of its other properties. */
export function redactError(error: unknown): Error {
  if (!(error instanceof Error)) return new Error(redact(String(error)));
  const copy = new Error(redact(error.message));
  copy.name = error.name;
  copy.stack = error.stack === undefined ? undefined : redact(error.stack);
  return copy;
}

/**
 * A copy of a value with every string in it redacted: plain objects and arrays deeply, errors as
 * `redactError` (an SDK error's request, headers and URL are dropped), anything else as it is.
 */
export function redactValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redact(value);
  if (value instanceof Error) return redactError(value);
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  if (Object.getPrototypeOf(value) !== Object.prototype) return redact(String(value));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactValue(v, depth + 1)]));
}

const EMAIL = /[^\s@"'<>()[\],;:]+@[^\s@"'<>()[\],;:]+\.[A-Za-z]{2,}/g;
/** International numbers (`+44 20 7946 0958`) and North American ones written `(415) 555-0100`: not dates or counts. */
const PHONE = /\+\d[\d ().-]{6,}\d|\(\d{2,4}\)\s?\d{3}[ .-]?\d{3,4}/g;

/**
 * Platform text as we keep and show it (run history, health, status): redacted, and without anything
 * shaped like an email or a phone number (platforms echo what they were sent).
 */
export function scrub(text: string): string {
  return redact(text).replace(EMAIL, '[email]').replace(PHONE, '[number]');
}
