import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { startRedis } from './services.js';

/**
 * The Redis of the quick start: REDIS_URL when set; otherwise a local redis-server (installing Debian's
 * package when missing and allowed) with its data in .audience-sync/redis, so every demo command sees the
 * same state. Returns how to stop the server it started.
 */
export async function demoRedis(
  root: string,
  say: (text: string) => void,
): Promise<(() => Promise<void>) | undefined> {
  if (process.env.REDIS_URL) return undefined;
  ensureRedisServer(say);
  const dir = path.join(root, '.audience-sync', 'redis');
  mkdirSync(dir, { recursive: true });
  const redis = await startRedis({ dir, persist: true });
  process.env.REDIS_URL = redis.url;
  say(`started redis-server at ${redis.url} (state kept in .audience-sync/redis; stopped when done)`);
  return redis.stop;
}

function ensureRedisServer(say: (text: string) => void): void {
  if (spawnSync('redis-server', ['--version']).status === 0) return;
  if (process.getuid?.() !== 0) {
    say('redis-server is not installed; install it (apt-get install redis-server) or set REDIS_URL');
    process.exit(1);
  }
  say('installing redis-server from Debian packages (apt-get install redis-server)...');
  execFileSync('apt-get', ['update', '-q'], { stdio: 'ignore' });
  execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'redis-server'], {
    stdio: 'ignore',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  say('installed redis-server');
}
