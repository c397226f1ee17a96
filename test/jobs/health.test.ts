import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startRedis, type Service } from '../../app/local/services.js';
import { tempDir } from '../helpers.js';
import { makeShop } from '../sync/harness.js';

/** The worker's /healthz and /metrics, with a real worker process and a real Redis that goes away. */
const BIN = path.resolve('dist/app/cli/bin.js');
const children: ChildProcess[] = [];
const services: Service[] = [];
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.all(services.map((s) => s.stop()));
});

/** A private Redis with AOF (what a worker requires), restartable on the same port and data. */
async function privateRedis() {
  const port = await freePort();
  const dir = tempDir('audience-sync-health-redis-');
  let current: Service | undefined = await startRedis({ port, dir, persist: true });
  services.push(current);
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      await current?.stop();
      services.splice(services.indexOf(current!), 1);
      current = undefined;
    },
    async start() {
      current = await startRedis({ port, dir, persist: true });
      services.push(current);
    },
  };
}

/** Starts a worker and resolves once it logs the port it serves metrics on. */
async function startWorker(cwd: string, redisUrl: string, args: string[] = [], extraEnv = {}) {
  const env: NodeJS.ProcessEnv = { ...process.env, CI: 'true', REDIS_URL: redisUrl, LOG_LEVEL: 'info' };
  delete env.METRICS_HOST;
  delete env.METRICS_PORT;
  const child = spawn(process.execPath, [BIN, 'worker', '--metrics-port', '0', ...args], {
    cwd,
    env: { ...env, ...extraEnv },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let log = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      for (const line of log.split('\n')) {
        if (!line.includes('"port"') || !line.includes('metrics')) continue;
        resolve((JSON.parse(line) as { port: number }).port);
      }
    });
    child.once('exit', (code) =>
      reject(new Error(`worker exited (${code}) before serving metrics:\n${log}`)),
    );
  });
  const stop = async () => {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  };
  return { port, stop, log: () => log };
}

/** GET with a deadline far above what an answer needs: a hang fails the test instead of the suite. */
async function get(port: number, url: string, host = '127.0.0.1') {
  const res = await fetch(`http://${host}:${port}${url}`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text() };
}

/** Whether something accepts connections at host:port ('open'), else the connection error's code. */
function probe(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('open');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** Asks again until `done` holds for an answer; each ask waits for its answer, so none piles up. */
async function until(port: number, url: string, done: (r: { status: number; body: string }) => boolean) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await get(port, url);
    if (done(r)) return r;
    if (Date.now() > deadline) throw new Error(`${url} still answers ${r.status} ${r.body}`);
    await sleep(200);
  }
}

describe('worker health', () => {
  it('/healthz says 503 while Redis is down and 200 once it is back; /metrics answers throughout', async () => {
    const redis = await privateRedis();
    const shop = await makeShop();
    const worker = await startWorker(shop.dir, redis.url);

    expect(await get(worker.port, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    const up = await get(worker.port, '/metrics');
    expect(up.status).toBe(200);
    expect(up.body).toContain('audience_sync_redis_up 1');
    expect(up.body).toMatch(/audience_sync_queue_jobs\{queue="sync",state="waiting"\} 0/);

    // Connected but not answering (a stalled Redis): a script that loops holds every other client.
    const busy = new Redis(redis.url);
    const admin = new Redis(redis.url);
    await Promise.all([busy.ping(), admin.ping()]);
    const looping = busy.eval('while true do end', 0).catch(() => undefined);
    try {
      // Until SCRIPT KILL: no answer at first, a BUSY error once Redis's busy threshold (5 s) has passed.
      await until(worker.port, '/healthz', (r) => r.status !== 200);
      const stalled = await get(worker.port, '/healthz');
      expect(stalled.status).toBe(503);
      expect(stalled.body).toMatch(/^redis: (no answer to PING within 1 s|PING failed \(BUSY\))\n$/);
      expect((await get(worker.port, '/metrics')).body).toContain('audience_sync_redis_up 0');
    } finally {
      await admin.call('SCRIPT', 'KILL');
      await looping;
      busy.disconnect();
      admin.disconnect();
    }
    await until(worker.port, '/healthz', (r) => r.status === 200);

    await redis.stop();
    // The first probe after the stop already fails: the check never answers from an old result.
    const down = await get(worker.port, '/healthz');
    expect(down.status).toBe(503);
    expect(down.body).toMatch(/^redis: /);
    expect(down.body).not.toContain('redis://');
    for (let i = 0; i < 3; i++) {
      const metrics = await get(worker.port, '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.body).toContain('audience_sync_redis_up 0');
      expect(metrics.body).toContain('audience_sync_runs_total');
      // No stale queue counts while they cannot be read.
      expect(metrics.body).not.toMatch(/audience_sync_queue_jobs\{/);
    }

    await redis.start();
    await until(worker.port, '/healthz', (r) => r.status === 200);
    const back = await until(worker.port, '/metrics', (r) => r.body.includes('audience_sync_queue_jobs{'));
    expect(back.body).toContain('audience_sync_redis_up 1');
    await worker.stop();
  });
});

describe('metrics address', () => {
  it('binds 127.0.0.1 by default, and the address given by --metrics-host or METRICS_HOST', async () => {
    const redis = await privateRedis();
    const shop = await makeShop();
    // The whole 127.0.0.0/8 reaches loopback: a server on 0.0.0.0 would answer on 127.0.0.2 too.
    const byDefault = await startWorker(shop.dir, redis.url);
    expect(await probe('127.0.0.1', byDefault.port)).toBe('open');
    expect(await probe('127.0.0.2', byDefault.port)).toBe('ECONNREFUSED');
    await byDefault.stop();

    const byFlag = await startWorker(shop.dir, redis.url, ['--metrics-host', '127.0.0.2']);
    expect(await probe('127.0.0.2', byFlag.port)).toBe('open');
    expect(await probe('127.0.0.1', byFlag.port)).toBe('ECONNREFUSED');
    expect((await get(byFlag.port, '/healthz', '127.0.0.2')).status).toBe(200);
    await byFlag.stop();

    const byEnv = await startWorker(shop.dir, redis.url, [], { METRICS_HOST: '127.0.0.2' });
    expect(await probe('127.0.0.2', byEnv.port)).toBe('open');
    expect(await probe('127.0.0.1', byEnv.port)).toBe('ECONNREFUSED');
    await byEnv.stop();
  });

  it('a metrics address this machine does not have stops the worker with the setting named', async () => {
    const redis = await privateRedis();
    const shop = await makeShop();
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address, and nothing is sent to it.
    const child = spawn(
      process.execPath,
      [BIN, 'worker', '--metrics-port', '0', '--metrics-host', '192.0.2.1'],
      {
        cwd: shop.dir,
        env: { ...process.env, CI: 'true', REDIS_URL: redis.url, LOG_LEVEL: 'info' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    children.push(child);
    let stderr = '';
    await new Promise<void>((resolve) => {
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('cannot serve metrics')) resolve();
      });
      child.once('exit', () => resolve());
    });
    expect(stderr).toMatch(/cannot serve metrics on 192\.0\.2\.1:0.*--metrics-host/s);
    expect(stderr).not.toMatch(/"msg":"metrics on/);
  });
});
