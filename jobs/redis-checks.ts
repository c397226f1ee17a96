import { Cluster, type Redis } from 'ioredis';
import type { RedisClient } from '../src/redis-client.js';
import { ConfigError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { redisConfigProblem, redisWhere } from '../src/redis-url.js';

/** What a worker needs of its Redis to keep the sync state: data on disk, and nothing evicted. */
interface Durability {
  appendonly: boolean;
  /** RDB snapshot rules (`save`); undefined when Redis does not say (CONFIG is not allowed). */
  save: string | undefined;
  policy: string | undefined;
}

async function durability(redis: Redis): Promise<Durability> {
  try {
    const get = async (name: string) => ((await redis.config('GET', name)) as string[])[1];
    return {
      appendonly: (await get('appendonly')) === 'yes',
      save: (await get('save')) ?? '',
      policy: await get('maxmemory-policy'),
    };
  } catch (error) {
    if (redisConfigProblem(error)) throw error;
    // CONFIG renamed away or not granted (managed Redis, ACL users): INFO tells most of it.
    const info = `${await redis.info('persistence')}\n${await redis.info('memory')}`;
    return {
      appendonly: /^aof_enabled:1\b/m.test(info),
      save: undefined,
      policy: /^maxmemory_policy:(\S+)/m.exec(info)?.[1],
    };
  }
}

/**
 * What is wrong with this Redis for keeping the sync state, each with the redis.conf line that fixes it.
 * On a Cluster every node is asked (a replica becomes a master on failover), and each problem names the
 * nodes that have it.
 */
export async function durabilityProblems(redis: RedisClient): Promise<string[]> {
  const servers = redis instanceof Cluster ? redis.nodes('all') : [redis];
  const each = await Promise.all(servers.map(async (server) => ({ server, d: await durability(server) })));
  const where = (which: (d: Durability) => boolean) => {
    const nodes = each
      .filter((e) => which(e.d))
      .map((e) => `${e.server.options.host}:${e.server.options.port}`);
    if (nodes.length === 0) return undefined;
    if (!(redis instanceof Cluster)) return `Redis at ${redisWhere()}`;
    return `Redis Cluster node${nodes.length > 1 ? 's' : ''} ${nodes.sort().join(', ')}`;
  };
  const problems: string[] = [];
  const unknown = where((d) => !d.appendonly && d.save === undefined);
  if (unknown)
    problems.push(
      `cannot tell whether ${unknown} keeps its data on disk (CONFIG GET is not allowed, and INFO shows no append-only file): set "appendonly yes" in redis.conf`,
    );
  const volatile = where((d) => !d.appendonly && d.save?.trim() === '');
  if (volatile)
    problems.push(
      `${volatile} keeps no data on disk (appendonly no, no save rules): a restart would lose the sync state and the schedules. Set "appendonly yes" in redis.conf`,
    );
  for (const policy of new Set(each.map((e) => e.d.policy))) {
    if (policy === undefined || policy === 'noeviction') continue;
    problems.push(
      `${where((d) => d.policy === policy)!}: maxmemory-policy is ${policy}, so it may evict the sync state when memory runs short. Set "maxmemory-policy noeviction" in redis.conf`,
    );
  }
  return problems;
}

/**
 * Checks at a worker's start that Redis will keep what it is given: it refuses to run otherwise, unless
 * told to (then it says what is at risk). Errors no reconnection fixes (a password, MOVED) stop it too.
 */
export async function checkRedis(
  redis: RedisClient,
  probeKey: string,
  options: { allowVolatile: boolean; log: Logger },
): Promise<void> {
  try {
    // A key of ours: a Cluster node that does not hold our slot answers MOVED here.
    await redis.exists(probeKey);
    const problems = await durabilityProblems(redis);
    if (problems.length === 0) return;
    if (options.allowVolatile) {
      for (const p of problems) options.log.warn(`${p} (running anyway: --allow-volatile-redis)`);
      return;
    }
    throw new ConfigError(
      `${problems.join('\n')}\nThe worker does not run on a Redis that can lose the sync state.`,
      'fix redis.conf as said and restart Redis; to run anyway (a test, a throwaway setup), pass --allow-volatile-redis or set AUDIENCE_SYNC_ALLOW_VOLATILE_REDIS=1',
    );
  } catch (error) {
    const problem = redisConfigProblem(error);
    throw problem ? new ConfigError(problem) : error;
  }
}
