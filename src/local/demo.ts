/**
 * The quick start: score the bundled example shop and sync its segments to the `file` destination.
 * Uses REDIS_URL when set; otherwise starts a local redis-server (installing Debian's package when
 * missing and allowed) with its data in .audience-sync/redis, so a second run sees the first's state.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../cli/main.js';
import { startRedis } from './services.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const config = path.join(root, 'config', 'example.yaml');
const say = (text: string) => process.stderr.write(`demo: ${text}\n`);

function ensureRedisServer(): void {
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

let stop: (() => Promise<void>) | undefined;
if (!process.env.REDIS_URL) {
  ensureRedisServer();
  const dir = path.join(root, '.audience-sync', 'redis');
  mkdirSync(dir, { recursive: true });
  const redis = await startRedis({ dir, persist: true });
  process.env.REDIS_URL = redis.url;
  stop = redis.stop;
  say(`started redis-server at ${redis.url} (state kept in .audience-sync/redis; stopped when done)`);
}

let code: number;
try {
  say(`plan for ${path.relative(process.cwd(), config)}:`);
  code = await main(['plan', '--config', config]);
  if (code === 0) {
    say('sync:');
    code = await main(['sync', '--config', config]);
  }
  if (code === 0 || code === 3)
    say(
      `audiences written to ${path.relative(process.cwd(), path.join(root, '.audience-sync', 'audiences'))}/ (one .members file per audience, changes.jsonl); run it again: nothing changed, nothing is sent`,
    );
} finally {
  await stop?.();
}
process.exitCode = code;
