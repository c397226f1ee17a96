import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import argon2 from 'argon2';
import { expect } from 'vitest';
import type { z } from 'zod';
import { generateShop } from '../../src/example/generate.js';
import { tempDir } from '../helpers.js';
import { run, type Proc } from '../jobs/procs.js';

/** Users of the test config: name, role, password (made here, hashed with argon2 itself). */
export const USERS = {
  vera: { role: 'viewer', password: 'vera-' + randomBytes(9).toString('base64url') },
  otto: { role: 'operator', password: 'otto-' + randomBytes(9).toString('base64url') },
  lockme: { role: 'viewer', password: 'lockme-' + randomBytes(9).toString('base64url') },
} as const;

/** API tokens of the test config, hashed here with node's SHA-256 (not with the code under test). */
export const TOKENS = {
  viewer: 'ast_' + randomBytes(32).toString('base64url'),
  operator: 'ast_' + randomBytes(32).toString('base64url'),
} as const;
const sha = (t: string) => `sha256:${createHash('sha256').update(t).digest('hex')}`;

/** A shop, a config with a file destination, users and tokens, and a Redis prefix of its own. */
export async function makeSetup(options: { customers?: number; http?: string } = {}) {
  const dir = tempDir('audience-sync-api-');
  await generateShop(path.join(dir, 'shop'), {
    customers: options.customers ?? 300,
    seed: 5,
    analysisDate: '2026-01-01',
  });
  const prefix = `test-${path.basename(dir)}`;
  const hashes = Object.fromEntries(
    await Promise.all(
      Object.entries(USERS).map(
        async ([name, u]) => [name, await argon2.hash(u.password, { type: argon2.argon2id })] as const,
      ),
    ),
  );
  const config = (tokens: (keyof typeof TOKENS)[] = ['viewer', 'operator']) =>
    `source: { type: csv, path: shop/orders.csv }
profiles: { type: csv, path: shop/customers.csv }
scoring: { analysis_date: "2026-01-01" }
destinations:
  local: { type: file, path: out }
schedules:
  - { destination: local, cron: "0 3 * * *" }
sync: { redis_prefix: ${prefix}, lease_seconds: 2 }
http:
  login_limit: { per_user: 3, per_address: 50, window_minutes: 10 }
${options.http ?? ''}
  users:
${Object.entries(USERS)
  .map(([name, u]) => `    - { name: ${name}, role: ${u.role}, password_hash: "${hashes[name]}" }`)
  .join('\n')}
  tokens:
${tokens.map((t) => `    - { name: ${t}-token, role: ${t}, token_hash: "${sha(TOKENS[t])}" }`).join('\n') || '    []'}
`;
  const file = path.join(dir, 'audience-sync.yaml');
  writeFileSync(file, config());
  return {
    dir,
    prefix,
    file,
    /** Rewrites the config with only these tokens (the others are revoked). */
    keepTokens: (tokens: (keyof typeof TOKENS)[]) => writeFileSync(file, config(tokens)),
    /** Every email and phone number of the shop's customers: none may ever appear in an answer. */
    pii: () => {
      const [header, ...rows] = readFileSync(path.join(dir, 'shop', 'customers.csv'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(','));
      const cols = ['email', 'phone', 'first_name', 'last_name'].map((c) => header!.indexOf(c));
      return rows.flatMap((r) => cols.map((k) => r[k] ?? '')).filter((v) => v.length >= 5);
    },
  };
}

/** Starts `audience-sync <args>` in `cwd` and resolves to its base URL once it says where it listens. */
export async function serve(
  args: string[],
  cwd: string,
  redisUrl: string,
  ready = /HTTP API on (http:\/\/[^/]+)\/api\/v1/,
): Promise<{ proc: Proc; url: string }> {
  const proc = run(args, {
    cwd,
    env: { ...process.env, REDIS_URL: redisUrl, LOG_LEVEL: 'info', CI: 'true' },
  });
  await proc.waitFor(ready);
  return { proc, url: ready.exec(proc.stderr())![1]! };
}

/** One answer of the test run, kept for the final grep over everything the server said. */
export interface Seen {
  method: string;
  path: string;
  status: number;
  headers: [string, string][];
  text: string;
  json: unknown;
}

/** HTTP with fetch, recording every answer. */
export class Client {
  readonly seen: Seen[] = [];
  constructor(public url: string) {}

  async call(
    method: string,
    path: string,
    options: {
      token?: string;
      cookie?: string;
      csrf?: string;
      body?: unknown;
      headers?: Record<string, string>;
    } = {},
  ): Promise<Seen> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    if (options.cookie) headers.cookie = options.cookie;
    if (options.csrf) headers['x-csrf-token'] = options.csrf;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.url + path, {
      method,
      headers,
      ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
    });
    const text = await res.text();
    const seen: Seen = {
      method,
      path,
      status: res.status,
      headers: [...res.headers.entries()],
      text,
      json: text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : undefined,
    };
    this.seen.push(seen);
    return seen;
  }

  /** Logs in; the cookie to send and the CSRF token. */
  async login(name: keyof typeof USERS) {
    const r = await this.call('POST', '/api/v1/session', {
      body: { name, password: USERS[name].password },
    });
    expect(r.status, r.text).toBe(200);
    const setCookie = r.headers.find(([k]) => k === 'set-cookie')![1];
    const cookie = setCookie.split(';')[0]!;
    return {
      cookie,
      value: cookie.split('=')[1]!,
      csrf: (r.json as { csrf_token: string }).csrf_token,
      setCookie,
    };
  }
}

/**
 * Checks an answer against the route's response schema in the OpenAPI document (JSON Schema 2020-12, as
 * OpenAPI 3.1 has it) and against the zod schema; resolves to the parsed body.
 */
export class OpenApi {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true });
  constructor(
    private readonly doc: {
      paths: Record<
        string,
        Record<string, { responses: Record<string, { content?: Record<string, { schema: object }> }> }>
      >;
      components?: { schemas?: Record<string, object> };
    },
  ) {
    addFormats.default(this.ajv);
    this.ajv.addSchema({ $id: 'doc', components: doc.components ?? {} } as object);
  }

  /** The document's route for a concrete path, e.g. /api/v1/jobs/admin:1 → /api/v1/jobs/{id}. */
  routeOf(method: string, concrete: string): string {
    const plain = concrete.split('?')[0]!;
    const match = Object.keys(this.doc.paths).find((p) =>
      new RegExp(`^${p.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(plain),
    );
    if (!match || !this.doc.paths[match]![method.toLowerCase()])
      throw new Error(`no ${method} ${plain} in the OpenAPI document`);
    return match;
  }

  check<T extends z.ZodType>(seen: Seen, schema: T): z.infer<T> {
    const route = this.routeOf(seen.method, seen.path);
    const response = this.doc.paths[route]![seen.method.toLowerCase()]!.responses[String(seen.status)];
    expect(response, `${seen.method} ${route} documents ${seen.status}`).toBeDefined();
    const json = response!.content?.['application/json']?.schema;
    if (json) {
      const text = JSON.stringify(json).replaceAll('"#/components/', '"doc#/components/');
      const validate = this.ajv.compile(JSON.parse(text) as object);
      expect(validate(seen.json), `${seen.method} ${seen.path}: ${JSON.stringify(validate.errors)}`).toBe(
        true,
      );
    }
    const parsed = schema.safeParse(seen.json);
    expect(parsed.success, `${seen.method} ${seen.path}: ${JSON.stringify(parsed.error?.issues)}`).toBe(true);
    return parsed.data as z.infer<T>;
  }
}
