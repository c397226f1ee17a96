import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { normalizeEmail } from '../../src/identify/normalize.js';
import { createLogger } from '../../src/log.js';
import { StateStore } from '../../src/record/store.js';
import type { AudienceResult } from '../../src/sync/run.js';
import { exitCodeOf } from '../../app/cli/sync.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { readCsv } from '../../test/helpers.js';
import { expectedRows, loseState, makeShop, syncOnce } from '../../test/sync/harness.js';
import { FakeMailchimp, md5, type RecordedRequest } from './fixtures/fake.js';
import { REASONS } from './client.js';
import { mailchimpConnector } from './index.js';

/**
 * The core and this connector against a fake Mailchimp audience at the wire: after every run each tag
 * holds exactly its segment's members (less the contacts Mailchimp refuses). Last, a batch counts only when
 * Mailchimp holds all of it (issue 14): the fake cuts bulk tag calls off mid-way.
 */

const KEY = '0123456789abcdef0123456789abcdef-us9';
const LIST = 'a1b2c3d4e5';
const registry = { mailchimp: mailchimpConnector };
/** Every log line of the runs, to check that no email or key gets there. */
const logged: string[] = [];
const log = createLogger({
  level: 'trace',
  json: true,
  stream: { write: (line: string) => void logged.push(line) },
});
const redis = new Redis(inject('redisUrl'));

beforeAll(() => {
  process.env.MAILCHIMP_API_KEY = KEY;
});
afterAll(() => redis.disconnect());
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

type Shop = Awaited<ReturnType<typeof makeShop>>;

/** Settings of the `mc` destination that differ between tests. */
interface Settings {
  missing?: 'skip' | 'upsert';
  threshold?: number;
  batchSize?: number;
  connections?: number;
}

/** The shop's config with a `mc` Mailchimp destination beside the harness's `local` one. */
function configure(
  shop: Shop,
  analysisDate: string,
  { missing = 'upsert', threshold = 100_000, batchSize, connections = 8 }: Settings = {},
): void {
  shop.write(analysisDate);
  const mc =
    `  mc: { type: mailchimp, api_key: "\${MAILCHIMP_API_KEY}", list_id: ${LIST}, missing_members: ${missing}, ` +
    `batch_operations_threshold: ${threshold}, batch_poll_seconds: 0.01, max_connections: ${connections}` +
    `${batchSize ? `, batch_size: ${batchSize}` : ''} }\n`;
  writeFileSync(
    shop.config,
    readFileSync(shop.config, 'utf8').replace('destinations:\n', `destinations:\n${mc}`),
  );
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** Normalised emails of the shop's customers, by customer id. */
function emailsOf(shop: Shop): Map<string, string> {
  const rows = readCsv(readFileSync(path.join(shop.dir, 'shop', 'customers.csv'), 'utf8'));
  const out = new Map<string, string>();
  for (const r of rows) {
    const email = r.email ? normalizeEmail(r.email) : undefined;
    if (email && r.customer_id) out.set(r.customer_id, email);
  }
  return out;
}

/** Per audience, the emails the tag must hold: its members that have a plaintext email, less refused ones. */
async function expected(shop: Shop, refused: ReadonlySet<string>): Promise<Map<string, Set<string>>> {
  const byHash = new Map([...emailsOf(shop).values()].map((e) => [sha256(e), e]));
  const out = new Map<string, Set<string>>();
  for (const [name, lines] of await expectedRows(shop.config)) {
    const emails = new Set<string>();
    for (const line of lines.values()) {
      const email = byHash.get(/email=([0-9a-f]{64})/.exec(line)?.[1] ?? '');
      if (email && !refused.has(email)) emails.add(email);
    }
    out.set(name, emails);
  }
  return out;
}

/**
 * A shop syncing to `mc` on a fake Mailchimp audience of its own; `sync` runs once as the worker does, `run`
 * runs once and must succeed, and gives the results and the requests it sent.
 */
async function mailchimpShop(settings: Settings = {}) {
  const shop = await makeShop({ customers: 300, sync: 'max_removal_share: 1' });
  configure(shop, '2026-01-01', settings);
  nock.disableNetConnect();
  nock.enableNetConnect(/127\.0\.0\.1|localhost/);
  const fake = new FakeMailchimp(KEY, LIST).install();
  const store = new StateStore(redis, shop.prefix);
  const sync = () =>
    syncOnce(shop.config, registry, {
      destination: 'mc',
      store,
      log,
      retry: { attempts: 3, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 1000 },
    });
  const run = async () => {
    const from = fake.requests.length;
    const results = await sync();
    expect(results.filter((r) => r.error)).toEqual([]);
    return { results, requests: fake.requests.slice(from) };
  };
  return { shop, fake, sync, run };
}

const bodies = (requests: RecordedRequest[], field: 'members_to_add' | 'members_to_remove', tagId: string) =>
  requests
    .filter((r) => r.method === 'POST' && r.path.endsWith(`/segments/${tagId}`))
    .flatMap((r) => (r.body as Record<string, string[] | undefined>)[field] ?? []);

describe('sync to Mailchimp tags', () => {
  it('keeps each tag exactly on its segment through moves, an opt-out, a vanished customer and /batches', async () => {
    const { shop, fake, run } = await mailchimpShop();

    // The audience holds most customers already; one address was deleted for good (GDPR) and is refused.
    const first = await expected(shop, new Set());
    const champions = [...(first.get('RFM: Champions') ?? [])];
    const forgotten = champions[0]!;
    fake.forgotten.add(forgotten);
    const emails = emailsOf(shop);
    [...new Set(emails.values())].forEach((e, i) => {
      if (i % 4 !== 0 && e !== forgotten) fake.addContact(e, i % 7 === 0 ? 'unsubscribed' : 'subscribed');
    });
    const refused = new Set([forgotten]);

    const tagId = (name: string) => [...fake.segments].find(([, s]) => s.name === name)![0];
    const assertExact = async () => {
      const want = await expected(shop, refused);
      for (const [name, members] of want) expect(fake.tagged(name), name).toEqual(members);
      expect(new Set([...fake.segments.values()].map((s) => s.name))).toEqual(new Set(want.keys()));
      return want;
    };

    // 1. First run: every tag created and filled; missing contacts created as transactional.
    const r1 = await run();
    const before = await assertExact();
    expect(
      r1.results.reduce((a, r) => a + (r.skipped['mailchimp: forgotten (permanently deleted)'] ?? 0), 0),
    ).toBeGreaterThan(0);
    expect(
      r1.requests.filter((r) => r.method === 'PUT').every((r) => !('status' in (r.body as object))),
    ).toBe(true);
    expect(r1.requests.some((r) => r.path.startsWith('/3.0/batches'))).toBe(false);

    // 2. Half a year later: customers move between segments; one opts out; one vanishes from the source.
    const ids = [...emails.keys()];
    const tagsOf = (email: string, of: Map<string, Set<string>>) =>
      [...of].filter(([, members]) => members.has(email)).map(([name]) => name);
    const unique = (id: string) => [...emails.values()].filter((e) => e === emails.get(id)).length === 1;
    const [optOut, vanished] = ids.filter((id) => unique(id) && tagsOf(emails.get(id)!, before).length > 0);
    configure(shop, '2026-07-01');
    shop.editCustomers((cells, header) => {
      if (cells[0] === optOut) cells[header.indexOf('opted_out')] = 'true';
    });
    const ordersFile = path.join(shop.dir, 'shop', 'orders.csv');
    const orders = readFileSync(ordersFile, 'utf8').split('\n');
    writeFileSync(ordersFile, orders.filter((l) => !l.startsWith(`${vanished},`)).join('\n'));

    // Mailchimp sheds load once and stumbles once during this run: both are waited out and retried.
    fake.failNext = [
      [429, { title: 'Too Many Requests', status: 429, detail: 'slow down' }, { 'Retry-After': '0' }],
      [503, { title: 'Service Unavailable', status: 503, detail: 'try again' }],
    ];
    const r2 = await run();
    const after = await assertExact();
    // The opted-out customer is untagged by email through the segment endpoint.
    const optOutEmail = emails.get(optOut!)!;
    for (const name of tagsOf(optOutEmail, before))
      expect(bodies(r2.requests, 'members_to_remove', tagId(name))).toContain(optOutEmail);
    // The vanished one by subscriber hash, and its email is sent nowhere.
    const vanishedEmail = emails.get(vanished!)!;
    const untags = r2.requests.filter(
      (r) => r.path === `/3.0/lists/${LIST}/members/${md5(vanishedEmail)}/tags`,
    );
    expect(untags.map((r) => r.body)).toEqual(
      tagsOf(vanishedEmail, before).map((name) => ({
        tags: [{ name, status: 'inactive' }],
        is_syncing: true,
      })),
    );
    expect(JSON.stringify(r2.requests)).not.toContain(vanishedEmail);
    // A customer who moved lost the old segment's tag and gained the new one in this run.
    const segments = new Set(mailchimpSegments(before, after));
    const moved = [...emails.values()].find((e) => {
      const was = tagsOf(e, before).filter((n) => segments.has(n));
      const is = tagsOf(e, after).filter((n) => segments.has(n));
      return was.length === 1 && is.length === 1 && was[0] !== is[0];
    });
    expect(moved).toBeDefined();
    const [from] = tagsOf(moved!, before).filter((n) => segments.has(n));
    const [to] = tagsOf(moved!, after).filter((n) => segments.has(n));
    expect(bodies(r2.requests, 'members_to_remove', tagId(from!))).toContain(moved);
    expect(bodies(r2.requests, 'members_to_add', tagId(to!))).toContain(moved);

    // 3. A third of the customers change email, with a low threshold: the large changes go through /batches.
    configure(shop, '2026-07-01', { threshold: 5 });
    shop.editCustomers((cells, header, k) => {
      if (k % 3 === 0) cells[header.indexOf('email')] = `moved-${k}@example.org`;
    });
    const r3 = await run();
    await assertExact();
    const jobs = r3.requests.filter((r) => r.method === 'POST' && r.path === '/3.0/batches');
    expect(jobs.length).toBeGreaterThan(0);
    const operations = jobs.flatMap(
      (r) => (r.body as { operations: { method: string; path: string }[] }).operations,
    );
    // Tagging by email, creating the new addresses, untagging the old ones by hash.
    const kind = (o: { method: string; path: string }) =>
      /\/segments\/\d+$/.test(o.path)
        ? 'tag by email'
        : o.method === 'PUT'
          ? 'upsert'
          : /\/tags$/.test(o.path)
            ? 'untag by hash'
            : o.path;
    expect(new Set(operations.map(kind))).toEqual(new Set(['tag by email', 'upsert', 'untag by hash']));
    expect(r3.results.reduce((a, r) => a + r.added, 0)).toBeGreaterThan(50);

    // 4. Nothing changed: nothing is sent.
    const r4 = await run();
    expect(r4.requests.filter((r) => r.method !== 'GET')).toEqual([]);
    expect(r4.results.reduce((a, r) => a + r.added + r.removed, 0)).toBe(0);

    // Logs hold no email and no key; the state keeps subscriber hashes, never an email.
    const logs = logged.join('');
    expect(logs).toMatch(/rate limited: waiting 0 s/);
    expect(logs).not.toContain(KEY.slice(0, 32));
    expect([...emails.values(), ...emailsOf(shop).values()].filter((e) => logs.includes(e))).toEqual([]);
    const dump = await stateDump(shop.prefix);
    for (const email of [optOutEmail, vanishedEmail, forgotten, ...champions.slice(0, 20)])
      expect(dump.includes(Buffer.from(email))).toBe(false);
  });
});

describe('sync to Mailchimp tags after the state is lost (issue 14, case 2)', () => {
  it('untags everyone not in the segment and tags the segment: each tag is exactly its segment', async () => {
    const { shop, fake, run } = await mailchimpShop();
    // Pages smaller than Mailchimp's 1,000, so the tag's members come in several.
    fake.segmentMembersPageLimit = 25;
    const emails = emailsOf(shop);
    // Most customers are contacts already, some unsubscribed; the others are created as transactional.
    [...new Set(emails.values())].forEach((e, i) => {
      if (i % 4 !== 0) fake.addContact(e, i % 7 === 0 ? 'unsubscribed' : 'subscribed');
    });
    const assertExact = async () => {
      const want = await expected(shop, new Set());
      for (const [name, members] of want) expect(fake.tagged(name), name).toEqual(members);
      return want;
    };
    await run();
    const before = await assertExact();

    // Redis loses everything; then a third of the customers opt out, and someone tags a contact by hand.
    await loseState(redis, shop.prefix);
    shop.editCustomers((cells, header, r) => {
      if (r % 3 === 0) cells[header.indexOf('opted_out')] = 'true';
    });
    const champions = [...fake.segments].find(([, s]) => s.name === 'RFM: Champions')![0];
    fake.addContact('stranger@example.net', 'cleaned').tags.add(champions);

    const { results, requests } = await run();
    for (const r of results) expect(r.replaced, r.audience).toMatch(/no record of it/);
    const after = await assertExact();
    const untagged = [...before].flatMap(([name, members]) =>
      [...members].filter((e) => !after.get(name)!.has(e)),
    );
    expect(untagged.length).toBeGreaterThan(20);
    expect(fake.tagged('RFM: Champions').has('stranger@example.net')).toBe(false);
    // The tags' members were listed in pages, with every status, and nothing was tagged again by hand.
    const listed = requests.filter((r) => r.method === 'GET' && /\/segments\/\d+\/members$/.test(r.path));
    expect(listed.length).toBeGreaterThan(13);
    expect(
      listed.every(
        (r) =>
          r.query.include_cleaned === 'true' &&
          r.query.include_transactional === 'true' &&
          r.query.include_unsubscribed === 'true',
      ),
    ).toBe(true);
    expect(listed.some((r) => Number(r.query.offset) > 0)).toBe(true);

    // The state is whole again: the next run sends nothing.
    const again = await run();
    expect(again.requests.filter((r) => r.method !== 'GET')).toEqual([]);
    expect(again.results.filter((r) => r.replaced || r.added || r.removed)).toEqual([]);

    // No email read from Mailchimp reaches the logs or the state.
    const logs = logged.join('');
    expect([...emails.values(), 'stranger@example.net'].filter((e) => logs.includes(e))).toEqual([]);
    const dump = await stateDump(shop.prefix);
    for (const email of [...untagged.slice(0, 20), 'stranger@example.net'])
      expect(dump.includes(Buffer.from(email))).toBe(false);
  });
});

describe('Mailchimp: a bulk tag call cut off in the middle of a batch (issue 14)', () => {
  it('leaves that batch uncounted, and the next run puts every tag exactly on its segment', async () => {
    // One add or remove call of the core is several bulk tag calls here; the fake applies half of one of
    // them, then answers 500 or drops the connection, on every attempt. One connection keeps the order.
    const { shop, fake, sync: run } = await mailchimpShop({ batchSize: 10, connections: 1 });
    const onMailchimp = () => new Map([...fake.segments.values()].map((s) => [s.name, fake.tagged(s.name)]));
    const tagOf = (r: RecordedRequest) => fake.segments.get(r.path.split('/').at(-1)!)?.name;
    /** Cuts off every bulk call carrying `field` to a tag (`tag`, or any) after its first one in this run. */
    const cutAfterFirst = (
      tag: string | undefined,
      field: 'members_to_add' | 'members_to_remove',
      answer: 500 | 'drop',
    ) => {
      const from = fake.requests.length;
      const carries = (r: RecordedRequest) =>
        r.method === 'POST' &&
        /\/segments\/\d+$/.test(r.path) &&
        ((r.body as Record<string, unknown[] | undefined>)[field]?.length ?? 0) > 0;
      fake.cutMidBatch = {
        answer,
        when: (r) =>
          carries(r) &&
          (tag === undefined || tagOf(r) === tag) &&
          fake.requests.slice(from).filter((x) => carries(x) && tagOf(x) === tagOf(r)).length > 1,
      };
    };
    const errors = (results: AudienceResult[]) => results.filter((r) => r.error).map((r) => r.audience);

    // Most customers are contacts already; the rest are created on the way.
    const want = await expected(shop, new Set());
    [...new Set([...want.values()].flatMap((e) => [...e]))].forEach((e, i) => {
      if (i % 4 !== 0) fake.addContact(e);
    });

    // First run: the second bulk call tagging 'Slipping away' is half applied, then answered 500.
    cutAfterFirst('Slipping away', 'members_to_add', 500);
    const first = await run();
    expect(errors(first)).toEqual(['Slipping away']);
    const slipping = first.find((r) => r.audience === 'Slipping away')!;
    expect(slipping.error).toMatch(/500/);
    // The core's batch (one add call, all of the tag's members) is not counted, though part of it landed.
    expect(slipping.added).toBe(0);
    expect(slipping.failed).toBe(slipping.plannedAdds);
    expect(fake.cutOff.length).toBeGreaterThan(0);
    expect(fake.tagged('Slipping away').size).toBeGreaterThan(10);
    for (const r of first.filter((x) => !x.error))
      expect(r.added + r.rejected, r.audience).toBe(r.plannedAdds);

    fake.cutMidBatch = undefined;
    const second = await run();
    expect(errors(second)).toEqual([]);
    expect(second.find((r) => r.audience === 'Slipping away')!.added).toBe(slipping.plannedAdds);
    expect(onMailchimp()).toEqual(await expected(shop, new Set()));

    // A third of the customers opt out: untagging is cut off after each tag's first bulk call, connection dropped.
    shop.editCustomers((cells, header, row) => {
      if (row % 3 === 0) cells[header.indexOf('opted_out')] = 'true';
    });
    cutAfterFirst(undefined, 'members_to_remove', 'drop');
    const third = await run();
    const cut = third.filter((r) => r.error);
    expect(cut.length).toBeGreaterThan(0);
    expect(cut.map((r) => r.audience)).toEqual(
      third.filter((r) => r.plannedRemoves > 10).map((r) => r.audience),
    );
    for (const r of cut) expect(r.removed, r.audience).toBe(0);

    fake.cutMidBatch = undefined;
    const fourth = await run();
    expect(errors(fourth)).toEqual([]);
    expect(onMailchimp()).toEqual(await expected(shop, new Set()));
    const fifth = await run();
    expect(fifth.reduce((n, r) => n + r.added + r.removed, 0)).toBe(0);
  });
});

describe('Mailchimp skip mode: customers who are not contacts (issue 20, case 5)', () => {
  /** The warnings the CLI's exit code logs, as lines. */
  const exitCode = (results: AudienceResult[], config: Config) => {
    const lines: string[] = [];
    const warn = createLogger({ level: 'warn', json: true, stream: { write: (l: string) => lines.push(l) } });
    const code = exitCodeOf(results, config, warn);
    return { code, warnings: lines.map((l) => (JSON.parse(l) as { msg: string }).msg) };
  };

  it('counts them as skipped with their reason, not as rejected, and the run exits 0', async () => {
    const { shop, fake, run } = await mailchimpShop({ missing: 'skip' });
    const want = await expected(shop, new Set());
    const everyone = [...new Set([...want.values()].flatMap((e) => [...e]))];
    // One in four is not a contact of the Mailchimp audience: far more than the 1 % rejected share allows.
    const strangers = new Set(everyone.filter((_, i) => i % 4 === 0));
    for (const e of everyone) if (!strangers.has(e)) fake.addContact(e);

    const { results } = await run();
    for (const r of results) {
      const missing = [...want.get(r.audience)!].filter((e) => strangers.has(e)).length;
      expect(r.rejected, r.audience).toBe(0);
      expect(r.skipped['not in the Mailchimp audience'] ?? 0, r.audience).toBe(missing);
      expect(r.added, r.audience).toBe(want.get(r.audience)!.size - missing);
    }
    expect(results.some((r) => (r.skipped['not in the Mailchimp audience'] ?? 0) > 0)).toBe(true);
    for (const [name, members] of want)
      expect(fake.tagged(name), name).toEqual(new Set([...members].filter((e) => !strangers.has(e))));
    // The shop's own customers without an email reach 16 % of a small audience: a limit above that, below
    // what the non-contacts would add to it.
    const loaded = loadConfig(shop.config).config;
    const config = { ...loaded, sync: { ...loaded.sync, max_skipped_share: 0.2 } };
    expect(exitCode(results, config)).toEqual({ code: 0, warnings: [] });
  });

  it('keeps exit 3 for real refusals, printing the share precisely enough to tell it from the threshold', async () => {
    const { shop, fake, sync } = await mailchimpShop({ missing: 'upsert' });
    const want = await expected(shop, new Set());
    const everyone = [...new Set([...want.values()].flatMap((e) => [...e]))];
    // Mailchimp refuses to create a few addresses it judges fake (its own answer).
    const invalid = new Set(everyone.filter((_, i) => i % 40 === 0));
    fake.refuse = (r) => {
      const email = (r.body as { email_address?: string } | undefined)?.email_address;
      if (r.method !== 'PUT' || !email || !invalid.has(email)) return undefined;
      return [
        400,
        {
          title: 'Invalid Resource',
          status: 400,
          detail: `${email} looks fake or invalid, please enter a real email address.`,
          instance: 'fake',
        },
      ];
    };
    const results = await sync();
    expect(results.filter((r) => r.error)).toEqual([]);
    const refused = results.filter((r) => r.rejected > 0);
    expect(refused.length).toBeGreaterThan(0);
    const worst = refused.reduce((a, r) =>
      r.rejected / (r.added + r.rejected) > a.rejected / (a.added + a.rejected) ? r : a,
    );
    const share = worst.rejected / (worst.added + worst.rejected);
    // A threshold just under the share: to one decimal both would print alike.
    const threshold = share - 0.00004;
    const loaded = loadConfig(shop.config).config;
    const config = { ...loaded, sync: { ...loaded.sync, max_rejected_share: threshold } };
    const { code, warnings } = exitCode(results, config);
    expect(code).toBe(3);
    const line = warnings.find((w) => w.startsWith(`mc / ${worst.audience}:`))!;
    expect(line).toMatch(/looks fake or invalid/);
    const [printedShare, printedMax] = [...line.matchAll(/(\d+(?:\.\d+)?) %/g)].map((m) => Number(m[1]));
    expect(printedShare).toBeGreaterThan(printedMax!);
    expect(Math.abs(printedShare! - share * 100)).toBeLessThan(0.01);
  });
});

/** Per-segment audiences (a customer is in exactly one segment), as opposed to the listed ones. */
function mailchimpSegments(...of: Map<string, Set<string>>[]): string[] {
  const listed = new Set(['Champions who love Acme', 'Slipping away']);
  return [...new Set(of.flatMap((m) => [...m.keys()]))].filter((n) => !listed.has(n));
}

/** Every byte the state holds under a prefix. */
async function stateDump(prefix: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const key of await redis.keys(`${prefix}:*`)) {
    const type = await redis.type(key);
    parts.push(Buffer.from(key));
    if (type === 'string') parts.push((await redis.getBuffer(key)) ?? Buffer.alloc(0));
    else if (type === 'hash') parts.push(...Object.values(await redis.hgetallBuffer(key)));
    else if (type === 'list') parts.push(...(await redis.lrangeBuffer(key, 0, -1)));
    else if (type === 'set') parts.push(...(await redis.smembersBuffer(key)));
    else if (type === 'zset') parts.push(...(await redis.zrangeBuffer(key, 0, -1)));
  }
  return Buffer.concat(parts);
}

describe('Mailchimp compliance states (issue 17)', () => {
  it('counts contacts Mailchimp will not (re)subscribe per reason, as skipped, and does not send them again', async () => {
    const { shop, fake, run } = await mailchimpShop({ missing: 'upsert' });
    const want = await expected(shop, new Set());
    const everyone = [...new Set([...want.values()].flatMap((e) => [...e]))];
    const kept = new Map<string, string>();
    everyone.forEach((e, i) => {
      const reason = [undefined, 'forgotten', 'compliance', 'archived'][i % 9];
      if (reason === 'forgotten') fake.forgotten.add(e);
      if (reason === 'compliance') fake.compliance.add(e);
      if (reason === 'archived') fake.addContact(e, 'archived');
      if (i % 9 === 4) fake.addContact(e, 'unsubscribed');
      if (reason) kept.set(e, REASONS[reason as keyof typeof REASONS]);
    });

    const first = await run();
    for (const r of first.results) {
      const counts: Record<string, number> = {};
      for (const e of want.get(r.audience)!) {
        const reason = kept.get(e);
        if (reason) counts[reason] = (counts[reason] ?? 0) + 1;
      }
      const skipped = Object.fromEntries(
        Object.entries(r.skipped).filter(([reason]) => reason.startsWith('mailchimp:')),
      );
      expect(skipped, r.audience).toEqual(counts);
      expect(r.rejected, r.audience).toBe(0);
    }
    for (const reason of new Set(kept.values()))
      expect(
        first.results.reduce((a, r) => a + (r.skipped[reason] ?? 0), 0),
        reason,
      ).toBeGreaterThan(0);
    for (const [name, members] of want)
      expect(fake.tagged(name), name).toEqual(new Set([...members].filter((e) => !kept.has(e))));
    // Nobody's subscription changed: the unsubscribed hold their tags and stay unsubscribed.
    for (const e of everyone.filter((_, i) => i % 9 === 4))
      expect(fake.contacts.get(md5(e))!.status).toBe('unsubscribed');
    expect(
      first.requests.filter((r) => r.method === 'PUT').every((r) => !('status' in (r.body as object))),
    ).toBe(true);

    // The next run leaves them be: their state in Mailchimp has not changed, and neither have they.
    const second = await run();
    const sent = JSON.stringify(second.requests);
    for (const e of kept.keys()) {
      expect(sent).not.toContain(e);
      expect(sent).not.toContain(md5(e));
    }
    expect(second.results.every((r) => r.added === 0 && r.rejected === 0)).toBe(true);
  });
});
