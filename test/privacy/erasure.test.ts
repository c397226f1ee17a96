import { createHash } from 'node:crypto';
import { appendFileSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectors } from '../../connectors/index.js';
import { FakeGraph } from '../../connectors/meta/fixtures/fake-graph.js';
import { startWorker, type RunningWorker } from '../../app/worker.js';
import { createLogger } from '../../src/log.js';
import { StateStore } from '../../src/record/store.js';
import type { AudienceResult } from '../../src/sync/run.js';
import { cli, makeShop, syncOnce } from '../sync/harness.js';

/**
 * Erasure end to end: a worker in this process (so nock fakes Meta at the wire), two `file` destinations
 * (one final, one that processes later), the CLI for the operator's commands, real Redis. Expected digests
 * are computed here with node:crypto from the normalised values, not with our identity code.
 */

const TOKEN = 'EAAB-erasure-token-5550123456';
const sha = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
const redis = new Redis(inject('redisUrl'));
const logLines: string[] = [];
const log = createLogger({
  level: 'debug',
  json: true,
  stream: new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      done();
    },
  }),
});
const registry = connectors;
const quickRetry = { attempts: 2, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 1000 };
const workers: RunningWorker[] = [];

beforeAll(() => {
  process.env.META_ERASURE_TOKEN = TOKEN;
  process.env.REDIS_URL = inject('redisUrl');
  nock.disableNetConnect();
  nock.enableNetConnect(/127\.0\.0\.1|localhost/);
});
// Each test has its own fake Meta and worker.
afterEach(async () => {
  for (const w of workers.splice(0)) await w.close();
  nock.cleanAll();
});
afterAll(async () => {
  nock.cleanAll();
  nock.enableNetConnect();
  redis.disconnect();
});

interface Receipt {
  destination: string;
  status: string;
  requested_at: string;
  sent_at?: string;
  removed_at?: string;
  failed_at?: string;
  reason?: string;
  attempts: number;
  audiences: number;
  members: number;
}
interface Listed {
  erasures: { id: string; done: boolean; receipts: Receipt[] }[];
}

/** The receipts of one erasure, as `audience-sync erasures --json` prints them. */
function receipts(config: string, dir: string, id: string) {
  const list = JSON.parse(cli(['--config', config, 'erasures', '--json'], dir).stdout) as Listed;
  return list.erasures.find((e) => e.id === id);
}

/**
 * Polls until `check` returns a value. The deadline only catches a hang (the test's own timeout is 10
 * minutes): on a busy machine the worker's retries take minutes, and that is slower, not wrong.
 */
async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  seen: () => unknown = () => undefined,
  ms = 540_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(seen())}`);
    // A check may start a CLI process: often enough to follow the worker, not so often as to slow it.
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function setup() {
  const shop = await makeShop({
    customers: 400,
    sync: 'max_removal_share: 1, poll_seconds: 1',
    destinations: `  local: { type: file, path: out }
  later: { type: file, path: out-later, process_after_seconds: 1 }
  meta:
    type: meta
    ad_account_id: act_1234567890
    access_token: \${META_ERASURE_TOKEN}
    schema: [EMAIL, PHONE, FN, LN, ZIP, COUNTRY]
    default_country: US
    batch_size: 40
    throttle_wait_seconds: 0.05`,
  });
  shop.write('2026-01-01', 'privacy: { erasure_retry_seconds: 1 }');
  const fake = new FakeGraph('https://graph.facebook.com', 'v25.0', '1234567890', TOKEN);
  const store = new StateStore(redis, shop.prefix);
  const syncAll = async (full = false) => {
    const all: AudienceResult[] = [];
    for (const destination of ['local', 'later', 'meta'])
      all.push(
        ...(await syncOnce(shop.config, registry, { store, log, destination, full, retry: quickRetry })),
      );
    expect(all.filter((r) => r.error)).toEqual([]);
    return all;
  };
  /** Syncs until the destination that processes later has taken everything. */
  const syncSettled = async (full = false) => {
    let results = await syncAll(full);
    for (let n = 0; results.some((r) => r.inFlight > 0 || r.waiting > 0); n++) {
      expect(n).toBeLessThan(20);
      await new Promise((r) => setTimeout(r, 1100));
      results = await syncAll();
    }
    return results;
  };
  const rows = () => {
    const [header, ...lines] = readFileSync(path.join(shop.dir, 'shop', 'customers.csv'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(','));
    return { header: header!, lines };
  };
  /** A customer the source did not have: a profile with one identifier, and three recent orders. */
  const addCustomer = (id: string, field: 'email' | 'phone', value: string) => {
    const { header } = rows();
    const cells = header.map((h) =>
      h === 'customer_id'
        ? id
        : h === field
          ? value
          : h === 'opted_out'
            ? 'false'
            : h === 'country'
              ? 'US'
              : '',
    );
    appendFileSync(path.join(shop.dir, 'shop', 'customers.csv'), `${cells.join(',')}\n`);
    appendFileSync(
      path.join(shop.dir, 'shop', 'orders.csv'),
      `${id},2025-12-20,950.00\n${id},2025-12-28,990.00\n${id},2025-12-30,999.00\n`,
    );
  };
  /** Every identifier line in a file destination's member files. */
  const fileMembers = (folder: string) =>
    readdirSync(path.join(shop.dir, folder))
      .filter((f) => f.endsWith('.members'))
      .flatMap((f) =>
        readFileSync(path.join(shop.dir, folder, f), 'utf8')
          .split('\n')
          .slice(1),
      )
      .filter(Boolean);
  const metaIdentifiers = () =>
    [...fake.audiences.values()].filter((a) => !a.deleted).flatMap((a) => [...a.identifiers]);
  /** Where the person's digests are: per destination, how many audience entries hold one. */
  const holding = (emailHash: string, phoneE164Hash: string, phoneDigitsHash: string) => ({
    local: fileMembers('out').filter((l) => l.includes(emailHash) || l.includes(phoneE164Hash)).length,
    later: fileMembers('out-later').filter((l) => l.includes(emailHash) || l.includes(phoneE164Hash)).length,
    meta: metaIdentifiers().filter((i) => i === `EMAIL=${emailHash}` || i === `PHONE=${phoneDigitsHash}`)
      .length,
  });
  return { shop, fake, store, syncAll, syncSettled, rows, holding, addCustomer };
}

/** A person's digests, worked out here: SHA-256 of the lower-cased email, of the E.164 phone, and of its digits (Meta). */
function digestsOf(person: { email: string; phone: string }) {
  return {
    emailHash: sha(person.email.toLowerCase()),
    e164Hash: sha(person.phone),
    digitsHash: sha(person.phone.slice(1)),
  };
}

/** A customer with a plain email and an international phone who is in some audience (not opted out). */
function pickPerson(rows: { header: string[]; lines: string[][] }, skip: Set<string>) {
  const col = (n: string) => rows.header.indexOf(n);
  const line = rows.lines.find(
    (r) =>
      !skip.has(r[col('customer_id')]!) &&
      /^[a-z][a-z0-9.]*@example\.(org|com)$/.test(r[col('email')]!) &&
      /^\+1\d{10}$/.test(r[col('phone')]!) &&
      r[col('opted_out')] === 'false',
  )!;
  expect(line).toBeDefined();
  return { id: line[col('customer_id')]!, email: line[col('email')]!, phone: line[col('phone')]! };
}

/** Every value under the test's prefixes, as bytes (strings, hashes, lists, sets, sorted sets, streams). */
async function redisDump(prefix: string): Promise<Buffer> {
  const keys = await redis.keys(`*${prefix}*`);
  const parts: Buffer[] = [];
  for (const key of keys) {
    parts.push(Buffer.from(key));
    const type = await redis.type(key);
    if (type === 'string') parts.push((await redis.getBuffer(key))!);
    else if (type === 'hash') parts.push(...Object.values(await redis.hgetallBuffer(key)));
    else if (type === 'list') parts.push(...(await redis.lrangeBuffer(key, 0, -1)));
    else if (type === 'set') parts.push(...(await redis.smembersBuffer(key)));
    else if (type === 'zset') parts.push(...(await redis.zrangeBuffer(key, 0, -1)));
    else if (type === 'stream') parts.push(Buffer.from(JSON.stringify(await redis.xrange(key, '-', '+'))));
  }
  return Buffer.concat(parts);
}

describe('forget', () => {
  it('removes a person the source no longer has from every audience of every destination, and keeps them out', async () => {
    const { shop, fake, syncSettled, syncAll, rows, holding, addCustomer } = await setup();
    await syncSettled();
    const person = pickPerson(rows(), new Set());
    const { emailHash, e164Hash, digitsHash } = digestsOf(person);
    const before = holding(emailHash, e164Hash, digitsHash);
    expect(before.local).toBeGreaterThan(0);
    expect(before.later).toBeGreaterThan(0);
    expect(before.meta).toBeGreaterThan(0);

    // The person leaves the source: the removal works from what our state holds.
    for (const file of ['customers.csv', 'orders.csv']) {
      const p = path.join(shop.dir, 'shop', file);
      writeFileSync(
        p,
        readFileSync(p, 'utf8')
          .split('\n')
          .filter((l) => !l.startsWith(`${person.id},`))
          .join('\n'),
      );
    }

    workers.push(await startWorker({ configFile: shop.config, log, schedules: false }));
    // As an operator types it: other case and spaces.
    const forget = cli(
      ['--config', shop.config, 'forget', '--email', `  ${person.email.toUpperCase()} `, '--json'],
      shop.dir,
    );
    expect(forget.stderr).toBe('');
    expect(forget.code).toBe(0);
    const { erasure } = JSON.parse(forget.stdout) as { erasure: string };

    let last: unknown;
    const listed = await until(
      'every receipt removed',
      async () => {
        const mine = receipts(shop.config, shop.dir, erasure);
        last = mine;
        return mine?.done ? mine : undefined;
      },
      () => last,
    );
    expect(listed.receipts.map((r) => r.destination)).toEqual(['later', 'local', 'meta']);
    // The destination that processes later was sent the removal first, and settled on a later attempt.
    const later = listed.receipts.find((r) => r.destination === 'later') as {
      sent_at?: string;
      attempts: number;
    };
    expect(later.sent_at).toBeDefined();
    expect(later.attempts).toBeGreaterThanOrEqual(2);
    for (const r of listed.receipts)
      expect(Date.parse(r.removed_at!)).toBeGreaterThanOrEqual(Date.parse(r.requested_at));
    expect(holding(emailHash, e164Hash, digitsHash)).toEqual({ local: 0, later: 0, meta: 0 });
    expect(fake.requests.filter((r) => r.method === 'DELETE').length).toBeGreaterThan(0);

    // They come back in the source under a new customer id with the same email (written otherwise): a
    // full resync, everywhere, leaves them out and counts them as suppressed.
    addCustomer('C9999999', 'email', ` ${person.email.toUpperCase()}`);
    const full = await syncAll(true);
    await syncSettled();
    expect(full.reduce((a, r) => a + (r.skipped.suppressed ?? 0), 0)).toBeGreaterThanOrEqual(3);
    expect(holding(emailHash, e164Hash, digitsHash)).toEqual({ local: 0, later: 0, meta: 0 });

    // The suppression list shows an entry; `remove` needs a reason.
    const list = JSON.parse(
      cli(['--config', shop.config, 'suppressions', 'list', '--json'], shop.dir).stdout,
    ) as {
      suppressions: { id: string; hashes: string[] }[];
    };
    expect(list.suppressions.map((s) => s.id)).toEqual([erasure]);
    expect(list.suppressions[0]!.hashes).toContain(emailHash);
    expect(cli(['--config', shop.config, 'suppressions', 'remove', erasure], shop.dir).code).toBe(2);

    // No plaintext anywhere: Redis values, logs, receipts, the CLI's answers.
    const dump = (await redisDump(shop.prefix)).toString('latin1');
    const texts = [dump, logLines.join(''), JSON.stringify(listed), forget.stdout, forget.stderr];
    for (const plain of [person.email, person.email.toUpperCase(), person.phone, person.phone.slice(1)])
      for (const text of texts) expect(text.toLowerCase()).not.toContain(plain.toLowerCase());
  });
});

describe('receipts', () => {
  it('a platform that fails leaves its receipt failed (reason scrubbed), retried until removed; a customer id keeps their phone out too', async () => {
    const { shop, fake, syncSettled, syncAll, rows, holding, addCustomer } = await setup();
    await syncSettled();
    const person = pickPerson(rows(), new Set());
    const { emailHash, e164Hash, digitsHash } = digestsOf(person);
    expect(holding(emailHash, e164Hash, digitsHash).meta).toBeGreaterThan(0);

    // Meta refuses removals, echoing what it was sent (as platforms do).
    fake.refuse = (r) =>
      r.method === 'DELETE'
        ? [400, FakeGraph.error(2650, `Could not update audience: ${person.email} ${person.phone} rejected`)]
        : undefined;
    workers.push(await startWorker({ configFile: shop.config, log, schedules: false }));
    const forget = cli(['--config', shop.config, 'forget', '--customer-id', person.id], shop.dir);
    expect(forget.code).toBe(0);
    const erasure = forget.stdout.trim();

    let last: unknown;
    const failing = await until(
      'the Meta receipt failed, the others removed',
      async () => {
        const mine = receipts(shop.config, shop.dir, erasure);
        last = mine;
        const byName = new Map(mine?.receipts.map((r) => [r.destination, r]));
        return byName.get('meta')?.status === 'failed' &&
          byName.get('local')?.status === 'removed' &&
          byName.get('later')?.status === 'removed'
          ? mine
          : undefined;
      },
      () => last,
    );
    const failed = failing.receipts.find((r) => r.destination === 'meta')!;
    expect(failed.reason).toContain('Meta could not update the audience');
    expect(failed.failed_at).toBeDefined();
    expect(failing.done).toBe(false);
    expect(holding(emailHash, e164Hash, digitsHash)).toMatchObject({ local: 0, later: 0 });

    // The platform recovers: a later attempt removes the person, and the receipt says so.
    fake.refuse = undefined;
    const done = await until(
      'the Meta receipt removed',
      async () => {
        const mine = receipts(shop.config, shop.dir, erasure);
        last = mine;
        return mine?.done ? mine : undefined;
      },
      () => last,
    );
    const meta = done.receipts.find((r) => r.destination === 'meta')!;
    expect(meta.status).toBe('removed');
    expect(meta.attempts).toBeGreaterThanOrEqual(2);
    expect(meta.audiences).toBeGreaterThan(0);
    expect(meta.reason).toBeUndefined();
    expect(holding(emailHash, e164Hash, digitsHash)).toEqual({ local: 0, later: 0, meta: 0 });

    // Forgotten by customer id, the phone our state held for them is suppressed too: someone new with
    // that phone (and no email) stays out of a full resync, as the same customer id does.
    addCustomer('C8888888', 'phone', person.phone);
    await syncAll(true);
    await syncSettled();
    expect(holding(emailHash, e164Hash, digitsHash)).toEqual({ local: 0, later: 0, meta: 0 });

    // The operator's action is in the audit log, with who and when; no personal data in it.
    const audit = JSON.parse(cli(['--config', shop.config, 'audit', '--json'], shop.dir).stdout) as {
      audit: { action: string; via: string; user: string; detail: Record<string, string> }[];
    };
    expect(audit.audit).toContainEqual(
      expect.objectContaining({
        action: 'forget',
        via: 'cli',
        detail: expect.objectContaining({ erasure, given: 'customer_id' }),
      }),
    );

    const dump = (await redisDump(shop.prefix)).toString('latin1');
    const texts = [
      dump,
      logLines.join(''),
      JSON.stringify(done),
      JSON.stringify(failing),
      JSON.stringify(audit),
    ];
    for (const plain of [person.email, person.phone, person.phone.slice(1)])
      for (const text of texts) expect(text.toLowerCase()).not.toContain(plain.toLowerCase());
  });
});
