import { ConfigError, UserError } from '../errors.js';
import { registerUrlPassword } from '../redact.js';
import { redisCluster, redisSentinel, redisTarget } from '../redis-url.js';
import type { RedisConfig } from './schema.js';

/** The environment variables a config's `redis:` block stands for. */
const VARIABLES = ['REDIS_URL', 'REDIS_CLUSTER_NODES', 'REDIS_CLUSTER_NAT', 'REDIS_SENTINELS'] as const;
type Variable = (typeof VARIABLES)[number];

/** `user:password@`, percent-encoded, or nothing. */
function login(username: string | undefined, password: string | undefined): string {
  if (password === undefined) return username ? `${encodeURIComponent(username)}@` : '';
  return `${encodeURIComponent(username ?? '')}:${encodeURIComponent(password)}@`;
}

/** A list of host:port as the variables write it: bare, or a URL where a login or TLS is needed. */
function servers(list: readonly string[], scheme: string, auth: string): string {
  return list.map((node) => (auth || scheme === 'rediss' ? `${scheme}://${auth}${node}` : node)).join(',');
}

/** The REDIS_* variables that say what `redis` says (unset ones: undefined). */
export function redisVariables(redis: RedisConfig): Record<Variable, string | undefined> {
  const scheme = redis.tls ? 'rediss' : 'redis';
  let url: string | undefined;
  if (redis.url !== undefined) {
    const parsed = new URL(redis.url.trim());
    if (redis.tls && parsed.protocol === 'redis:') parsed.protocol = 'rediss:';
    if (redis.username !== undefined) parsed.username = encodeURIComponent(redis.username);
    if (redis.password !== undefined) parsed.password = encodeURIComponent(redis.password);
    url = parsed.toString();
  }
  const nat = redis.cluster_nat
    ? Object.entries(redis.cluster_nat)
        .map(([announced, reachable]) => `${announced}=${reachable}`)
        .join(',')
    : undefined;
  return {
    REDIS_URL: url,
    REDIS_CLUSTER_NODES: redis.cluster_nodes
      ? servers(redis.cluster_nodes, scheme, login(redis.username, redis.password))
      : undefined,
    REDIS_CLUSTER_NAT: nat,
    REDIS_SENTINELS: redis.sentinels
      ? servers(redis.sentinels, scheme, login(redis.sentinel_username, redis.sentinel_password))
      : undefined,
  };
}

/**
 * Makes the config's `redis:` block the setup's Redis: sets the REDIS_* variables it stands for in `env`, which
 * every client, queue and thread of the process reads. A variable already set to something else (by the
 * environment, or by an earlier config in this process: a running worker reads Redis's place at start) is a
 * ConfigError naming both; so is a block that names no usable Redis.
 */
export function applyRedisConfig(redis: RedisConfig | undefined, file: string, env: NodeJS.ProcessEnv): void {
  if (!redis) return;
  let wanted: Record<Variable, string | undefined>;
  try {
    wanted = redisVariables(redis);
  } catch {
    throw new ConfigError(
      `${file}: redis.url '${redis.url ?? ''}' is not a URL`,
      'write redis://host:port[/db]',
    );
  }
  for (const variable of VARIABLES) {
    const have = env[variable]?.trim() ? env[variable]!.trim() : undefined;
    if (have !== undefined && have !== wanted[variable])
      throw new ConfigError(
        `${variable} is set in the environment and the config's redis: block (${file}) ${wanted[variable] === undefined ? 'does not set it' : 'says otherwise'}: Redis is given in one place`,
        `unset ${variable}, or remove the redis: block from the config; a running worker keeps the Redis it started with: restart it after changing redis:`,
      );
  }
  // The forms each variable takes, checked before any is set, naming the block (the environment agrees).
  const {
    REDIS_URL: url,
    REDIS_CLUSTER_NODES: nodes,
    REDIS_CLUSTER_NAT: nat,
    REDIS_SENTINELS: sentinels,
  } = wanted;
  try {
    if (!redisCluster(nodes, nat, url, sentinels) && !redisSentinel(sentinels, url, nodes)) redisTarget(url);
  } catch (error) {
    if (error instanceof UserError)
      throw new ConfigError(
        `${file}: redis: ${error.message} (as the variables the block stands for)`,
        error.hint,
      );
    throw error;
  }
  for (const variable of VARIABLES) {
    const value = wanted[variable];
    if (value === undefined) continue;
    env[variable] = value;
    for (const entry of value.split(',')) registerUrlPassword(entry);
  }
}
