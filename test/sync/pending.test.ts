import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { z } from 'zod';
import { identify as fileIdentify, memberLine } from '../../connectors/file/index.js';
import { audiencesOf } from '../../src/audience/audiences.js';
import { configSchema } from '../../src/config/schema.js';
import {
  ConnectorError,
  type BatchOutcome,
  type ConnectorClient,
  type ConnectorDefinition,
  type Member,
  type PollOutcome,
  type RemoteAudience,
} from '../../src/connector.js';
import { createLogger } from '../../src/log.js';
import { segmentCustomers } from '../../src/score/pipeline.js';
import { StateStore } from '../../src/record/store.js';
import { syncDestination, type Destination } from '../../src/sync/run.js';
import { tempDir, writeTemp } from '../helpers.js';
import { slotBuffers } from '../../src/identify/types.js';

/**
 * The core against a platform that processes uploads later (as Google and Meta do): an in-memory
 * platform behind the connector interface, whose uploads stay pending until the test processes them.
 */
class LaterPlatform implements ConnectorClient {
  members = new Set<string>();
  uploads = new Map<
    string,
    { op: 'add' | 'remove'; lines: string[]; state: 'processing' | 'done' | 'failed' }
  >();
  sent: { op: string; lines: string[] }[] = [];
  failNext: ConnectorError[] = [];
  rejectEmail?: Buffer;
  private seq = 0;

  async check() {
    return [];
  }
  async ensureAudience(name: string, knownId?: string) {
    return { id: knownId ?? `aud-${name}`, name, created: !knownId };
  }
  async add(_a: RemoteAudience, batch: readonly Member[]) {
    return this.upload('add', batch);
  }
  async remove(_a: RemoteAudience, batch: readonly Member[]) {
    return this.upload('remove', batch);
  }
  async poll(_a: RemoteAudience, token: string): Promise<PollOutcome> {
    const u = this.uploads.get(token)!;
    return u.state === 'failed' ? { status: 'failed', reason: 'INTERNAL' } : { status: u.state };
  }
  async stats() {
    return { size: this.members.size, warnings: [] };
  }

  /** The platform works through its queue: each upload done (or failed, when asked). */
  process(fail: (token: string) => boolean = () => false): void {
    for (const [token, u] of this.uploads) {
      if (u.state !== 'processing') continue;
      if (fail(token)) {
        u.state = 'failed';
        continue;
      }
      u.state = 'done';
      for (const line of u.lines)
        for (const id of line.split(' ')) {
          if (u.op === 'add') this.members.add(id);
          else this.members.delete(id);
        }
    }
  }

  private upload(op: 'add' | 'remove', batch: readonly Member[]): BatchOutcome {
    const error = this.failNext.shift();
    if (error) throw error;
    const lines = batch.map((m) => memberLine(m.slots));
    this.sent.push({ op, lines });
    const rejected = batch.flatMap((m, index) =>
      this.rejectEmail && m.slots[0]?.equals(this.rejectEmail) ? [{ index, reason: 'INVALID' }] : [],
    );
    const token = `u${++this.seq}`;
    this.uploads.set(token, {
      op,
      lines: lines.filter((_, i) => !rejected.some((r) => r.index === i)),
      state: 'processing',
    });
    return { status: 'pending', token, rejected };
  }
}

const laterConnector: ConnectorDefinition<{ type: string }> = {
  type: 'later',
  configSchema: z.looseObject({ type: z.string() }),
  batchSize: () => 3,
  final: () => false,
  slots: () => ['email', 'phone'],
  identify: (person) => fileIdentify(person, { default_country: 'US' }),
  create: () => {
    throw new Error('the test passes its own client');
  },
};

const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.disconnect());
const log = createLogger({ level: 'silent', json: true });

/** A shop of four customers, all Champions by construction (one code table segment). */
async function setup() {
  const dir = tempDir();
  const write = (customers: string) => {
    writeTemp(
      'orders.csv',
      'customer_id,order_date,amount\na,2025-12-01,10\nb,2025-12-01,10\nc,2025-12-01,10\nd,2025-12-01,10\n',
      dir,
    );
    writeTemp('customers.csv', `customer_id,email,phone\n${customers}`, dir);
  };
  write('a,a@example.com,\nb,b@example.com,\nc,c@example.com,\nd,d@example.com,\n');
  const config = configSchema.parse({
    source: { type: 'csv', path: 'orders.csv' },
    profiles: { type: 'csv', path: 'customers.csv' },
    scoring: { analysis_date: '2026-01-01' },
    segments: { map: 'codes', codes: { Everyone: [111] }, other: 'Everyone' },
    audiences: { per_segment: true },
    destinations: { later: { type: 'file', path: 'unused' } },
  });
  const store = new StateStore(redis, `pending-${randomBytes(4).toString('hex')}`);
  const platform = new LaterPlatform();
  const destination: Destination = { name: 'later', connector: laterConnector, config: { type: 'later' } };
  const run = async () => {
    const segmented = await segmentCustomers(config, { baseDir: dir });
    const [result] = await syncDestination(destination, platform, {
      segmented,
      audiences: audiencesOf(config, segmented.scores.segments),
      store,
      log,
      retry: { attempts: 4, baseMs: 1, maxMs: 5, maxRateLimitWaitMs: 1000 },
    });
    return result!;
  };
  return { platform, run, write };
}

const hex = (email: string) => fileIdentify({ email }, { default_country: 'US' });
const emailLine = (email: string) => {
  const id = hex(email);
  return 'slots' in id ? memberLine(slotBuffers(id.slots)) : '';
};

describe('a platform that processes uploads later', () => {
  it('keeps sent members pending until the platform reports them done, and sends nothing twice', async () => {
    const { platform, run } = await setup();
    const first = await run();
    expect(first).toMatchObject({ added: 4, plannedAdds: 4, pending: 0 });
    expect(platform.sent.map((s) => s.lines.length)).toEqual([3, 1]); // batches of at most 3

    const whileProcessing = await run();
    expect(whileProcessing).toMatchObject({ added: 0, removed: 0, pending: 4, unchanged: 0 });

    platform.process();
    const settled = await run();
    expect(settled).toMatchObject({ added: 0, removed: 0, pending: 0, unchanged: 4 });
    expect(platform.sent).toHaveLength(2);
  });

  it('sends the members of an upload that failed on the platform again', async () => {
    const { platform, run } = await setup();
    await run();
    // The first upload (3 members) fails on the platform, the second (1 member) is done.
    platform.process((token) => token === 'u1');
    const again = await run();
    expect(again).toMatchObject({ added: 3, unchanged: 1 });
    platform.process();
    expect((await run()).unchanged).toBe(4);
  });

  it('removes under the old identifiers first, and adds under the new once the removal is done', async () => {
    const { platform, run, write } = await setup();
    await run();
    platform.process();
    write('a,a2@example.com,\nb,b@example.com,\nc,c@example.com,\nd,d@example.com,\n');
    const changing = await run();
    expect(changing).toMatchObject({ removed: 1, added: 0, waiting: 1 });
    expect(platform.sent.at(-1)).toEqual({ op: 'remove', lines: [emailLine('a@example.com')] });
    // Until the platform has done the removal, the addition waits.
    expect(await run()).toMatchObject({ added: 0, waiting: 1 });
    platform.process();
    const adding = await run();
    expect(adding).toMatchObject({ added: 1, waiting: 0 });
    platform.process();
    expect(await run()).toMatchObject({ added: 0, removed: 0, unchanged: 4 });
    expect([...platform.members].sort()).toEqual(
      ['a2@example.com', 'b@example.com', 'c@example.com', 'd@example.com'].map(emailLine).sort(),
    );
  });

  it('holds back an addition that shares an identifier with a removal in flight', async () => {
    const { platform, run, write } = await setup();
    await run();
    platform.process();
    // d leaves; the same run, nobody else has d's email yet.
    write('a,a@example.com,\nb,b@example.com,\nc,c@example.com,\nd,,\n');
    expect(await run()).toMatchObject({ removed: 1 });
    // Now c takes d's old email while d's removal is still processing: c waits.
    write('a,a@example.com,\nb,b@example.com,\nc,d@example.com,\nd,,\n');
    const r = await run();
    expect(r.waiting).toBeGreaterThanOrEqual(1);
    expect(platform.sent.at(-1)!.lines).not.toContain(emailLine('d@example.com'));
    platform.process();
    await run();
    platform.process();
    await run();
    expect([...platform.members].sort()).toEqual(
      ['a@example.com', 'b@example.com', 'd@example.com'].map(emailLine).sort(),
    );
  });

  it('records members the platform rejects and does not send them again until they change', async () => {
    const { platform, run } = await setup();
    const bad = hex('b@example.com');
    platform.rejectEmail = 'slots' in bad ? slotBuffers(bad.slots)[0] : undefined;
    expect(await run()).toMatchObject({ added: 3, rejected: 1 });
    platform.process();
    const later = await run();
    expect(later).toMatchObject({ added: 0, unchanged: 3 });
    expect(platform.sent.flatMap((s) => s.lines)).toHaveLength(4);
  });

  it('retries retryable errors and waits out rate limits without losing batches already sent', async () => {
    const { platform, run } = await setup();
    platform.failNext = [
      new ConnectorError('502 from the platform', 'retryable'),
      new ConnectorError('429', 'rate_limited', { retryAfterMs: 20 }),
    ];
    const r = await run();
    expect(r.error).toBeUndefined();
    expect(r).toMatchObject({ added: 4 });
    expect(platform.sent).toHaveLength(2);
  });

  it('stops the audience on a permanent error, keeping what was acknowledged', async () => {
    const { platform, run } = await setup();
    const original = platform.add.bind(platform);
    let calls = 0;
    platform.add = async (a, batch) => {
      if (++calls === 2) throw new ConnectorError('token expired', 'permanent');
      return original(a, batch);
    };
    const r = await run();
    expect(r).toMatchObject({ added: 3, failed: 1, error: 'token expired' });
    platform.add = original;
    platform.process();
    expect(await run()).toMatchObject({ added: 1, unchanged: 3 });
  });
});
