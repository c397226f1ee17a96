import { createHmac } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { connectors } from '../../connectors/index.js';
import { versionNotices } from '../../jobs/alerts.js';
import { failedRun, recordRun, type RunRecord } from '../../jobs/history.js';
import { queuePrefix } from '../../jobs/queues.js';
import { alertKeys, evaluateAlerts } from '../../src/alerts/evaluate.js';
import type { AlertKind } from '../../src/alerts/conditions.js';
import { readingOf, recordReadings } from '../../src/health/readings.js';
import { erasureDigests } from '../../src/privacy/identifiers.js';
import { receiptsOf, recordErasure, saveReceipt } from '../../src/privacy/erasure.js';
import { destinationsOf } from '../../src/sync/prepare.js';
import { FIXTURE_PII, keptLogger, SECRETS, setup, WEEK1, WEEK2, type Setup } from './fixture.js';
import { httpSink, smtpSink } from './wire.js';
import { emptyResult } from '../../src/sync/run.js';
import type { Config } from '../../src/config/schema.js';

/** The version notices of the worker's evaluations: from each destination's connector. */
const notices = (config: Config, now: Date) => versionNotices(config, connectors, now);

const HOUR = 3_600_000;
const T0 = Date.parse('2026-12-03T08:00:00Z');

type Sink = Awaited<ReturnType<typeof httpSink>>;
type Smtp = Awaited<ReturnType<typeof smtpSink>>;

/** One alert as each channel delivered it, read back from the wire. */
interface Delivered {
  channel: 'hook' | 'slack' | 'email';
  status: string;
  key: string;
  text: string;
}

describe('alerts', () => {
  let redis: Redis;
  let http: Sink;
  let smtp: Smtp;
  const { log, lines } = keptLogger();
  /** Everything that went out or was kept, for the grep at the end. */
  const everything: string[] = [];

  beforeAll(async () => {
    redis = new Redis(inject('redisUrl'));
    http = await httpSink();
    smtp = await smtpSink({ user: SECRETS.SMTP_USER, password: SECRETS.SMTP_PASSWORD });
  });
  afterAll(async () => {
    redis.disconnect();
    await http.close();
    await smtp.close();
  });

  const seen = { hook: 0, slack: 0, email: 0 };
  /** What reached the sinks since the last call; each webhook's signature checked with our own HMAC. */
  const delivered = (): Delivered[] => {
    const out: Delivered[] = [];
    const hooks = http.on('/hook').slice(seen.hook);
    seen.hook += hooks.length;
    for (const h of hooks) {
      everything.push(JSON.stringify(h.headers), h.body);
      const expected = `sha256=${createHmac('sha256', SECRETS.ALERT_WEBHOOK_SECRET).update(h.body).digest('hex')}`;
      expect(h.headers['x-audience-sync-signature']).toBe(expected);
      const body = JSON.parse(h.body) as { status: string; key: string; title: string; timestamp: number };
      expect(String(body.timestamp)).toBe(h.headers['x-audience-sync-timestamp']);
      expect(Math.abs(body.timestamp * 1000 - Date.now())).toBeLessThan(5 * 60_000);
      out.push({ channel: 'hook', status: body.status, key: body.key, text: h.body });
    }
    const slack = http.on(SECRETS.SLACK_PATH).slice(seen.slack);
    seen.slack += slack.length;
    for (const s of slack) {
      everything.push(s.body);
      const body = JSON.parse(s.body) as { text: string; blocks: { text: { text: string } }[] };
      expect(body.blocks.length).toBeGreaterThan(0);
      const status = /\] (ALERT|STILL|RESOLVED|TEST):/.exec(body.text)![1]!;
      out.push({ channel: 'slack', status, key: '', text: s.body });
    }
    const mails = smtp.mails.slice(seen.email);
    seen.email += mails.length;
    for (const m of mails) {
      everything.push(m.raw);
      expect(m.envelopeTo).toEqual(['marketing@shop.test']);
      const status = /\] (ALERT|STILL|RESOLVED|TEST):/.exec(m.parsed.subject ?? '')![1]!;
      out.push({ channel: 'email', status, key: '', text: `${m.parsed.subject}\n${m.parsed.text}` });
    }
    return out;
  };
  const byStatus = (d: Delivered[]) =>
    Object.fromEntries(
      (['hook', 'slack', 'email'] as const).map((c) => [
        c,
        d
          .filter((x) => x.channel === c)
          .map((x) => x.status.toLowerCase())
          .sort(),
      ]),
    );

  const fresh = () => setup(redis, { webhook: http.url, slack: http.url, smtpPort: smtp.port });

  const meta = (at: number) => ({
    run: `r${at}`,
    at: new Date(at).toISOString(),
    full: false,
    reason: 'schedule',
  });
  const completed = (s: Setup, audience: string, at: number, more: Partial<RunRecord> = {}): RunRecord =>
    ({
      ...meta(at),
      ...emptyResult('local', audience),
      outcome: 'completed',
      segmentSize: 100,
      members: 100,
      added: 100,
      durationMs: 5,
      ...more,
    }) as RunRecord;
  const record = (s: Setup, r: RunRecord) => recordRun(redis, queuePrefix(s.prefix), [r]);
  const read = (s: Setup, audience: string, at: number, stats: { size: number; problems?: string[] }) =>
    recordReadings(
      redis,
      queuePrefix(s.prefix),
      [
        {
          destination: 'fb',
          audience,
          reading: readingOf(
            {
              size: stats.size,
              matchRate: 1,
              warnings: [],
              ...(stats.problems ? { problems: stats.problems } : {}),
            },
            { expected: 200, counts: { confirmed: 200, addPending: 0, removePending: 0, rejected: 0 } },
            'schedule',
            new Date(at),
          ),
        },
      ],
      { keepDays: 90, keepSamples: 5000 },
    );

  interface Case {
    kind: AlertKind;
    /** The key the condition has (kind:destination:subject). */
    key: string;
    /** When the case starts (an erasure's deadline counts from its real request time). */
    t0?: () => number;
    /** Settings the case starts from, when not the fixture's. */
    start?: (s: Setup) => void;
    hold(s: Setup, at: number): Promise<void>;
    clear(s: Setup, at: number): Promise<void>;
    /** Words the alert must carry: the numbers and what to do. */
    says: string[];
  }

  let erasureId = '';
  const cases: Case[] = [
    {
      kind: 'run_failed',
      key: 'run_failed:local:Champions',
      hold: (s, at) =>
        record(
          s,
          failedRun(
            'local',
            'Champions',
            meta(at),
            'upload refused for buyer1@example.com (+44 20 7946 0001)',
          ),
        ),
      clear: (s, at) => record(s, completed(s, 'Champions', at)),
      says: ['local / Champions failed', 'resync'],
    },
    {
      kind: 'rejected_share',
      key: 'rejected_share:local:Slipping',
      hold: (s, at) =>
        record(
          s,
          completed(s, 'Slipping', at, {
            added: 90,
            rejected: 10,
            rejectedReasons: { 'bad email buyer3@example.com': 10 },
          }),
        ),
      clear: (s, at) => record(s, completed(s, 'Slipping', at)),
      says: ['rejected 10 of 100', '10.0 %', 'more than 1.0 %'],
    },
    {
      kind: 'below_minimum',
      key: 'below_minimum:local:Champions',
      hold: (s, at) =>
        record(
          s,
          completed(s, 'Champions', at, {
            members: 40,
            policy: [
              {
                check: 'min_size',
                message: 'the platform serves audiences from 100 members; this one has 40',
                blocked: false,
              },
            ],
          }),
        ),
      clear: (s, at) => record(s, completed(s, 'Champions', at, { members: 120 })),
      says: ['below the platform', '40 members', 'min_size'],
    },
    {
      kind: 'flagged',
      key: 'flagged:fb:Champions',
      hold: (s, at) =>
        read(s, 'Champions', at, { size: 200, problems: ['operation_status 471: restricted category'] }),
      clear: (s, at) => read(s, 'Champions', at, { size: 200 }),
      says: ['flagged or unusable', 'restricted category'],
    },
    {
      kind: 'divergent',
      key: 'divergent:fb:Slipping',
      hold: (s, at) => read(s, 'Slipping', at, { size: 50 }),
      clear: (s, at) => read(s, 'Slipping', at, { size: 195 }),
      says: ['counts 50 where 160 to 240', 'resync --full'],
    },
    {
      kind: 'segment_change',
      key: 'segment_change:*:At Risk',
      hold: async (s) => {
        await s.score(WEEK1, '2026-11-23');
        await s.score(WEEK2, '2026-11-30');
      },
      clear: (s) => s.score(WEEK2, '2026-12-07'),
      says: ['At Risk went from 3 to 5', '+66.7 %', 'segment_change_share'],
    },
    {
      kind: 'erasure_overdue',
      key: '',
      t0: () => Date.now() + 25 * HOUR,
      hold: async (s) => {
        const digests = erasureDigests(
          { email: 'buyer2@example.com' },
          destinationsOf(s.config, connectors, 'local'),
        );
        const request = await recordErasure(redis, s.prefix, digests, ['local'], {
          user: 'test',
          via: 'cli',
        });
        erasureId = request.id;
        cases.find((c) => c.kind === 'erasure_overdue')!.key = `erasure_overdue:local:${request.id}`;
      },
      clear: async (s, at) => {
        const [receipt] = await receiptsOf(redis, s.prefix, erasureId);
        await saveReceipt(redis, s.prefix, erasureId, {
          ...receipt!,
          status: 'removed',
          removed_at: new Date(at).toISOString(),
        });
      },
      says: ['not done on local after 25 hours', 'audience-sync erasures'],
    },
    {
      kind: 'version_expiry',
      key: 'version_expiry:fb:v25.0',
      t0: () => Date.parse('2027-01-01T08:00:00Z'),
      // A version newer than the table knows is not warned about; v25.0 is, from 60 days before it expires.
      start: (s) => void s.reload({ apiVersion: 'v26.0' }),
      hold: (s) => Promise.resolve(void s.reload({ apiVersion: 'v25.0' })),
      clear: (s) => Promise.resolve(void s.reload({ apiVersion: 'v26.0' })),
      says: ['v25.0 expires on 2027-02-23 (in 53 days)', 'api_version'],
    },
  ];

  for (const c of cases)
    it(`${c.kind}: fires once, reminds after alerts.remind_hours, resolves when it clears`, async () => {
      const s = fresh();
      c.start?.(s);
      const t0 = c.t0?.() ?? T0;
      const evaluate = (at: number) =>
        evaluateAlerts(redis, s.config, { kinds: [c.kind], log, now: new Date(at), versionNotices: notices });
      delivered();

      // Not holding: nothing is sent.
      expect((await evaluate(t0)).sent).toEqual([]);
      await c.hold(s, t0);
      const first = await evaluate(t0 + 1000);
      expect(first.holding.map((h) => h.key)).toContain(c.key);
      expect(first.failed).toEqual([]);
      const firing = delivered().filter((d) => d.channel !== 'hook' || d.key === c.key);
      expect(byStatus(firing).hook).toEqual(['firing']);
      for (const channel of ['slack', 'email'] as const)
        expect(firing.filter((d) => d.channel === channel).length).toBeGreaterThanOrEqual(1);
      const text = firing
        .filter((d) => d.channel === 'email')
        .map((d) => d.text)
        .join('\n');
      for (const words of c.says) expect(text).toContain(words);

      // Still holding within the reminder interval: silence, however often it is evaluated.
      await evaluate(t0 + 2000);
      await evaluate(t0 + 23 * HOUR);
      expect(delivered()).toEqual([]);

      // Past the interval: one reminder per channel.
      const reminded = await evaluate(t0 + 25 * HOUR);
      expect(
        reminded.sent
          .filter((x) => x.key === c.key)
          .map((x) => `${x.channel}:${x.status}`)
          .sort(),
      ).toEqual(['email:reminder', 'hook:reminder', 'slack:reminder']);
      delivered();
      await evaluate(t0 + 26 * HOUR);
      expect(delivered()).toEqual([]);

      // Cleared: "resolved" once, then nothing.
      await c.clear(s, t0 + 27 * HOUR);
      const cleared = await evaluateAlerts(redis, s.config, {
        kinds: [c.kind],
        log,
        now: new Date(t0 + 27 * HOUR + 1000),
        versionNotices: notices,
      });
      expect(cleared.holding.map((h) => h.key)).not.toContain(c.key);
      expect(
        cleared.sent
          .filter((x) => x.key === c.key)
          .map((x) => `${x.channel}:${x.status}`)
          .sort(),
      ).toEqual(['email:resolved', 'hook:resolved', 'slack:resolved']);
      const resolved = delivered().filter((d) => d.channel === 'hook' && d.key === c.key);
      expect(resolved.map((d) => d.status)).toEqual(['resolved']);
      await evaluate(t0 + 28 * HOUR);
      expect(delivered()).toEqual([]);
      everything.push(...Object.values(await redis.hgetall(alertKeys.state(s.prefix))));
    });

  it('does not fire on a run that completed within its thresholds, nor on a small segment change', async () => {
    const s = fresh();
    await record(s, completed(s, 'Champions', T0, { added: 995, rejected: 5 }));
    await s.score(WEEK1, '2026-11-23');
    await s.score(WEEK2, '2026-11-30');
    const e = await evaluateAlerts(redis, s.config, {
      kinds: ['run_failed', 'rejected_share', 'below_minimum', 'segment_change'],
      log,
      now: new Date(T0),
    });
    // 5 of 1000 is 0.5 %, under sync.max_rejected_share (1 %); Lost went from 6 to 5 (16.7 %, under 20 %).
    expect(e.holding.map((h) => h.key).sort()).toEqual([
      'segment_change:*:At Risk',
      'segment_change:*:Champions',
    ]);
    delivered();
  });

  it('a failed run says nothing of rejections or minimum sizes: their alerts neither clear nor fire', async () => {
    const s = fresh();
    const kinds: AlertKind[] = ['rejected_share', 'below_minimum'];
    await record(
      s,
      completed(s, 'Slipping', T0, {
        added: 50,
        rejected: 50,
        policy: [{ check: 'min_size', message: 'too small', blocked: false }],
      }),
    );
    const first = await evaluateAlerts(redis, s.config, { kinds, log, now: new Date(T0) });
    expect(
      first.sent
        .filter((x) => x.channel === 'hook')
        .map((x) => x.key)
        .sort(),
    ).toEqual(['below_minimum:local:Slipping', 'rejected_share:local:Slipping']);
    await record(s, failedRun('local', 'Slipping', meta(T0 + HOUR), 'platform unreachable'));
    const after = await evaluateAlerts(redis, s.config, { kinds, log, now: new Date(T0 + 2 * HOUR) });
    expect(after.sent).toEqual([]);
    delivered();
  });

  it('a channel that fails is logged and tried again at the next evaluation, without holding the others', async () => {
    const s = fresh();
    await record(s, failedRun('local', 'Slipping', meta(T0), 'platform unreachable'));
    http.fail(1); // the webhook is posted first: it gets the 500
    const first = await evaluateAlerts(redis, s.config, { kinds: ['run_failed'], log, now: new Date(T0) });
    expect(first.failed.map((f) => `${f.channel}:${f.status}`)).toEqual(['hook:firing']);
    expect(first.failed[0]!.error).toContain('HTTP 500');
    expect(first.sent.map((x) => x.channel).sort()).toEqual(['email', 'slack']);
    expect(lines.some((l) => l.includes('alert not sent') && l.includes('run_failed:local:Slipping'))).toBe(
      true,
    );
    delivered();
    const second = await evaluateAlerts(redis, s.config, {
      kinds: ['run_failed'],
      log,
      now: new Date(T0 + 60_000),
    });
    expect(second.sent.map((x) => `${x.channel}:${x.status}`)).toEqual(['hook:firing']);
    expect(byStatus(delivered())).toEqual({ hook: ['firing'], slack: [], email: [] });
  });

  it('no email, phone, token or secret of the fixture reaches an alert, a log line or the alert state', () => {
    expect(everything.length).toBeGreaterThan(20);
    const all = [...everything, ...lines].join('\n');
    const found = [
      ...FIXTURE_PII,
      SECRETS.ALERT_WEBHOOK_SECRET,
      SECRETS.SLACK_PATH,
      'xoxbSlackTok3nValue42',
      SECRETS.SMTP_PASSWORD,
      SECRETS.META_TOKEN,
    ].filter((needle) => all.includes(needle));
    expect(found).toEqual([]);
    expect(all).toMatch(/\[email\]/); // the platform's echo was there, scrubbed
  });
});
