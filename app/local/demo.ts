/**
 * The quick start: score the bundled example shop and sync its segments to the `file` destination.
 * Uses REDIS_URL when set; otherwise starts a local redis-server (installing Debian's package when
 * missing and allowed) with its data in .audience-sync/redis, so a second run sees the first's state.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../cli/main.js';
import { demoRedis } from './demo-redis.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const config = path.join(root, 'config', 'example.yaml');
const say = (text: string) => process.stderr.write(`demo: ${text}\n`);

const stop = await demoRedis(root, say);

let code: number;
try {
  say(`plan for ${path.relative(process.cwd(), config)}:`);
  code = await main(['plan', '--config', config]);
  if (code === 0) {
    say('sync:');
    code = await main(['sync', '--config', config]);
  }
  if (code === 0 || code === 3) {
    // A year of history at once: the trend and movement the API shows (`npm run serve-demo`).
    say('backfill a year of monthly snapshots:');
    const backfill = await main(['backfill', '--config', config, '--from', '2025-01-01', '--every', 'month']);
    if (backfill !== 0) code = backfill;
  }
  if (code === 0 || code === 3)
    say(
      `audiences written to ${path.relative(process.cwd(), path.join(root, '.audience-sync', 'audiences'))}/ (one .members file per audience, changes.jsonl); run it again: nothing changed, nothing is sent`,
    );
} finally {
  await stop?.();
}
process.exitCode = code;
