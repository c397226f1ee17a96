import { ConfigError } from './errors.js';

/**
 * REDIS_URL, read the same way by every process (workers, CLI commands, the quick start). Its errors
 * name the variable and the form expected, and never show the password.
 */
export const REDIS_URL_FORM = 'redis://[user:password@]host:port[/db] (or rediss://… for TLS)';
const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** Where to connect, as ioredis takes it. */
export interface RedisTarget {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db?: number;
  tls?: Record<string, never>;
}

/** Parses REDIS_URL (default `redis://127.0.0.1:6379`); a ConfigError (exit 2) names what is wrong. */
export function redisTarget(value: string | undefined = process.env.REDIS_URL): RedisTarget {
  const text = value === undefined || value.trim() === '' ? DEFAULT_REDIS_URL : value.trim();
  const bad = (why: string) =>
    new ConfigError(
      `REDIS_URL '${masked(text)}' is not a Redis URL: ${why}`,
      `set REDIS_URL to ${REDIS_URL_FORM}, e.g. redis://127.0.0.1:6379`,
    );
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad('it does not parse as a URL');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:')
    throw bad(`it starts with '${url.protocol}' where redis:// or rediss:// is expected`);
  if (!url.hostname) throw bad('it has no host');
  if (url.search || url.hash) throw bad('options after ? or # are not read');
  const path = url.pathname.replace(/^\//, '');
  if (path !== '' && !/^\d+$/.test(path)) throw bad(`'/${path}' is not a database number`);
  let username: string;
  let password: string;
  try {
    username = decodeURIComponent(url.username);
    password = decodeURIComponent(url.password);
  } catch {
    throw bad('its user name or password has a broken %-escape');
  }
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: Number(url.port || 6379),
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    ...(path !== '' ? { db: Number(path) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** REDIS_URL for messages: which variable, and its value without the user and password. */
export function redisWhere(value: string | undefined = process.env.REDIS_URL): string {
  return value === undefined || value.trim() === ''
    ? `${DEFAULT_REDIS_URL} (REDIS_URL is not set)`
    : `REDIS_URL (${masked(value.trim())})`;
}

/** The URL with what may hold a password hidden: anything before the host's `@`, and options after `?`. */
function masked(text: string): string {
  return text
    .replace(/^(.*?:\/\/)?.*@/, (_all, scheme: string | undefined) => `${scheme ?? ''}***@`)
    .replace(/[?#].*$/, '?…');
}

/**
 * What to do about a Redis error that no reconnection fixes (a missing or wrong password, a user without
 * the rights, a Cluster node that does not hold our keys); undefined for the rest (an outage, …).
 */
export function redisConfigProblem(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : String(error);
  const where = redisWhere();
  if (/^NOAUTH\b/.test(message))
    return `Redis at ${where} needs a password (NOAUTH): put it in REDIS_URL, as redis://:PASSWORD@host:port (or redis://USER:PASSWORD@host:port for an ACL user)`;
  if (/^WRONGPASS\b|invalid password|invalid username-password/i.test(message))
    return `Redis at ${where} rejected the user name or password in REDIS_URL (WRONGPASS): the password is wrong, or the user is disabled`;
  if (/^NOPERM\b/.test(message))
    return `the Redis user in ${where} lacks a permission (${message.split('\n')[0]}): grant it all commands on the keys of sync.redis_prefix, or use another user`;
  const moved = /^(MOVED|ASK) (\d+) (\S+)/.exec(message);
  if (moved)
    return `Redis at ${where} answered ${moved[1]} ${moved[2]} ${moved[3]}: it is a Redis Cluster node that does not hold this setup's keys (hash slot ${moved[2]}). audience-sync talks to one Redis: point REDIS_URL at a standalone Redis (or at ${moved[3]}, which holds the slot now)`;
  return undefined;
}
