import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { queuePrefix } from '../../jobs/queues.js';
import { readingOf, recordReadings } from '../../src/health/readings.js';
import { serve } from '../api/harness.js';
import { killAll, run, type Proc } from '../jobs/procs.js';
import {
  cellsOf,
  expectCsvEqualsTable,
  fixtureShop,
  launchChromium,
  loggedInPage,
  poll,
  seen,
  tableOf,
} from './browser.js';

/**
 * An audience in trouble, in Chromium, with a console set to show times in Asia/Kathmandu (UTC+5:45, no
 * daylight saving): one whose platform lost its members (divergent, with the numbers), and one whose run
 * failed on a broken destination folder (its error shown scrubbed of the credential-like name in its path).
 */

const ZONE = 'Asia/Kathmandu';
/** A folder name the redaction treats as a credential (`token=…`): it must not reach a page. */
const SECRET = 's3cr3t-4242';
const OUT = `out-token=${SECRET}`;
let url: string;
let dir: string;
let browser: Browser;
let worker: Proc;
let page: Page;
let members: Map<string, string[]>;

beforeAll(async () => {
  const shop = await fixtureShop(inject('redisUrl'), { yaml: `console: { time_zone: ${ZONE} }`, out: OUT });
  dir = shop.dir;
  members = shop.members;
  url = (await serve(['serve', '--port', '0'], shop.dir, inject('redisUrl'))).url;
  worker = run(['worker'], { cwd: shop.dir, env: { ...shop.env, LOG_LEVEL: 'info', CI: 'true' } });
  await worker.waitFor(/"msg":"worker started"/);
  browser = await launchChromium();
  page = await loggedInPage(browser, url, 'otto');
});

afterAll(async () => {
  await browser?.close();
  killAll();
});

const audiencePage = (segment: string) =>
  `/destinations/local/audiences/${encodeURIComponent(`RFM: ${segment}`)}`;

/** A moment as the console should show it in Kathmandu, worked out by hand: UTC plus 5 h 45 min. */
function inKathmandu(iso: string): string {
  const t = new Date(Date.parse(iso) + (5 * 60 + 45) * 60_000);
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const h = t.getUTCHours();
  const two = (n: number) => String(n).padStart(2, '0');
  return `${months[t.getUTCMonth()]} ${t.getUTCDate()}, ${t.getUTCFullYear()}, ${h % 12 || 12}:${two(t.getUTCMinutes())}:${two(t.getUTCSeconds())} ${h < 12 ? 'AM' : 'PM'} GMT+5:45`;
}

/** Follows a job the API started until it ends. */
async function ended(jobUrl: string): Promise<{ state: string }> {
  let job: { state: string } = { state: '' };
  await poll(async () => {
    job = (await (await page.request.get(`${url}${jobUrl}`)).json()) as { state: string };
    return ['completed', 'failed'].includes(job.state);
  }).toBe(true);
  return job;
}

describe('as an operator', () => {
  it('says which time zone times are shown in: the session names it, the pages use it', async () => {
    const session = (await (await page.request.get(`${url}/api/v1/session`)).json()) as { time_zone: string };
    expect(session.time_zone).toBe(ZONE);
    const [segment] = [...members.keys()];
    await page.goto(`${url}${audiencePage(segment!)}`);
    const health = (await (await page.request.get(`${url}/api/v1${audiencePage(segment!)}`)).json()) as {
      lastRun: { at: string };
    };
    await poll(() => page.locator('.facts').innerText()).toContain(
      `Last run\n${inKathmandu(health.lastRun.at)}`,
    );
    const { csv } = await expectCsvEqualsTable(page, /^Runs of /, ZONE);
    expect(csv[0]![0]).toBe(health.lastRun.at);
  });

  it('warns that an audience diverges, with its numbers, when its platform loses its members', async () => {
    // The segment with the most customers: its band is wider than the smallest one (10 members).
    const [segment, ids] = [...members].sort((a, b) => b[1].length - a[1].length)[0]!;
    const n = ids.length;
    expect(n).toBeGreaterThan(10);
    // Someone empties the audience on the "platform": its member file keeps only its header.
    const out = path.join(dir, OUT);
    const file = readdirSync(out)
      .filter((f) => f.endsWith('.members'))
      .find((f) =>
        readFileSync(path.join(out, f), 'utf8').startsWith(`# audience-sync file audience: RFM: ${segment};`),
      )!;
    const text = readFileSync(path.join(out, file), 'utf8');
    writeFileSync(path.join(out, file), text.slice(0, text.indexOf('\n') + 1));

    await page.goto(`${url}/`);
    await page.getByRole('button', { name: /Read local.s sizes now/ }).click();
    await poll(() => page.getByRole('status').innerText()).toMatch(/\(job admin:\d+\)/);
    const job = /\(job (admin:\d+)\)/.exec(await page.getByRole('status').innerText())![1]!;
    expect((await ended(`/api/v1/jobs/${job}`)).state).toBe('completed');

    await page.goto(`${url}${audiencePage(segment)}`);
    const warning = page.locator('p.warning[role=alert]');
    await poll(() => warning.count()).toBe(1);
    const health = (await (await page.request.get(`${url}/api/v1${audiencePage(segment)}`)).json()) as {
      divergence: { since: string };
    };
    // The file counts one identifier (the email) per member: a ratio of 1, a band of ± max(20 %, 10).
    const slack = Math.max(0.2 * n, 10);
    expect(await warning.innerText()).toBe(
      `Diverging since ${inKathmandu(health.divergence.since)}: the platform counts 0 where ${n} members were sent (${n} expected); the band is ${Math.max(0, Math.floor(n - slack))} to ${Math.ceil(n + slack)} (from earlier readings, ±20%), and the platform may take 0 minutes to show an upload.`,
    );
    await poll(() => page.locator('.badge.diverging').first().innerText()).toBe('Diverging');
    await page.goto(`${url}/`);
    await poll(() => page.getByRole('list', { name: 'Audiences by status' }).innerText()).toMatch(
      /1\s+Diverging/,
    );
  });

  it('shows a failed run with its error, scrubbed, in the history and among the failed runs', async () => {
    const segment = [...members.keys()].at(-1)!;
    // The destination's change log becomes a folder: the next run cannot open it.
    const log = path.join(dir, OUT, 'changes.jsonl');
    rmSync(log);
    mkdirSync(log);
    await page.goto(`${url}${audiencePage(segment)}`);
    await page.getByRole('button', { name: 'Resync', exact: true }).click();
    await page.getByRole('dialog', { name: 'Resync?' }).getByRole('button', { name: 'Resync' }).click();
    // The run is recorded failed at its first attempt (the job may go on retrying).
    await poll(async () => {
      await page.reload();
      const { table } = await tableOf(page, /^Runs of /);
      const { head, body } = await cellsOf(table);
      return body[0]?.[head.indexOf('Outcome')];
    }).toBe('failed');
    const { head, body } = await expectCsvEqualsTable(page, /^Runs of /, ZONE);
    const error = body[0]![head.indexOf('Error')]!;
    // The path's credential-like part is cut, up to the quote that ends it.
    expect(error).toBe(`EISDIR: illegal operation on a directory, open '${dir}/out-token=[redacted]'`);
    expect(error).not.toContain(SECRET);
    await poll(() => page.locator('p.error[role=alert]').first().innerText()).toBe(
      `The last run failed: ${error}`,
    );

    await page.goto(`${url}/runs?status=failed`);
    const failed = await expectCsvEqualsTable(page, /^Failed runs/, ZONE);
    const col = (name: string) => failed.head.indexOf(name);
    expect(failed.body).toHaveLength(1);
    expect(failed.body[0]![col('Audience')]).toBe(`RFM: ${segment}`);
    expect(failed.body[0]![col('Error')]).toBe(error);
    expect(await page.getByRole('main').innerText()).not.toContain(SECRET);
  });

  it('shows what the platform says will keep an audience from serving as a failed health check, in its words', async () => {
    // Neither the largest segment (diverging above) nor the last (its run failed above).
    const sorted = [...members].sort((a, b) => b[1].length - a[1].length).map(([s]) => s);
    const segment = sorted.find((s) => s !== sorted[0] && s !== [...members.keys()].at(-1))!;
    const problem =
      "flagged by Meta (operation_status 471: The custom audience or lookalike is blocked because it suggests the use of information (e.g., health, financial) not allowed under Meta's terms)";
    const redis = new Redis(inject('redisUrl'));
    try {
      await recordReadings(
        redis,
        queuePrefix(`test-${path.basename(dir)}`),
        [
          {
            destination: 'local',
            audience: `RFM: ${segment}`,
            reading: readingOf(
              { warnings: [], problems: [problem] },
              { expected: null, counts: undefined },
              'schedule',
              new Date(),
            ),
          },
        ],
        { keepDays: 1, keepSamples: 10 },
      );
    } finally {
      redis.disconnect();
    }
    await page.goto(`${url}${audiencePage(segment)}`);
    await poll(() => page.locator('p.error[role=alert]').first().innerText()).toBe(
      `The platform will not serve this audience: ${problem}`,
    );
    await poll(() => page.locator('.badge.failed').first().innerText()).toBe('Failed');
  });
});

it('broke no part of the Content-Security-Policy, and logged no unexpected error', () => {
  expect(seen.violations).toEqual([]);
  expect(seen.consoleErrors).toEqual([]);
});
