import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { expect } from 'vitest';
import { generateShop } from '../../src/example/generate.js';
import { tempDir } from '../helpers.js';

/**
 * Secrets echoed back by fakes, through the real CLI: every command an operator runs (check, sync, a
 * worker with resync --wait and check --via-worker, status) against a platform whose every error repeats
 * the credentials it received, and then everything the processes printed and everything in Redis under
 * the test's prefix, searched for any piece of any secret.
 */

const BIN = path.resolve('dist/app/cli/bin.js');

/** The credentials of the tests, as the environment hands them to the config (and tokens the fakes issue). */
export const SECRETS = {
  GOOGLE_CLIENT_SECRET: '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',
  // Google refresh tokens hold `/`, which URL encoding and some JSON encoders write differently.
  GOOGLE_REFRESH_TOKEN: '1//0gEchoRefreshToken4Hk8Tn2Wq6Yb-Jd3Mf5Rs',
  GOOGLE_ADS_DEVELOPER_TOKEN: 'DevTokenEcho5Nz8Kc1Vx4Bg',
  META_ACCESS_TOKEN: 'EAABechoMetaToken3Gh7Jk1Lz9Qw5Er8Ty2',
  MAILCHIMP_API_KEY: 'echoMailchimpKey5Tg8Hn2Jm4Kp7Lq9-us21',
} as const;
/** Access tokens the fakes' token endpoints issue: learned at run time, never configured. */
export const ISSUED = {
  dataManager: 'ya29.EchoIssuedAccessToken6Rt3Yu8Io1',
  adsApi: 'ya29.EchoAdsAccessToken2Wd5Fg9Hj4',
};

/**
 * Per secret, every run of 10 letters or digits inside it: a secret that leaks whole, cut short, or in any
 * encoding (URL, JSON; base64 aside) leaves at least one of these, and none occurs by chance elsewhere.
 */
const NEEDLES: readonly (readonly [string, string[]])[] = Object.entries({ ...SECRETS, ...ISSUED }).map(
  ([name, secret]) => [
    name,
    (secret.match(/[A-Za-z0-9]{10,}/g) ?? []).flatMap((run) =>
      Array.from({ length: run.length - 9 }, (_, i) => run.slice(i, i + 10)),
    ),
  ],
);

/** Which secrets a text holds a piece of, each with a little context, for a readable failure. */
export function leaks(where: string, text: string): string[] {
  const found: string[] = [];
  for (const [name, needles] of NEEDLES)
    for (const needle of needles) {
      const at = text.indexOf(needle);
      if (at === -1) continue;
      found.push(`${where}: ${name} in …${text.slice(Math.max(0, at - 60), at + 40)}…`);
      break;
    }
  return found;
}

/**
 * A local HTTP server in front of a fake served by nock in this process, for child processes: each
 * request is sent on with this process's `fetch`, which nock answers.
 */
export async function bridge(origin: string): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers))
        if (value !== undefined && !['host', 'connection', 'content-length'].includes(name))
          headers.set(name, Array.isArray(value) ? value.join(', ') : value);
      const body = chunks.length > 0 ? Buffer.concat(chunks) : undefined;
      fetch(`${origin}${req.url}`, { method: req.method!, headers, ...(body ? { body } : {}) })
        .then(async (answer) => {
          const out: Record<string, string> = {};
          answer.headers.forEach((value, name) => {
            if (!['content-length', 'content-encoding', 'transfer-encoding', 'connection'].includes(name))
              out[name] = value;
          });
          const bytes = Buffer.from(await answer.arrayBuffer());
          res.writeHead(answer.status, out).end(bytes);
        })
        .catch((error: unknown) => res.writeHead(502).end(`bridge: ${String(error)}`));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

export interface Output {
  what: string;
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Everything a scenario's processes printed, and every key and value under its Redis prefix. */
export interface Collected {
  outputs: Output[];
  redis: { key: string; value: string }[];
}

const children = new Set<ChildProcess>();
export function killChildren(): void {
  for (const c of children) c.kill('SIGKILL');
}

function run(
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  ready?: (stderr: string) => boolean,
): { done: Promise<Output>; ready: Promise<void>; child: ChildProcess } {
  const started = performance.now();
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  let markReady: () => void = () => undefined;
  const isReady = new Promise<void>((resolve) => (markReady = resolve));
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (ready?.(stderr)) markReady();
  });
  const done = new Promise<Output>((resolve) =>
    child.once('close', (code) => {
      children.delete(child);
      markReady();
      resolve({ what: args.join(' '), code, stdout, stderr, seconds: (performance.now() - started) / 1000 });
    }),
  );
  return { done, ready: isReady, child };
}

/** Promotes the sync queue's delayed jobs (BullMQ's retries back off for minutes) until `until` settles. */
async function promoteRetries<T>(redisUrl: string, prefix: string, until: Promise<T>): Promise<T> {
  const queue = new Queue('sync', { connection: { url: redisUrl }, prefix: `{${prefix}}` });
  let settled = false;
  void until.finally(() => (settled = true)).catch(() => undefined);
  try {
    while (!settled) {
      for (const job of await queue.getDelayed()) await job.promote().catch(() => undefined);
      await Promise.race([until.catch(() => undefined), new Promise((r) => setTimeout(r, 200))]);
    }
    return await until;
  } finally {
    await queue.close();
  }
}

/** Every key under the prefix with every value it holds, whatever its type (BullMQ's hashes, lists, streams). */
export async function dumpRedis(redis: Redis, prefix: string): Promise<{ key: string; value: string }[]> {
  const out: { key: string; value: string }[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scanBuffer(cursor, 'MATCH', `*${prefix}*`, 'COUNT', 1000);
    cursor = next.toString();
    for (const raw of found) {
      const key = raw.toString('latin1');
      const type = await redis.type(raw);
      let values: Buffer[] = [];
      if (type === 'string') values = [(await redis.getBuffer(raw))!];
      else if (type === 'hash')
        values = await redis
          .hgetallBuffer(raw)
          .then((h) => Object.entries(h).flatMap(([f, v]) => [Buffer.from(f), v]));
      else if (type === 'list') values = await redis.lrangeBuffer(raw, 0, -1);
      else if (type === 'set') values = await redis.smembersBuffer(raw);
      else if (type === 'zset') values = await redis.zrangeBuffer(raw, 0, -1, 'WITHSCORES');
      else if (type === 'stream')
        values = (await redis.xrangeBuffer(raw, '-', '+')).flatMap(([id, fields]) => [id, ...fields]);
      out.push({ key, value: key });
      for (const v of values) out.push({ key, value: v.toString('latin1') });
    }
  } while (cursor !== '0');
  return out;
}

/**
 * A small shop syncing two audiences to one destination (`destination`, its YAML block indented by four
 * spaces under its name), and the commands an operator runs against it, in order.
 */
export async function runCommands(options: {
  redisUrl: string;
  destination: string;
  block: string;
}): Promise<Collected> {
  const dir = tempDir('audience-sync-redact-');
  await generateShop(path.join(dir, 'shop'), { customers: 200, seed: 5, analysisDate: '2026-01-01' });
  const prefix = `test-${path.basename(dir)}`;
  writeFileSync(
    path.join(dir, 'audience-sync.yaml'),
    `source: { type: csv, path: shop/orders.csv }
profiles: { type: csv, path: shop/customers.csv }
scoring: { analysis_date: "2026-01-01" }
audiences:
  per_segment: false
  list:
    - { name: "Best", segments: [Champions, Loyal Customers] }
    - { name: "Slipping away", segments: ["At Risk", "Can't Lose Them", Hibernating] }
destinations:
  ${options.destination}:
${options.block}
sync: { redis_prefix: ${prefix}, lease_seconds: 2 }
`,
  );
  const env = {
    ...process.env,
    ...SECRETS,
    CI: 'true',
    DEBUG: '1',
    LOG_LEVEL: 'debug',
    REDIS_URL: options.redisUrl,
  };
  const outputs: Output[] = [];
  const cli = async (...args: string[]) => {
    const result = await run(args, dir, env).done;
    outputs.push(result);
    return result;
  };
  const d = options.destination;
  await cli('check');
  await cli('sync', '--json');
  // The second run finds what the first left (pending uploads, remembered audiences): other calls fail.
  await cli('sync');

  const worker = run(['worker', '--concurrency', '1'], dir, env, (e) => e.includes('worker started'));
  await worker.ready;
  outputs.push(
    await promoteRetries(
      options.redisUrl,
      prefix,
      run(['resync', '--destination', d, '--wait'], dir, env).done,
    ),
  );
  await cli('check', '--via-worker', '--destination', d);
  await cli('status', '--json');
  worker.child.kill('SIGTERM');
  outputs.push({ ...(await worker.done), what: 'worker' });

  const redis = new Redis(options.redisUrl);
  try {
    return { outputs, redis: await dumpRedis(redis, prefix) };
  } finally {
    redis.disconnect();
  }
}

/** Every leak in what a scenario printed or stored. */
export function leaksIn(collected: Collected): string[] {
  return [
    ...collected.outputs.flatMap((o) => [
      ...leaks(`${o.what} (stdout)`, o.stdout),
      ...leaks(`${o.what} (stderr)`, o.stderr),
    ]),
    ...collected.redis.flatMap((r) => leaks(`redis ${r.key}`, r.value)),
  ];
}

/** All a scenario printed, as one text (for what the messages must still say). */
export function printed(collected: Collected): string {
  return collected.outputs
    .map((o) => `$ ${o.what} → ${o.code} (${o.seconds.toFixed(1)} s)\n${o.stdout}${o.stderr}`)
    .join('\n');
}

/**
 * Runs the commands (`runCommands`) and checks that no secret leaked, and that the platform's echo was
 * redacted both on the screen and in Redis; returns all that was printed, for what the messages must say.
 */
export async function runRedacted(options: Parameters<typeof runCommands>[0]): Promise<string> {
  const collected = await runCommands(options);
  expect(leaksIn(collected)).toEqual([]);
  const text = printed(collected);
  expect(text).toContain('[redacted]');
  expect(collected.redis.some((r) => r.value.includes('[redacted]'))).toBe(true);
  return text;
}
