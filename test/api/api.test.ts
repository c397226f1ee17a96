import { readdirSync } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  actionSchema,
  audiencesSchema,
  destinationsSchema,
  errorSchema,
  jobSchema,
  revokedSchema,
  runsSchema,
  schedulesSchema,
  sessionSchema,
} from '../../src/api/schemas.js';
import { redisTarget } from '../../src/redis-url.js';
import { audienceHealthSchema } from '../../src/health/schema.js';
import { killAll, run, until } from '../jobs/procs.js';
import { Client, makeSetup, OpenApi, serve, TOKENS, USERS, type Seen } from './harness.js';

/**
 * The HTTP API as users reach it: `audience-sync serve` in its own process, real HTTP, real Redis; a worker
 * process for the actions. Every answer is checked against its zod schema and against the OpenAPI document
 * the server publishes, and every answer of the run is searched for emails, phones, names and tokens.
 */

let setup: Awaited<ReturnType<typeof makeSetup>>;
let client: Client;
let openapi: OpenApi;
let stop: () => Promise<void>;
const ops = { token: TOKENS.operator };
const viewer = { token: TOKENS.viewer };
/** Session ids the server set: they may appear in the Set-Cookie that set them, nowhere else. */
const sessionIds: string[] = [];

beforeAll(async () => {
  setup = await makeSetup();
  const server = await serve(['serve', '--port', '0'], setup.dir, inject('redisUrl'));
  client = new Client(server.url);
  stop = async () => {
    server.proc.child.kill('SIGTERM');
    await server.proc.exited;
  };
  const doc = await client.call('GET', '/api/v1/openapi.json', viewer);
  expect(doc.status).toBe(200);
  openapi = new OpenApi(doc.json as ConstructorParameters<typeof OpenApi>[0]);
});

afterAll(async () => {
  await stop?.();
  killAll();
});

const login = async (name: keyof typeof USERS) => {
  const session = await client.login(name);
  sessionIds.push(session.value);
  openapi.check(client.seen.at(-1)!, sessionSchema);
  return session;
};

describe('authentication and roles', () => {
  it('answers 401 to a request without a cookie or token, on every route but /healthz', async () => {
    const health = await client.call('GET', '/healthz');
    expect(health.status).toBe(200);
    expect(health.json).toEqual({ ok: true, redis: 'ready' });
    for (const [method, url] of [
      ['GET', '/api/v1/destinations'],
      ['GET', '/api/v1/audiences'],
      ['GET', '/api/v1/schedules'],
      ['GET', '/api/v1/destinations/local/audiences/RFM%3A%20Champions/runs'],
      ['GET', '/api/v1/destinations/local/audiences/RFM%3A%20Champions'],
      ['GET', '/api/v1/jobs/admin:1'],
      ['GET', '/api/v1/session'],
      ['GET', '/api/v1/openapi.json'],
      ['POST', '/api/v1/destinations/local/pause'],
      ['POST', '/api/v1/destinations/local/resync'],
    ] as const) {
      const r = await client.call(method, url);
      expect(r.status, `${method} ${url}`).toBe(401);
      expect(errorSchema.parse(r.json).error).toBe('unauthenticated');
    }
    const forged = await client.call('GET', '/api/v1/destinations', {
      cookie: 'audience_sync_session=not-a-session',
    });
    expect(forged.status).toBe(401);
    const wrongToken = await client.call('GET', '/api/v1/destinations', { token: 'ast_guess' });
    expect(wrongToken.status).toBe(401);
  });

  it('logs in with a cookie that is HttpOnly and SameSite=Strict, and not Secure over plain HTTP', async () => {
    const { setCookie, cookie, csrf } = await login('vera');
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    expect(setCookie).not.toMatch(/Secure/);
    const me = openapi.check(await client.call('GET', '/api/v1/session', { cookie }), sessionSchema);
    expect(me).toMatchObject({ user: 'vera', role: 'viewer', via: 'session', csrf_token: csrf });
  });

  it('answers 403 naming the role to a viewer asking for an action, by cookie or by token', async () => {
    const { cookie, csrf } = await login('vera');
    for (const auth of [{ cookie, csrf }, viewer]) {
      const r = await client.call('POST', '/api/v1/destinations/local/pause', auth);
      expect(r.status).toBe(403);
      const body = openapi.check(r, errorSchema);
      expect(body.error).toBe('forbidden');
      expect(body.message).toMatch(/operator role/);
    }
  });

  it('answers 403 to a state-changing request by cookie without the CSRF token, or with a wrong one', async () => {
    const { cookie, csrf } = await login('otto');
    for (const bad of [undefined, csrf.slice(0, -2) + 'xx']) {
      const r = await client.call('POST', '/api/v1/destinations/local/check', {
        cookie,
        ...(bad ? { csrf: bad } : {}),
      });
      expect(r.status).toBe(403);
      expect(openapi.check(r, errorSchema).error).toBe('csrf');
    }
    const logout = await client.call('DELETE', '/api/v1/session', { cookie });
    expect(logout.status).toBe(403);
    // The same request with the token goes through.
    const ok = await client.call('POST', '/api/v1/destinations/local/check', { cookie, csrf });
    expect(ok.status).toBe(202);
    openapi.check(ok, actionSchema);
  });

  it('rate-limits wrong passwords per user name with 429 and Retry-After, even for the right one after', async () => {
    const wrong = () =>
      client.call('POST', '/api/v1/session', { body: { name: 'lockme', password: 'wrong password' } });
    for (let k = 0; k < 3; k++) {
      const r = await wrong();
      expect(r.status).toBe(401);
      openapi.check(r, errorSchema);
    }
    const limited = await wrong();
    expect(limited.status).toBe(429);
    expect(openapi.check(limited, errorSchema).error).toBe('rate_limited');
    const retryAfter = Number(limited.headers.find(([k]) => k === 'retry-after')?.[1]);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(600);
    const right = await client.call('POST', '/api/v1/session', {
      body: { name: 'lockme', password: USERS.lockme.password },
    });
    expect(right.status).toBe(429);
    // Another user from the same address is not locked out by it.
    await login('vera');
  });

  it('ends a session at logout, and every session of a user when an operator or the CLI revokes them', async () => {
    const a = await login('vera');
    expect((await client.call('GET', '/api/v1/destinations', { cookie: a.cookie })).status).toBe(200);
    const out = await client.call('DELETE', '/api/v1/session', { cookie: a.cookie, csrf: a.csrf });
    expect(out.status).toBe(204);
    expect((await client.call('GET', '/api/v1/destinations', { cookie: a.cookie })).status).toBe(401);

    const b = await login('vera');
    const c = await login('vera');
    const viewerTries = await client.call('DELETE', '/api/v1/users/vera/sessions', viewer);
    expect(viewerTries.status).toBe(403);
    const revoked = openapi.check(
      await client.call('DELETE', '/api/v1/users/vera/sessions', ops),
      revokedSchema,
    );
    expect(revoked.revoked).toBeGreaterThanOrEqual(2);
    for (const s of [b, c])
      expect((await client.call('GET', '/api/v1/session', { cookie: s.cookie })).status).toBe(401);

    const d = await login('otto');
    const cli = run(['sessions', 'revoke', '--user', 'otto', '--json'], {
      cwd: setup.dir,
      env: { ...process.env, REDIS_URL: inject('redisUrl'), LOG_LEVEL: 'warn' },
    });
    expect(await cli.exited).toBe(0);
    expect(JSON.parse(cli.stdout())).toMatchObject({ user: 'otto' });
    expect((await client.call('GET', '/api/v1/session', { cookie: d.cookie })).status).toBe(401);
  });
});

describe('resources', () => {
  it('lists destinations with their type, audiences and paused flag', async () => {
    const body = openapi.check(await client.call('GET', '/api/v1/destinations', viewer), destinationsSchema);
    expect(body.destinations).toHaveLength(1);
    const local = body.destinations[0]!;
    expect(local).toMatchObject({ name: 'local', type: 'file', paused: false, paused_since: null });
    // The default map's eleven segments, one audience each, named by the default pattern.
    expect(local.audiences).toHaveLength(11);
    expect(local.audiences).toContainEqual({ name: 'RFM: Champions', segments: ['Champions'] });
  });

  it("lists every audience's health in one answer, each as its own route answers it", async () => {
    const all = openapi.check(await client.call('GET', '/api/v1/audiences', viewer), audiencesSchema);
    // The default map's eleven segments, one audience each, on the one destination.
    expect(all.audiences).toHaveLength(11);
    for (const a of all.audiences) {
      const one = await client.call(
        'GET',
        `/api/v1/destinations/${encodeURIComponent(a.destination)}/audiences/${encodeURIComponent(a.audience)}`,
        viewer,
      );
      expect(openapi.check(one, audienceHealthSchema), a.audience).toEqual(a);
    }
    const champions = openapi.check(
      await client.call('GET', '/api/v1/audiences?segment=Champions', viewer),
      audiencesSchema,
    );
    expect(champions.audiences.map((a) => [a.destination, a.audience])).toEqual([
      ['local', 'RFM: Champions'],
    ]);
    const unknown = await client.call('GET', '/api/v1/audiences?segment=Champs', viewer);
    expect(unknown.status).toBe(404);
    expect(openapi.check(unknown, errorSchema).message).toMatch(/no segment named 'Champs'/);
  });

  it('lists schedules from the config', async () => {
    const body = openapi.check(await client.call('GET', '/api/v1/schedules', viewer), schedulesSchema);
    expect(body.schedules).toEqual([
      expect.objectContaining({
        destination: 'local',
        audience: null,
        cron: '0 3 * * *',
        tz: 'UTC',
        full: false,
      }),
    ]);
  });

  it('answers 400 naming the parameter and what is allowed, and 404 naming the unknown name', async () => {
    const runs = '/api/v1/destinations/local/audiences/RFM%3A%20Champions/runs';
    for (const bad of ['?limit=0', '?limit=abc', '?limit=201', '?cursor=nonsense', '?colour=red']) {
      const r = await client.call('GET', runs + bad, viewer);
      expect(r.status, bad).toBe(400);
      const body = openapi.check(r, errorSchema);
      expect(body.message).toMatch(
        bad.includes('limit') ? /limit.*1 to 200/ : bad.includes('cursor') ? /cursor/ : /colour/,
      );
    }
    const badBody = await client.call('POST', '/api/v1/destinations/local/resync', {
      ...ops,
      body: { full: 'yes' },
    });
    expect(badBody.status).toBe(400);
    expect(openapi.check(badBody, errorSchema).message).toMatch(/full/);

    const noDest = await client.call('GET', '/api/v1/destinations/nowhere/audiences/x/runs', viewer);
    expect(noDest.status).toBe(404);
    const d = openapi.check(noDest, errorSchema);
    expect(d.message).toMatch(/no destination named 'nowhere'/);
    expect(d.allowed).toEqual(['local']);
    const noAud = await client.call(
      'GET',
      '/api/v1/destinations/local/audiences/RFM%3A%20Champs/runs',
      viewer,
    );
    expect(noAud.status).toBe(404);
    const a = openapi.check(noAud, errorSchema);
    expect(a.message).toMatch(/no audience named 'RFM: Champs'/);
    expect(a.allowed).toContain('RFM: Champions');
    const resyncNoAud = await client.call('POST', '/api/v1/destinations/local/resync', {
      ...ops,
      body: { audience: 'Nobody' },
    });
    expect(resyncNoAud.status).toBe(404);
    openapi.check(resyncNoAud, errorSchema);
    const pauseNowhere = await client.call('POST', '/api/v1/destinations/nowhere/pause', ops);
    expect(pauseNowhere.status).toBe(404);
    openapi.check(pauseNowhere, errorSchema);
  });

  it('puts an action on the admin queue as the CLI does, and reports it as a job', async () => {
    const r = await client.call('POST', '/api/v1/destinations/local/check', ops);
    expect(r.status).toBe(202);
    const action = openapi.check(r, actionSchema);
    expect(action.job.id).toMatch(/^admin:\d+$/);
    // Read the queue with BullMQ itself: the job is there, with the data a worker expects.
    const queue = new Queue('admin', {
      connection: redisTarget(inject('redisUrl')),
      prefix: `{${setup.prefix}}`,
    });
    try {
      const job = await queue.getJob(action.job.id.split(':')[1]!);
      expect(job?.name).toBe('check');
      expect(job?.data).toEqual({ action: 'check', destination: 'local' });
    } finally {
      await queue.close();
    }
    const status = openapi.check(await client.call('GET', action.job.url, viewer), jobSchema);
    expect(status).toMatchObject({ id: action.job.id, queue: 'admin', name: 'check', destination: 'local' });
    const missing = await client.call('GET', '/api/v1/jobs/admin:999999', viewer);
    expect(missing.status).toBe(404);
    openapi.check(missing, errorSchema);
  });

  it('with a worker running: a resync completes, and the runs it made are paged with cursors', async () => {
    const worker = run(['worker'], {
      cwd: setup.dir,
      env: { ...process.env, REDIS_URL: inject('redisUrl'), LOG_LEVEL: 'info', CI: 'true' },
    });
    await worker.waitFor(/"msg":"worker started"/);
    try {
      const follow = async (url: string) =>
        until(`${url} to end`, async () => {
          const job = openapi.check(await client.call('GET', url, viewer), jobSchema);
          if (job.state === 'failed') throw new Error(`${url} failed: ${job.failed_reason}`);
          return job.state === 'completed' ? job : undefined;
        });
      for (let k = 0; k < 2; k++) {
        const r = await client.call('POST', '/api/v1/destinations/local/resync', {
          ...ops,
          body: { audience: 'RFM: Champions', ...(k === 1 ? { full: true } : {}) },
        });
        expect(r.status).toBe(202);
        const admin = await follow(openapi.check(r, actionSchema).job.url);
        expect(admin.result?.sync_job?.id).toMatch(/^sync:/);
        const sync = await follow(admin.result!.sync_job!.url);
        expect(sync.result).toMatchObject({ audiences: 1, full: k === 1 });
      }
      // The file destination holds the audience now.
      expect(readdirSync(path.join(setup.dir, 'out')).some((f) => f.endsWith('.members'))).toBe(true);

      const base = '/api/v1/destinations/local/audiences/RFM%3A%20Champions/runs';
      const first = openapi.check(await client.call('GET', `${base}?limit=1`, viewer), runsSchema);
      expect(first.runs).toHaveLength(1);
      expect(first.runs[0]).toMatchObject({ outcome: 'completed', full: true, reason: 'resync' });
      expect(first.next_cursor).not.toBeNull();
      const second = openapi.check(
        await client.call('GET', `${base}?limit=1&cursor=${first.next_cursor}`, viewer),
        runsSchema,
      );
      expect(second.runs).toHaveLength(1);
      expect(second.runs[0]).toMatchObject({ outcome: 'completed', full: false });
      expect(second.runs[0]!.run).not.toBe(first.runs[0]!.run);
      // The first run added the segment's members; the full one re-sent them (nothing new to add).
      expect(second.runs[0]!.added).toBeGreaterThan(0);
      expect(second.runs[0]!.members).toBe(second.runs[0]!.added);
      expect(second.next_cursor).toBeNull();

      // Its health: what the last run left, read through health's own schema.
      const health = openapi.check(
        await client.call('GET', '/api/v1/destinations/local/audiences/RFM%3A%20Champions', viewer),
        audienceHealthSchema,
      );
      expect(health).toMatchObject({ destination: 'local', audience: 'RFM: Champions', paused: false });
      expect(health.expected).toBe(first.runs[0]!.members);
      expect(health.lastRun).not.toBeNull();
      const stats = openapi.check(
        await client.call('POST', '/api/v1/destinations/local/stats', ops),
        actionSchema,
      );
      // Only the audience synced so far exists on the platform to be read.
      expect((await follow(stats.job.url)).result?.audiences).toBe(1);
      const noHealth = await client.call('GET', '/api/v1/destinations/local/audiences/Nobody', viewer);
      expect(noHealth.status).toBe(404);
      expect(openapi.check(noHealth, errorSchema).allowed).toContain('RFM: Champions');

      // Pause and resume through the worker, seen in the destinations list.
      const pause = openapi.check(
        await client.call('POST', '/api/v1/destinations/local/pause', ops),
        actionSchema,
      );
      expect((await follow(pause.job.url)).result).toEqual({ paused: 'local' });
      const paused = openapi.check(
        await client.call('GET', '/api/v1/destinations', viewer),
        destinationsSchema,
      );
      expect(paused.destinations[0]).toMatchObject({ paused: true });
      const resume = openapi.check(
        await client.call('POST', '/api/v1/destinations/local/resume', ops),
        actionSchema,
      );
      expect((await follow(resume.job.url)).result).toEqual({ resumed: 'local' });
      const check = openapi.check(
        await client.call('POST', '/api/v1/destinations/local/check', ops),
        actionSchema,
      );
      expect((await follow(check.job.url)).result?.checks?.length).toBeGreaterThan(0);
    } finally {
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
  });

  it('stops taking a token removed from the config, without a restart', async () => {
    expect((await client.call('GET', '/api/v1/destinations', viewer)).status).toBe(200);
    setup.keepTokens(['operator']);
    await until('the server to read the new config', async () => {
      const r = await client.call('GET', '/api/v1/destinations', viewer);
      return r.status === 401 ? r : undefined;
    });
    expect((await client.call('GET', '/api/v1/destinations', ops)).status).toBe(200);
    setup.keepTokens(['viewer', 'operator']);
  });
});

describe('what answers carry', () => {
  it('no email, phone, customer name, password or token in any body or header of the run', () => {
    expect(client.seen.length).toBeGreaterThan(50);
    const secret = [...setup.pii(), ...Object.values(TOKENS), ...Object.values(USERS).map((u) => u.password)];
    expect(secret.length).toBeGreaterThan(300);
    const found: string[] = [];
    const look = (where: string, text: string) => {
      for (const s of secret) if (text.includes(s)) found.push(`${where}: '${s.slice(0, 4)}…'`);
      for (const id of sessionIds) if (text.includes(id)) found.push(`${where}: a session id`);
      if (/[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/.test(text)) found.push(`${where}: an email`);
    };
    for (const s of client.seen as Seen[]) {
      look(`${s.method} ${s.path} body`, s.text);
      for (const [k, v] of s.headers) {
        // The Set-Cookie of a login carries its own session id: that is where it belongs.
        if (k === 'set-cookie' && s.path === '/api/v1/session' && s.method === 'POST') continue;
        look(`${s.method} ${s.path} header ${k}`, v);
      }
    }
    expect(found).toEqual([]);
  });
});
