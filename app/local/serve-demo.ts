/**
 * The quick start's HTTP API: the example config served on 127.0.0.1:8787 against the demo's Redis
 * (REDIS_URL, or the local redis-server `npm run demo` kept its state in), until Ctrl-C.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../cli/main.js';
import { demoRedis } from './demo-redis.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const config = path.join(root, 'config', 'example.yaml');
const say = (text: string) => process.stderr.write(`demo: ${text}\n`);

const stop = await demoRedis(root, say);
say(
  'serving the example config on http://127.0.0.1:8787 (Ctrl-C stops it): open it in a browser and log in as demo / demo-password, or:\n' +
    `  curl -s -c jar -H 'content-type: application/json' -d '{"name":"demo","password":"demo-password"}' http://127.0.0.1:8787/api/v1/session\n` +
    '  curl -s -b jar http://127.0.0.1:8787/api/v1/segments',
);
try {
  process.exitCode = await main(['serve', '--config', config]);
} finally {
  await stop?.();
}
