import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ConnectorDefinition } from '../../src/connector.js';
import { normalizeEmail } from '../../src/identity/normalize.js';
import { createLogger } from '../../src/log.js';
import { StateStore } from '../../src/state/store.js';
import type { AudienceResult } from '../../src/sync/run.js';
import { readCsv } from '../../test/helpers.js';
import { expectedRows, makeShop, syncOnce } from '../../test/sync/harness.js';
import { FakeMailchimp, type RecordedRequest } from './fixtures/fake.js';
import { mailchimpConnector } from './index.js';

/**
 * A batch counts only when Mailchimp holds all of it (issue 14): one add or remove call of the core is
 * several bulk tag calls here, and the fake applies half of one of them, then answers 500 or drops the
 * connection, on every attempt. The run must not count that batch (the audience reports failed), and the
 * next run must leave every tag exactly on its segment.
 */

const KEY = 'fedcba9876543210fedcba9876543210-us9';
const LIST = 'f0e1d2c3b4';
const registry = { mailchimp: mailchimpConnector as unknown as ConnectorDefinition<never> };
const log = createLogger({ level: 'silent', json: true });
const redis = new Redis(inject('redisUrl'));

beforeAll(() => {
  process.env.MAILCHIMP_MIDBATCH_API_KEY = KEY;
});
afterAll(() => {
  delete process.env.MAILCHIMP_MIDBATCH_API_KEY;
  redis.disconnect();
});
afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

describe('Mailchimp: a bulk tag call cut off in the middle of a batch', () => {
  it('leaves that batch uncounted, and the next run puts every tag exactly on its segment', async () => {
    const shop = await makeShop({
      customers: 300,
      // A third of the customers opt out below: more removals than the brake lets through unasked.
      sync: 'max_removal_share: 1',
      // `local` only gives the harness's oracle its identifier rules; the runs sync `mc`.
      destinations: `  local: { type: file, path: out }\n  mc: { type: mailchimp, api_key: "\${MAILCHIMP_MIDBATCH_API_KEY}", list_id: ${LIST}, missing_members: upsert, batch_size: 10, max_connections: 1 }`,
    });
    nock.disableNetConnect();
    const fake = new FakeMailchimp(KEY, LIST).install();
    const store = new StateStore(redis, shop.prefix);
    const run = () =>
      syncOnce(shop.config, registry, {
        destination: 'mc',
        store,
        log,
        retry: { attempts: 3, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 1000 },
      });

    /** Per tag, the emails it must hold: its segment's members with an email, from the source. */
    const expected = async () => {
      const rows = readCsv(readFileSync(path.join(shop.dir, 'shop', 'customers.csv'), 'utf8'));
      const byHash = new Map<string, string>();
      for (const r of rows) {
        const email = r.email ? normalizeEmail(r.email) : undefined;
        if (email) byHash.set(sha256(email), email);
      }
      const out = new Map<string, Set<string>>();
      for (const [name, lines] of await expectedRows(shop.config)) {
        const emails = new Set<string>();
        for (const line of lines.values()) {
          const email = byHash.get(/email=([0-9a-f]{64})/.exec(line)?.[1] ?? '');
          if (email) emails.add(email);
        }
        out.set(name, emails);
      }
      return out;
    };
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
    const want = await expected();
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
    expect(onMailchimp()).toEqual(await expected());

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
    expect(onMailchimp()).toEqual(await expected());
    const fifth = await run();
    expect(fifth.reduce((n, r) => n + r.added + r.removed, 0)).toBe(0);
  });
});
