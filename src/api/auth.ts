import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import argon2 from 'argon2';
import type { RedisClient } from '../redis-client.js';
import type { HttpConfig, Role } from '../config/schema.js';

/**
 * Who may use the HTTP API, and how they prove it: passwords (argon2id) for login sessions kept in Redis,
 * API tokens (stored as SHA-256 hashes: they are random, so a fast hash is enough), or a trusted
 * reverse proxy's user header. Redis holds hashes of session ids only: a copy of Redis logs nobody in.
 */

/** Who a request acts as. */
export interface Principal {
  user: string;
  role: Role;
  via: 'session' | 'token' | 'proxy';
  /** The CSRF token state-changing requests must echo (none for bearer tokens, which browsers never send by themselves). */
  csrf?: string;
  /** The session's id hash and end (session logins only). */
  session?: { key: string; expiresAt: string };
}

export async function hashPassword(password: string): Promise<string> {
  return argon2.hash(password, { type: argon2.argon2id });
}

// A hash of nothing anyone knows: unknown users cost as much time as known ones.
let dummyHash: Promise<string> | undefined;

/** The user's role when the password is theirs; undefined otherwise (unknown user, no password set, wrong password). */
export async function checkPassword(
  http: HttpConfig,
  name: string,
  password: string,
): Promise<Role | undefined> {
  const user = http.users.find((u) => u.name === name);
  const ok = await argon2
    .verify(
      user?.password_hash ?? (await (dummyHash ??= hashPassword(randomBytes(16).toString('hex')))),
      password,
    )
    .catch(() => false);
  return ok && user?.password_hash ? user.role : undefined;
}

/** API tokens start with this, so a leaked one is easy to find in code and logs. */
const TOKEN_PREFIX = 'ast_';

export function tokenHash(token: string): string {
  return `sha256:${createHash('sha256').update(token).digest('hex')}`;
}

/** A new API token (shown once) and the hash to put in `http.tokens`. */
export function newToken(): { token: string; hash: string } {
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  return { token, hash: tokenHash(token) };
}

export function tokenPrincipal(http: HttpConfig, token: string): Principal | undefined {
  const hash = Buffer.from(tokenHash(token));
  const entry = http.tokens.find((t) => {
    const stored = Buffer.from(t.token_hash);
    return stored.length === hash.length && timingSafeEqual(stored, hash);
  });
  return entry ? { user: entry.name, role: entry.role, via: 'token' } : undefined;
}

/** Keys of the API's own data in Redis, under the setup's prefix. */
const keys = {
  session: (prefix: string, idHash: string) => `${prefix}:http:session:${idHash}`,
  userSessions: (prefix: string, user: string) => `${prefix}:http:sessions:${user}`,
  failures: (prefix: string, kind: 'user' | 'address', who: string) =>
    `${prefix}:http:login-failures:${kind}:${createHash('sha256').update(who).digest('hex').slice(0, 32)}`,
  csrfKey: (prefix: string) => `${prefix}:http:csrf-key`,
};

interface StoredSession {
  user: string;
  csrf: string;
  createdAt: string;
  expiresAt: string;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Login sessions in Redis: revocable one by one (logout) or per user; they expire by themselves. */
export class Sessions {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  /** Starts a session; the id goes to the cookie and nowhere else. */
  async create(user: string, hours: number): Promise<{ id: string; csrf: string; expiresAt: string }> {
    const id = randomBytes(32).toString('base64url');
    const ms = Math.round(hours * 3_600_000);
    const now = Date.now();
    const session: StoredSession = {
      user,
      csrf: randomBytes(32).toString('base64url'),
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + ms).toISOString(),
    };
    const idHash = sha256(id);
    const index = keys.userSessions(this.prefix, user);
    // The user's index (for revoking them all) drops sessions that ended by themselves as it grows.
    await this.redis
      .multi()
      .set(keys.session(this.prefix, idHash), JSON.stringify(session), 'PX', ms)
      .zremrangebyscore(index, '-inf', now)
      .zadd(index, now + ms, idHash)
      .exec();
    return { id, csrf: session.csrf, expiresAt: session.expiresAt };
  }

  /** The session behind a cookie's id, while it lasts. */
  async get(id: string): Promise<(StoredSession & { key: string }) | undefined> {
    const idHash = sha256(id);
    const raw = await this.redis.get(keys.session(this.prefix, idHash));
    return raw ? { ...(JSON.parse(raw) as StoredSession), key: idHash } : undefined;
  }

  async end(user: string, idHash: string): Promise<void> {
    await this.redis
      .multi()
      .del(keys.session(this.prefix, idHash))
      .zrem(keys.userSessions(this.prefix, user), idHash)
      .exec();
  }

  /** Ends every session of a user; resolves to how many were live. */
  async revokeUser(user: string): Promise<number> {
    const index = keys.userSessions(this.prefix, user);
    const hashes = await this.redis.zrange(index, 0, -1);
    if (hashes.length === 0) return 0;
    const results = await this.redis
      .multi()
      .del(...hashes.map((h) => keys.session(this.prefix, h)))
      .del(index)
      .exec();
    return Number(results?.[0]?.[1] ?? 0);
  }
}

/** Failed logins counted per user name and per client address, in Redis so that every server shares them. */
export class LoginLimiter {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  /** Seconds until the next attempt may be made, or 0 when one may be made now. */
  async retryAfter(limit: HttpConfig['login_limit'], user: string, address: string): Promise<number> {
    const pairs = [
      [keys.failures(this.prefix, 'user', user), limit.per_user],
      [keys.failures(this.prefix, 'address', address), limit.per_address],
    ] as const;
    let wait = 0;
    for (const [key, max] of pairs) {
      const [count, ttl] = await Promise.all([this.redis.get(key), this.redis.pttl(key)]);
      if (Number(count ?? 0) >= max) wait = Math.max(wait, Math.ceil(Math.max(ttl, 1000) / 1000));
    }
    return wait;
  }

  async failed(limit: HttpConfig['login_limit'], user: string, address: string): Promise<void> {
    const ms = Math.round(limit.window_minutes * 60_000);
    const tx = this.redis.multi();
    for (const key of [
      keys.failures(this.prefix, 'user', user),
      keys.failures(this.prefix, 'address', address),
    ])
      tx.set(key, 0, 'PX', ms, 'NX').incr(key); // the window starts at the first failure
    await tx.exec();
  }

  /** A good password clears the user's count (the address's stays: it may be guessing other names). */
  async succeeded(user: string): Promise<void> {
    await this.redis.del(keys.failures(this.prefix, 'user', user));
  }
}

/**
 * The CSRF token of a proxy-authenticated user, who has no session to keep one in: an HMAC of the user
 * under a key shared in Redis by every server of this setup.
 */
export async function proxyCsrf(redis: RedisClient, prefix: string, user: string): Promise<string> {
  const key = keys.csrfKey(prefix);
  await redis.set(key, randomBytes(32).toString('base64url'), 'NX');
  const secret = await redis.get(key);
  return createHmac('sha256', secret ?? '')
    .update(`proxy\0${user}`)
    .digest('base64url');
}

/** Compares a CSRF token sent with the expected one without leaking where they differ. */
export function sameToken(sent: string | undefined, expected: string): boolean {
  if (sent === undefined || expected === '') return false;
  const a = Buffer.from(sent);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
