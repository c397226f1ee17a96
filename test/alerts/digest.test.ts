import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ALERTS_CHECK_ID, DIGEST_ID, reconcileAlertSchedules } from '../../jobs/alerts.js';
import { recordRun, runRecord } from '../../jobs/history.js';
import { ADMIN_QUEUE, queuePrefix } from '../../jobs/queues.js';
import { digestHtml, digestOf, digestText, sendDigest } from '../../src/alerts/digest.js';
import { readingOf, recordReadings } from '../../src/health/readings.js';
import { FIXTURE_PII, SECRETS, setup, WEEK1, WEEK2, type Setup } from './fixture.js';
import { httpSink, smtpSink } from './wire.js';
import { emptyResult } from '../../src/sync/run.js';

/** The cells of each table row of an HTML document, tags stripped, entities as written. */
function rows(html: string): string[][] {
  return [...html.matchAll(/<tr>(.*?)<\/tr>/gs)].map((m) =>
    [...m[1]!.matchAll(/<t[dh][^>]*>(.*?)<\/t[dh]>/gs)].map((c) => c[1]!.replace(/\s+/g, ' ').trim()),
  );
}

/** Runs the built CLI without blocking this process: the sinks it talks to live here. */
function cli(args: string[], cwd: string, env: NodeJS.ProcessEnv) {
  return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [path.resolve('dist/app/cli/bin.js'), ...args], { cwd, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const ACTION = '<b>thank</b> & reward them';
const ESCAPED = '&lt;b&gt;thank&lt;/b&gt; &amp; reward them';

describe('weekly digest', () => {
  let redis: Redis;
  let smtp: Awaited<ReturnType<typeof smtpSink>>;
  let s: Setup;

  beforeAll(async () => {
    redis = new Redis(inject('redisUrl'));
    smtp = await smtpSink({ user: SECRETS.SMTP_USER, password: SECRETS.SMTP_PASSWORD });
    s = setup(
      redis,
      { smtpPort: smtp.port },
      {
        segments: `segments: { actions: { Champions: "${ACTION}" } }`,
        alerts: '  digest: { cron: "0 8 * * 1", tz: Europe/Berlin, to: [managers@shop.test] }',
      },
    );
    // Two weeks of a real scoring of the fixture; the numbers below are counted by hand from WEEK1 and WEEK2.
    await s.score(WEEK1, '2026-11-23');
    await s.score(WEEK2, '2026-11-30');
    const run = runRecord(
      {
        ...emptyResult('local', 'Champions'),
        segmentSize: 3,
        members: 3,
        plannedAdds: 1,
        plannedRemoves: 2,
        added: 1,
        removed: 2,
        unchanged: 2,
        durationMs: 4,
      },
      { run: 'r1', at: '2026-11-30T06:00:00.000Z', full: false, reason: 'schedule' },
    );
    await recordRun(redis, queuePrefix(s.prefix), [run]);
    await recordReadings(
      redis,
      queuePrefix(s.prefix),
      [
        {
          destination: 'fb',
          audience: 'Slipping',
          reading: readingOf(
            { size: 5, warnings: [], problems: ['operation_status 471: restricted category'] },
            { expected: 5, counts: { confirmed: 5, addPending: 0, removePending: 0, rejected: 0 } },
            'schedule',
            new Date('2026-11-30T07:00:00Z'),
          ),
        },
      ],
      { keepDays: 90, keepSamples: 5000 },
    );
  });
  afterAll(async () => {
    redis.disconnect();
    await smtp.close();
  });

  it('counts sizes, changes over the week and movements as the two scorings say', async () => {
    const d = await digestOf(redis, s.config, new Date('2026-11-30T09:00:00Z'));
    expect(d.date).toBe('2026-11-30');
    expect(d.since).toBe('2026-11-23');
    const seg = (name: string) => d.segments.find((x) => x.segment === name);
    expect(seg('Champions')).toMatchObject({ customers: 3, before: 4, change: -1, action: ACTION });
    expect(seg('At Risk')).toMatchObject({
      customers: 5,
      before: 3,
      change: 2,
      action: 'personal win-back emails',
    });
    expect(seg('Lost')).toMatchObject({ customers: 5, before: 6, change: -1 });
    // c3, c4: Champions → At Risk; c10 left; c11 arrived.
    expect(d.movementFrom).toBe('2026-11-23');
    expect(d.movement).toEqual([
      { from: 'Champions', to: 'At Risk', customers: 2 },
      { from: 'Lost', to: 'gone', customers: 1 },
      { from: 'new', to: 'Champions', customers: 1 },
    ]);
    const local = d.audiences.find((a) => a.destination === 'local' && a.audience === 'Champions');
    expect(local).toMatchObject({ expected: 3, state: 'no size yet' });
    const fb = d.audiences.find((a) => a.destination === 'fb' && a.audience === 'Slipping');
    expect(fb).toMatchObject({ platformSize: 5, state: 'flagged' });
  });

  it('compares with the newest snapshot at least a week older, not an older one', async () => {
    const w = setup(redis, { smtpPort: smtp.port });
    await w.score(WEEK1, '2026-11-16');
    await w.score(WEEK2, '2026-11-23');
    await w.score(WEEK2, '2026-11-26');
    await w.score(WEEK1, '2026-11-30');
    const d = await digestOf(redis, w.config);
    // 2026-11-23 is exactly 7 days before: WEEK2 → WEEK1, so Champions 3 → 4; against 11-16 it would be 4 → 4.
    expect(d.since).toBe('2026-11-23');
    expect(d.segments.find((x) => x.segment === 'Champions')).toMatchObject({
      customers: 4,
      before: 3,
      change: 1,
    });
  });

  it('renders HTML for mail clients (tables, inline styles, no scripts or images, names escaped) and text', async () => {
    const d = await digestOf(redis, s.config, new Date('2026-11-30T09:00:00Z'));
    const html = digestHtml(d);
    expect(html).not.toMatch(/<script|<img|<link|<style|src=|url\(/i);
    expect(html).not.toContain('<b>thank');
    const table = rows(html);
    expect(table).toContainEqual(['Champions', '3', '−1', ESCAPED]);
    expect(table).toContainEqual(['At Risk', '5', '+2', 'personal win-back emails']);
    expect(table).toContainEqual(['Lost', '5', '−1', 'revive interest or let go']);
    const moves = table.filter((r) => r.length === 3 && /^\d+$/.test(r[2]!));
    expect(moves).toEqual([
      ['Champions', 'At Risk', '2'],
      ['Lost', 'gone', '1'],
      ['new', 'Champions', '1'],
    ]);
    expect(table).toContainEqual([
      'local / Champions',
      '3',
      '–',
      'no size yet',
      'completed 2026-11-30 06:00 UTC',
    ]);
    expect(table).toContainEqual([
      'fb / Slipping',
      '–',
      '5',
      'flagged: operation_status 471: restricted category',
      'never',
    ]);

    const text = digestText(d);
    expect(text).toContain('Segments on 2026-11-30, compared with 2026-11-23:');
    expect(text).toContain('  Champions: 3 (−1 from 4)\n');
    expect(text).toContain('  At Risk: 5 (+2 from 3)\n');
    expect(text).toContain('  Lost: 5 (−1 from 6)\n');
    expect(text).toContain(
      'Top movements since 2026-11-23:\n  Champions -> At Risk: 2\n  Lost -> gone: 1\n  new -> Champions: 1\n',
    );
    expect(text).toContain(`  - Champions (3): ${ACTION}`);
    expect(text).toContain('fb / Slipping is flagged by the platform');
  });

  it('is delivered over SMTP with an HTML and a plain-text part, to alerts.digest.to', async () => {
    const { sent } = await sendDigest(redis, s.config, { now: new Date('2026-11-30T09:00:00Z') });
    expect(sent).toEqual(['email']);
    expect(smtp.mails).toHaveLength(1);
    const mail = smtp.mails[0]!;
    expect(mail.envelopeTo).toEqual(['managers@shop.test']);
    expect(mail.parsed.subject).toBe('[audience-sync] weekly digest for 2026-11-30');
    expect(mail.parsed.text).toContain('  At Risk: 5 (+2 from 3)');
    expect(rows(String(mail.parsed.html))).toContainEqual(['At Risk', '5', '+2', 'personal win-back emails']);
    expect(mail.raw).toMatch(/Content-Type: multipart\/alternative/i);
    const found = [...FIXTURE_PII, SECRETS.SMTP_PASSWORD, SECRETS.META_TOKEN].filter((x) =>
      mail.raw.includes(x),
    );
    expect(found).toEqual([]);
    // Customer ids as words of what the mail says: the raw mail's random boundaries and ids may hold "c10".
    expect(`${mail.parsed.text}\n${String(mail.parsed.html)}`).not.toMatch(/\bc1[01]\b/);
  });

  it('is scheduled on the admin queue by alerts.digest.cron in its time zone, with the periodic check', async () => {
    const admin = new Queue(ADMIN_QUEUE, { connection: redis, prefix: queuePrefix(s.prefix) });
    try {
      await reconcileAlertSchedules(s.config, admin);
      const schedulers = await admin.getJobSchedulers(0, -1);
      const byId = new Map(schedulers.map((x) => [x.key, x]));
      expect(byId.get(DIGEST_ID)).toMatchObject({ pattern: '0 8 * * 1', tz: 'Europe/Berlin' });
      expect(byId.get(ALERTS_CHECK_ID)).toMatchObject({ pattern: '*/15 * * * *' });
      // Mondays 08:00 in Berlin is 07:00 UTC in winter.
      expect(new Date(byId.get(DIGEST_ID)!.next!).toISOString()).toMatch(/T07:00:00\.000Z$/);
      expect(new Date(byId.get(DIGEST_ID)!.next!).getUTCDay()).toBe(1);
      const off = s.reload({ alerts: '' });
      const r = await reconcileAlertSchedules(off, admin);
      expect(r.removed).toEqual([DIGEST_ID]);
      expect((await admin.getJobSchedulers(0, -1)).map((x) => x.key)).toEqual([ALERTS_CHECK_ID]);
    } finally {
      await admin.close();
    }
  });

  it('`audience-sync digest --out` writes the preview and `alerts test` reaches every channel (built CLI)', async () => {
    const http = await httpSink();
    try {
      const c = setup(redis, { webhook: http.url, slack: http.url, smtpPort: smtp.port });
      await c.score(WEEK1, '2026-11-23');
      const env = {
        ...process.env,
        REDIS_URL: inject('redisUrl'),
        LOG_LEVEL: 'warn',
        ALERT_WEBHOOK_SECRET: SECRETS.ALERT_WEBHOOK_SECRET,
        SLACK_WEBHOOK_URL: `${http.url}${SECRETS.SLACK_PATH}`,
        SMTP_USER: SECRETS.SMTP_USER,
        SMTP_PASSWORD: SECRETS.SMTP_PASSWORD,
        META_TOKEN: SECRETS.META_TOKEN,
      };
      const out = path.join(c.dir, 'digest.html');
      const preview = await cli(['digest', '--out', out], c.dir, env);
      expect(preview.status, preview.stderr).toBe(0);
      expect(rows(readFileSync(out, 'utf8'))).toContainEqual(['Lost', '6', '–', 'revive interest or let go']);
      const before = smtp.mails.length;
      const test = await cli(['alerts', 'test'], c.dir, env);
      expect(test.status, test.stderr).toBe(0);
      expect(test.stdout).toBe('hook: sent\nslack: sent\nemail: sent\n');
      expect(http.on('/hook')).toHaveLength(1);
      expect(http.on(SECRETS.SLACK_PATH)).toHaveLength(1);
      expect(smtp.mails.slice(before).map((m) => m.parsed.subject)).toEqual([
        expect.stringContaining('[audience-sync] TEST:'),
      ]);
    } finally {
      await http.close();
    }
  });
});
