import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument, isNode } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { redact, registerSecret, registerUrlPassword } from '../redact.js';
import { applyRedisConfig } from './redis.js';
import { configSchema, type Config } from './schema.js';

export const DEFAULT_CONFIG_FILE = 'audience-sync.yaml';

export interface LoadedConfig {
  config: Config;
  /** Absolute path of the file; relative paths inside it are resolved against its folder. */
  file: string;
  dir: string;
}

/** Keys whose values are credentials: they must come from the environment, never from the file. */
const SECRET_KEY = /(token|secret|password|api_key|apikey|private_key|credentials)$/i;
const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const ONLY_ENV_REF = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$/;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The `--config` file if given, else ./audience-sync.yaml when present, else none. */
export function resolveConfigPath(explicit: string | undefined, cwd = process.cwd()): string | undefined {
  if (explicit) return path.resolve(cwd, explicit);
  const fallback = path.resolve(cwd, DEFAULT_CONFIG_FILE);
  return existsSync(fallback) ? fallback : undefined;
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `cannot read config file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      'pass --config FILE, or create audience-sync.yaml (see config/example.yaml)',
    );
  }
  const config = parseConfig(text, file, env);
  applyRedisConfig(config.redis, path.resolve(file), env);
  return { config, file: path.resolve(file), dir: path.dirname(path.resolve(file)) };
}

/**
 * Parses, checks secrets, substitutes `${ENV}` references and validates, naming the exact path on failure.
 * Every credential it substitutes (and the passwords of `REDIS_URL`, `REDIS_CLUSTER_NODES` and
 * `REDIS_SENTINELS`) is registered for redaction.
 */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  for (const url of [
    env.REDIS_URL,
    ...`${env.REDIS_CLUSTER_NODES ?? ''},${env.REDIS_SENTINELS ?? ''}`.split(','),
  ])
    registerUrlPassword(url?.trim());
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const { line, col } = lineCounter.linePos(e.pos[0]);
    throw new ConfigError(`${file}:${line}:${col}: YAML syntax error: ${e.message.split('\n')[0]}`);
  }
  const raw = (doc.toJS() ?? {}) as Json;
  /** file:line of the nearest node that exists at or above a path. */
  const where = (p: readonly PropertyKey[]): string => {
    for (let k = p.length; k > 0; k--) {
      const node = doc.getIn(p.slice(0, k).map(String), true);
      if (isNode(node) && node.range) return `${file}:${lineCounter.linePos(node.range[0]).line}`;
    }
    return file;
  };

  const problems: string[] = [];
  const resolved = substitute(raw, [], env, (p, message) =>
    problems.push(`${where(p)}: ${formatPath(p)}: ${message}`),
  );
  const parsed = configSchema.safeParse(resolved);
  if (!parsed.success)
    problems.push(
      ...parsed.error.issues.map((issue) =>
        issue.code === 'unrecognized_keys'
          ? issue.keys
              .map((k) => `${where([...issue.path, k])}: ${formatIssue({ ...issue, keys: [k] }, resolved)}`)
              .join('\n')
          : `${where(issue.path)}: ${formatIssue(issue, resolved)}`,
      ),
    );
  if (problems.length > 0 || !parsed.success)
    throw new ConfigError(
      redact(problems.join('\n')),
      'see the configuration reference in README.md, or config/example.yaml',
    );
  return parsed.data;
}

function substitute(
  value: Json,
  at: PropertyKey[],
  env: NodeJS.ProcessEnv,
  report: (at: PropertyKey[], message: string) => void,
): Json {
  if (Array.isArray(value)) return value.map((v, i) => substitute(v, [...at, i], env, report));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(value)) {
      if (SECRET_KEY.test(k) && typeof v === 'string' && v !== '' && !ONLY_ENV_REF.test(v.trim())) {
        report(
          [...at, k],
          `a credential written in the file; set an environment variable and write \${${envNameFor(k)}} instead`,
        );
        continue;
      }
      if (k === 'url' && typeof v === 'string' && /:\/\/[^/:@]+:[^@/]+@/.test(v) && !v.includes('${')) {
        report(
          [...at, k],
          'a connection string with a password written in the file; write ${DATABASE_URL} and set it in the environment',
        );
        continue;
      }
      const resolved = substitute(v, [...at, k], env, report);
      if (SECRET_KEY.test(k) && typeof resolved === 'string') registerSecret(resolved);
      out[k] = resolved;
    }
    return out;
  }
  if (typeof value !== 'string') return value;
  const resolved = value.replace(ENV_REF, (_match, name: string, fallback: string | undefined) => {
    const v = env[name];
    if (v !== undefined && v !== '') return v;
    if (fallback !== undefined) return fallback;
    report(at, `environment variable ${name} is not set; export it or write \${${name}:-default}`);
    return '';
  });
  // A connection string from the environment (`source.url: ${DATABASE_URL}`) brings its password.
  if (resolved !== value) registerUrlPassword(resolved);
  return resolved;
}

function envNameFor(key: string): string {
  return key.toUpperCase().replace(/[^A-Z0-9]+/g, '_');
}

function formatPath(p: readonly PropertyKey[]): string {
  if (p.length === 0) return '(top level)';
  return p.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? String(k) : `.${String(k)}`)).join('');
}

function formatIssue(issue: z.core.$ZodIssue, root: Json): string {
  const at = formatPath(issue.path);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = knownKeys(issue.path, root);
      return issue.keys
        .map((k) => {
          const near = closest(k, known);
          return `${formatPath([...issue.path, k])}: unknown key${near ? `; did you mean '${near}'?` : ''}${known.length ? ` (allowed: ${known.join(', ')})` : ''}`;
        })
        .join('\n');
    }
    case 'invalid_type':
      if (valueAt(root, issue.path) === undefined) return `${at}: required (${issue.expected})`;
      return `${at}: expected ${issue.expected}, got ${describe(valueAt(root, issue.path))}`;
    case 'invalid_value':
      return `${at}: expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describe(valueAt(root, issue.path))}`;
    case 'invalid_union': {
      const v = valueAt(root, issue.path);
      const type =
        v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, Json>).type : undefined;
      if ((issue as { note?: string }).note === 'No matching discriminator' || type !== undefined)
        return `${at}.type: expected ${unionTypes(issue)}, got ${describe(type ?? null)}`;
      return `${at}: ${issue.message}`;
    }
    default:
      return `${at}: ${issue.message}`;
  }
}

function unionTypes(issue: z.core.$ZodIssueInvalidUnion): string {
  const disc = (issue as unknown as { discriminator?: string }).discriminator;
  return disc ? `a known ${disc}` : 'one of the documented types';
}

/** Keys the schema accepts at a path, to suggest the nearest one for a typo. */
function knownKeys(at: readonly PropertyKey[], root: Json): string[] {
  let schema: unknown = configSchema;
  let value: Json | undefined = root;
  for (const key of at) {
    schema = unwrap(schema);
    value = value && typeof value === 'object' ? (value as Record<string, Json>)[key as string] : undefined;
    const def = (
      schema as {
        def?: {
          type?: string;
          shape?: Record<string, unknown>;
          options?: unknown[];
          valueType?: unknown;
          element?: unknown;
        };
      }
    ).def;
    if (def?.type === 'object') schema = def.shape?.[key as string];
    else if (def?.type === 'record') schema = def.valueType;
    else if (def?.type === 'array') schema = def.element;
    else return [];
  }
  schema = unwrap(schema);
  const def = (schema as { def?: { type?: string; shape?: Record<string, unknown>; options?: unknown[] } })
    .def;
  if (def?.type === 'object') return Object.keys(def.shape ?? {});
  if (def?.type === 'union' && def.options) {
    const type = value && typeof value === 'object' ? (value as Record<string, Json>).type : undefined;
    const match = def.options.find((o) => {
      const s = (unwrap(o) as { def?: { shape?: Record<string, { def?: { values?: unknown[] } }> } }).def
        ?.shape;
      return s?.type?.def?.values?.includes(type);
    });
    const shape = (unwrap(match) as { def?: { shape?: Record<string, unknown> } } | undefined)?.def?.shape;
    return shape ? Object.keys(shape) : [];
  }
  return [];
}

function unwrap(schema: unknown): unknown {
  let s = schema as
    { def?: { type?: string; innerType?: unknown; in?: unknown; schema?: unknown } } | undefined;
  for (let i = 0; i < 10 && s?.def; i++) {
    const t = s.def.type;
    if (t === 'default' || t === 'optional' || t === 'nullable' || t === 'prefault' || t === 'readonly')
      s = s.def.innerType as typeof s;
    else if (t === 'pipe') s = s.def.in as typeof s;
    else break;
  }
  return s;
}

function valueAt(root: Json, at: readonly PropertyKey[]): Json | undefined {
  let v: Json | undefined = root;
  for (const k of at) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, Json>)[k as string];
  }
  return v;
}

function describe(v: Json | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

/** The allowed key nearest to a typo (edit distance ≤ 2 or a shared prefix). */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}
