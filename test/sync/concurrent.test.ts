import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Segmented } from '../../src/score/pipeline.js';
import type { AudiencePlan } from '../../src/diff/plan.js';
import type { Destination } from '../../src/sync/run.js';

/**
 * Two jobs of one worker process (`--concurrency 2`) plan and sync at the same time, sharing the process's
 * identify threads: each must get exactly what it gets alone.
 */

// Threads for every audience, however small: identify/table.ts reads this when it loads, so it is set before the
// pipeline is imported (below, dynamically).
process.env.AUDIENCE_SYNC_THREADS = '3';
process.env.AUDIENCE_SYNC_THREADS_FROM = '1';
const { planDestination, syncDestination } = await import('../../src/sync/run.js');
const { prepareSync } = await import('../../src/sync/prepare.js');
const { StateStore } = await import('../../src/record/store.js');
const { writeKey } = await import('../../src/record/keys.js');
const { NO_REMOVAL_BRAKE } = await import('../../src/diff/brakes.js');
const { createLogger } = await import('../../src/log.js');
const { connectors } = await import('../../connectors/index.js');
const { Identifier } = await import('../../src/identify/table.js');
const { MemoryBudget } = await import('../../src/identify/budget.js');
const { expectedAudiences, expectedRows, fileAudiences, makeShop } = await import('./harness.js');
const { recordErasure } = await import('../../src/privacy/erasure.js');
const { erasureDigests } = await import('../../src/privacy/identifiers.js');

/** The built thread script: a TypeScript runner has none of its own (`npm run build` makes it). */
const SCRIPT = pathToFileURL(path.resolve('dist/connectors/identify-thread.js'));
const BIN = path.resolve('dist/app/cli/bin.js');
const redisUrl = inject('redisUrl');
const log = createLogger({ level: 'silent' });
let redis: Redis;
beforeAll(() => {
  redis = new Redis(redisUrl);
});
afterAll(() => {
  redis.disconnect();
});

type Shop = Awaited<ReturnType<typeof makeShop>>;

/** A first sync from the CLI (inline identification), then changes: emails, opt-outs, a later analysis date. */
async function shopWithChanges(seed: number, customers: number): Promise<Shop> {
  const shop = await makeShop({ seed, customers });
  const r = spawnSync(process.execPath, [BIN, 'sync', '--json'], {
    cwd: shop.dir,
    env: { ...process.env, CI: 'true', REDIS_URL: redisUrl, AUDIENCE_SYNC_THREADS: '0' },
    encoding: 'utf8',
  });
  expect([0, 3], r.stderr).toContain(r.status);
  shop.write('2026-04-01');
  shop.editCustomers((cells, header, row) => {
    if (row % 7 === 1) cells[header.indexOf('email')] = `changed-${seed}-${row}@example.org`;
    else if (row % 7 === 2) cells[header.indexOf('opted_out')] = 'true';
    else if (row % 11 === 3) cells[header.indexOf('email')] = '';
  });
  return shop;
}

/** The customer id of each key (keys.ts, written here for every id). */
function idsByKey(segmented: Segmented): (key: Buffer) => string {
  const byKey = new Map<string, string>();
  const key = Buffer.alloc(8);
  const { ids } = segmented.customers;
  for (let i = 0; i < ids.length; i++) {
    writeKey(Buffer.from(ids.get(i)!, 'utf8'), key, 0);
    byKey.set(key.toString('hex'), ids.get(i)!);
  }
  return (k) => byKey.get(k.toString('hex'))!;
}

/** Everything a plan decides, by customer id and by the identifiers the state kept: comparable across runs. */
function summary(plans: AudiencePlan[], ids: (key: Buffer) => string) {
  return plans.map((p) => ({
    audience: p.audience,
    segmentSize: p.segmentSize,
    members: p.members,
    add: p.add
      .slice(0, p.add.length)
      .map((m) => `${ids(m.key)} ${m.slots.map((s) => s?.toString('hex') ?? '-').join(' ')}`)
      .sort(),
    remove: p.remove
      .map((m) => `${m.key.toString('hex')} ${m.slots.map((s) => s?.toString('hex') ?? '-').join(' ')}`)
      .sort(),
    unchanged: p.unchanged,
    waiting: p.waiting,
    pending: p.pending,
    rejectedEarlier: p.rejectedEarlier,
    skipped: p.skipped,
    forget: p.forget.map((k) => k.toString('hex')).sort(),
  }));
}

/** A shop's plans, on the threads, against a state of their own, empty: every member is an add. */
async function firstPlans(seed: number) {
  const shop = await shopWithChanges(seed, 2000);
  const prepared = await prepareSync(shop.config, connectors);
  const plans = await planDestination(prepared.destinations[0]!, {
    segmented: prepared.segmented,
    audiences: prepared.audiences,
    store: new StateStore(redis, `${shop.prefix}-first`),
    threads: SCRIPT,
  });
  return { prepared, plans };
}

/** An identifier of the prepared destination's rules, on the built thread script. */
function threadedIdentifier(prepared: Awaited<ReturnType<typeof prepareSync>>) {
  const { connector, config } = prepared.destinations[0]!;
  return new Identifier(prepared.segmented, {
    identify: (person) => connector.identify(person, config),
    slotCount: connector.slots(config).length,
    reasons: connector.skipReasons,
    threaded: { script: SCRIPT, rules: connector.identifiers!, config },
  });
}

/**
 * A whole destination's sync of a prepared shop on the threads, against the shop's state: its client made
 * for the run and closed after it; `more` adds to the sync's options.
 */
async function syncShop(
  prepared: Awaited<ReturnType<typeof prepareSync>>,
  prefix: string,
  more: Partial<Parameters<typeof syncDestination>[2]> = {},
) {
  const destination = prepared.destinations[0]!;
  const client = destination.connector.create(destination.config, {
    destination: destination.name,
    baseDir: prepared.baseDir,
    log,
  });
  try {
    return await syncDestination(destination, client, {
      segmented: prepared.segmented,
      audiences: prepared.audiences,
      store: new StateStore(redis, prefix),
      log,
      threads: SCRIPT,
      ...more,
    });
  } finally {
    await client.close?.();
  }
}

/** An identity table's entries as text (customer, reason, slots in hex): comparable across identifiers. */
async function rows(made: Promise<{ table: import('../../src/identify/table.js').IdentityTable }>) {
  const { table } = await made;
  return Array.from({ length: table.size }, (_, k) =>
    [table.customers[k], table.reason(k), ...table.member(k).slots.map((s) => s?.toString('hex'))].join(' '),
  );
}

describe('two jobs at once in one process, sharing the identify threads', () => {
  it('plan exactly what each plans alone', async () => {
    const shops = [await shopWithChanges(5, 3000), await shopWithChanges(8, 2000)];
    const prepared = await Promise.all(shops.map((s) => prepareSync(s.config, connectors)));
    const plan = (k: number) =>
      planDestination(prepared[k]!.destinations[0]!, {
        segmented: prepared[k]!.segmented,
        audiences: prepared[k]!.audiences,
        store: new StateStore(redis, shops[k]!.prefix),
        threads: SCRIPT,
      }).then((plans) => summary(plans, idsByKey(prepared[k]!.segmented)));

    const alone = [await plan(0), await plan(1)];
    // The plans have every kind of decision in them, so a wrong identity shows.
    for (const plans of alone) {
      expect(plans).toHaveLength(13);
      expect(plans.some((p) => p.add.length > 0 && p.remove.length > 0 && p.unchanged > 0)).toBe(true);
      expect(plans.some((p) => Object.keys(p.skipped).length > 1)).toBe(true);
    }
    // Several rounds: how the two interleave depends on timing, and each round must be exact.
    for (let round = 0; round < 4; round++) {
      const together = await Promise.all([plan(0), plan(1)]);
      expect(together[0], `round ${round}, first shop`).toEqual(alone[0]);
      expect(together[1], `round ${round}, second shop`).toEqual(alone[1]);
    }
  });

  it('give a plan memory of its own: nothing it holds is shared with a thread, which would keep it alive', async () => {
    const { plans } = await firstPlans(6);
    const members = plans.flatMap((p) => p.add.slice(0, p.add.length));
    expect(members.length).toBeGreaterThan(1000);
    // A thread's heap frees what it was sent only when that thread collects: shared memory would stay.
    for (const m of members) {
      expect(m.key.buffer).not.toBeInstanceOf(SharedArrayBuffer);
      for (const slot of m.slots) if (slot) expect(slot.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    }
  });

  it("list a first sync's adds in the source's order, the order their identity rows lie in (not in key order)", async () => {
    const { prepared, plans } = await firstPlans(7);
    const ids = idsByKey(prepared.segmented);
    const source = prepared.segmented.customers.ids;
    const row = new Map(Array.from({ length: source.length }, (_, i) => [source.get(i)!, i]));
    let adds = 0;
    for (const p of plans) {
      const rows = p.add.slice(0, p.add.length).map((m) => row.get(ids(m.key))!);
      adds += rows.length;
      expect(rows, p.audience).toEqual([...new Set(rows)].sort((a, b) => a - b));
    }
    expect(adds).toBeGreaterThan(1000);
  });

  it('sync two destinations so that each audience equals its segment', async () => {
    const shops = [
      await makeShop({ seed: 11, customers: 3000 }),
      await makeShop({ seed: 12, customers: 2000 }),
    ];
    const syncBoth = async () => {
      const prepared = await Promise.all(shops.map((s) => prepareSync(s.config, connectors)));
      // A fifth of the customers opt out and a fifth change email: removals on purpose.
      return Promise.all(
        prepared.map((p, k) => syncShop(p, shops[k]!.prefix, { removals: NO_REMOVAL_BRAKE })),
      );
    };
    await syncBoth();
    for (const shop of shops) expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));

    for (const shop of shops)
      shop.editCustomers((cells, header, row) => {
        if (row % 5 === 1) cells[header.indexOf('email')] = `moved-${row}@example.org`;
        else if (row % 5 === 2) cells[header.indexOf('opted_out')] = 'true';
      });
    const second = await syncBoth();
    for (const results of second) expect(results.some((r) => r.removed > 0 && r.added > 0)).toBe(true);
    for (const shop of shops) expect(fileAudiences(shop.out)).toEqual(await expectedAudiences(shop.config));
  });

  it('hold an erasure recorded during a run for the audiences not planned yet', async () => {
    const shop = await makeShop({ seed: 13, customers: 3000 });
    const prepared = await prepareSync(shop.config, connectors);
    const destination = prepared.destinations[0]!;
    const names = prepared.audiences.map((a) => a.name);
    const [before, last] = names.slice(-2) as [string, string];
    // The oracle: the last audience's members by customer id, from the source.
    const rows = (await expectedRows(shop.config)).get(last)!;
    const [erased, line] = [...rows].find(([, l]) => l.split(' ').length === 2)!;
    let recorded = false;
    await syncShop(prepared, shop.prefix, {
      // The audience before the last is planned (and the last one may be identified already, on
      // another core): an operator erases one of the last one's members now.
      onPlan: (plan) => {
        if (plan.audience !== before) return;
        recorded = true;
        void recordErasure(
          redis,
          shop.prefix,
          erasureDigests({ customerId: erased }, [destination]),
          [destination.name],
          { user: 'test', via: 'test' },
        );
      },
    });
    expect(recorded).toBe(true);
    const synced = fileAudiences(shop.out).get(last)!;
    for (const identifier of line.split(' ')) expect(synced).not.toContain(identifier);
    const others = [...rows].filter(([id]) => id !== erased).flatMap(([, l]) => l.split(' '));
    expect(synced).toEqual(new Set(others));
  });

  it("fail only the plan whose thread reported the error, and the other's plan is exact", async () => {
    const shop = await shopWithChanges(9, 2500);
    const prepared = await prepareSync(shop.config, connectors);
    const destination = prepared.destinations[0]!;
    const plan = (d: Destination) =>
      planDestination(d, {
        segmented: prepared.segmented,
        audiences: prepared.audiences,
        store: new StateStore(redis, shop.prefix),
        threads: SCRIPT,
      }).then((plans) => summary(plans, idsByKey(prepared.segmented)));
    const alone = await plan(destination);
    // Rules the thread cannot load: every one of the connector's slices fails in the thread.
    const unknown: Destination = {
      ...destination,
      connector: { ...destination.connector, identifiers: 'not-in-this-build/identify.js' },
    };
    const [failed, good] = await Promise.allSettled([plan(unknown), plan(destination)]);
    expect(failed.status).toBe('rejected');
    expect(String((failed as PromiseRejectedResult).reason)).toMatch(/not-in-this-build\/identify\.js/);
    expect(good).toEqual({ status: 'fulfilled', value: alone });
  });

  it('fail a plan whose thread dies, and start new threads for the next', async () => {
    const shop = await shopWithChanges(10, 2000);
    const prepared = await prepareSync(shop.config, connectors);
    const destination = prepared.destinations[0]!;
    const plan = (d: Destination, threads: URL) =>
      planDestination(d, {
        segmented: prepared.segmented,
        audiences: prepared.audiences,
        store: new StateStore(redis, shop.prefix),
        threads,
      }).then((plans) => summary(plans, idsByKey(prepared.segmented)));
    const alone = await plan(destination, SCRIPT);
    const dying = pathToFileURL(path.resolve('test/fixtures/threads/identify-thread.mjs'));
    const crash: Destination = {
      ...destination,
      connector: { ...destination.connector, identifiers: 'crash' },
    };
    await expect(plan(crash, dying)).rejects.toThrow(/identify thread: the thread stopped \(exit code 70\)/);
    expect(await plan(destination, dying)).toEqual(alone);
  });

  it('use an identification started ahead (the next audience, while one is sent) for the members it was started for only', async () => {
    const shop = await makeShop({ seed: 12, customers: 2000 });
    const prepared = await prepareSync(shop.config, connectors);
    const identifier = () => threadedIdentifier(prepared);
    const even = Uint32Array.from({ length: 1000 }, (_, k) => 2 * k);
    const odd = Uint32Array.from({ length: 1000 }, (_, k) => 2 * k + 1);
    const shared = identifier();
    shared.ahead(even);
    expect(await rows(shared.identify(odd))).toEqual(await rows(identifier().identify(odd)));
    shared.ahead(odd);
    shared.ahead(even);
    const evens = await rows(shared.identify(even));
    expect(evens).toEqual(await rows(identifier().identify(even)));
    expect(new Set(evens.map((r) => r.split(' ')[0])).size).toBe(1000);
  });

  it('use several identifications started ahead, each for its own members, in order or with some skipped', async () => {
    const shop = await makeShop({ seed: 13, customers: 2000 });
    const prepared = await prepareSync(shop.config, connectors);
    const identifier = () => threadedIdentifier(prepared);
    // Four audiences' members: every third customer from 0, 1 and 2, and the first 500.
    const thirds = [0, 1, 2].map((r) => Uint32Array.from({ length: 600 }, (_, k) => 3 * k + r));
    const first = Uint32Array.from({ length: 500 }, (_, k) => k);
    const alone = await Promise.all([...thirds, first].map((m) => rows(identifier().identify(m))));
    const shared = identifier();
    for (const m of [...thirds, first]) expect(shared.ahead(m)).toBe(true);
    expect(await rows(shared.identify(thirds[0]!))).toEqual(alone[0]);
    // The second is skipped: the third and the fourth are still its own members' tables.
    expect(await rows(shared.identify(thirds[2]!))).toEqual(alone[2]);
    expect(await rows(shared.identify(first))).toEqual(alone[3]);
    // And one asked for after being skipped is identified afresh.
    expect(await rows(shared.identify(thirds[1]!))).toEqual(alone[1]);
  });

  it("identify ahead within the process's table budget only, counted as the runs' own and given back however the run ends", async () => {
    /** A whole destination's sync under a budget of `limit` bytes: what the budget held at each plan, and after. */
    const syncUnder = async (seed: number, limit: number, stopAt?: number) => {
      const shop = await makeShop({ seed, customers: 3000 });
      const prepared = await prepareSync(shop.config, connectors);
      const budget = new MemoryBudget(limit);
      const stop = new AbortController();
      const held: number[] = [];
      let error: unknown;
      await syncShop(prepared, shop.prefix, {
        budget,
        signal: stop.signal,
        onPlan: () => {
          held.push(budget.used);
          if (held.length === stopAt) stop.abort(new Error('stopped by the test'));
        },
      }).catch((e: unknown) => (error = e));
      return { shop, held, after: budget.used, error };
    };
    // Limit 0: one table at a time, so nothing is identified ahead; each plan holds its own table only.
    const alone = await syncUnder(21, 0);
    expect(alone.error).toBeUndefined();
    expect(fileAudiences(alone.shop.out)).toEqual(await expectedAudiences(alone.shop.config));
    // Room for every table: the first plan holds its own and those of the audiences identified ahead.
    const roomy = await syncUnder(21, 2 ** 30);
    expect(roomy.error).toBeUndefined();
    expect(fileAudiences(roomy.shop.out)).toEqual(await expectedAudiences(roomy.shop.config));
    expect(roomy.held[0]).toBeGreaterThan(alone.held[0]!);
    expect(Math.max(...roomy.held)).toBeLessThanOrEqual(2 ** 30);
    // Whatever was held is given back: after a run that ends, and after one stopped with tables ahead.
    expect([alone.after, roomy.after]).toEqual([0, 0]);
    const stopped = await syncUnder(22, 2 ** 30, 1);
    expect(String(stopped.error)).toMatch(/stopped by the test/);
    expect(stopped.held[0]).toBeGreaterThan(0);
    expect(stopped.after).toBe(0);
  });
});
