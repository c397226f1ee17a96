import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { serve } from '../api/harness.js';
import { killAll, run, type Proc } from '../jobs/procs.js';
import {
  launchChromium,
  loggedInPage,
  expectCsvEqualsTable,
  fixtureShop,
  logIn,
  newContext,
  painted,
  poll,
  seen,
  tableOf,
  cellsOf,
} from './browser.js';

/**
 * The audience page in Chromium: its run history against the runs this test made (a CLI sync, then a
 * resync through the page, carried out by a real worker), sizes from the R reference's segments.
 */

const SEGMENT = 'Need Attention';
const AUDIENCE = `RFM: ${SEGMENT}`;
const PAGE = `/destinations/local/audiences/${encodeURIComponent(AUDIENCE)}`;
let url: string;
let browser: Browser;
let worker: Proc;
let size: number;

beforeAll(async () => {
  const shop = await fixtureShop(inject('redisUrl'));
  size = shop.members.get(SEGMENT)!.length;
  url = (await serve(['serve', '--port', '0'], shop.dir, inject('redisUrl'))).url;
  worker = run(['worker'], { cwd: shop.dir, env: { ...shop.env, LOG_LEVEL: 'info', CI: 'true' } });
  await worker.waitFor(/"msg":"worker started"/);
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  killAll();
});

const runRows = async (page: Page) => (await cellsOf((await tableOf(page, /^Runs of /)).table)).body;

describe('as an operator', () => {
  let page: Page;
  beforeAll(async () => {
    page = await loggedInPage(browser, url, 'otto');
  });

  it('is linked from the overview, and shows the run the CLI made', async () => {
    await page.getByRole('link', { name: `${AUDIENCE} on local` }).click();
    await poll(async () => page.url()).toBe(`${url}${PAGE}`);
    await poll(() => page.getByRole('heading', { level: 1 }).innerText()).toBe(`${AUDIENCE} on local`);
    await poll(() => runRows(page).then((r) => r.length)).toBe(1);
    const { head, body } = await expectCsvEqualsTable(page, /^Runs of /);
    const row = Object.fromEntries(head.map((h, k) => [h, body[0]![k]]));
    // Every customer of the segment has an email and no opt-out: the first sync added them all.
    expect(row).toMatchObject({ Why: 'cli', Outcome: 'completed', Added: String(size), Removed: '0' });
    await poll(() => page.locator('.facts').innerText()).toContain(`Expected\n${size}`);
  });

  it("charts the platform's readings, with their table and CSV", async () => {
    const chart = page.locator('[data-chart*="at each reading"]');
    await poll(() => painted(chart)).toBeGreaterThan(500);
    const { body } = await expectCsvEqualsTable(page, /^Readings of /);
    expect(body.length).toBeGreaterThanOrEqual(1);
    // The file destination counts the identifiers it holds: one email per member.
    expect(body.at(-1)!.slice(1, 4)).toEqual([String(size), String(size), String(size)]);
  });

  it('asks before a resync, then follows its job to the end and shows the new run on top', async () => {
    await page.getByRole('button', { name: 'Resync', exact: true }).click();
    const dialog = page.getByRole('dialog', { name: 'Resync?' });
    await poll(() => dialog.isVisible()).toBe(true);
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await poll(() => dialog.isVisible()).toBe(false);
    expect(await page.getByRole('status').innerText()).toBe('');
    // Escape closes it too, and nothing is asked of the workers.
    await page.getByRole('button', { name: 'Resync', exact: true }).click();
    await poll(() => dialog.isVisible()).toBe(true);
    await page.keyboard.press('Escape');
    await poll(() => dialog.isVisible()).toBe(false);
    expect(await page.getByRole('status').innerText()).toBe('');
    expect(await runRows(page).then((r) => r.length)).toBe(1);

    await page.getByRole('button', { name: 'Resync', exact: true }).click();
    await dialog.getByRole('button', { name: 'Resync' }).click();
    await poll(() => page.getByRole('status').innerText()).toMatch(/^Resync: completed \(job sync:\d+\)/);
    await poll(() => runRows(page).then((r) => r.length)).toBe(2);
    const { head, body } = await expectCsvEqualsTable(page, /^Runs of /);
    const top = Object.fromEntries(head.map((h, k) => [h, body[0]![k]]));
    expect(top).toMatchObject({ Why: 'resync', Outcome: 'completed', Added: '0', Removed: '0' });
    expect(body[1]![head.indexOf('Why')]).toBe('cli');
  });

  it('pauses and resumes the destination, and runs its check, each through a worker', async () => {
    await page.getByRole('button', { name: 'Pause', exact: true }).click();
    await page.getByRole('dialog', { name: 'Pause?' }).getByRole('button', { name: 'Pause' }).click();
    await poll(() => page.getByRole('status').innerText()).toMatch(/^Pause: completed/);
    await poll(() => page.locator('.badge.paused').isVisible()).toBe(true);
    await page.getByRole('button', { name: 'Resume', exact: true }).click();
    await page.getByRole('dialog', { name: 'Resume?' }).getByRole('button', { name: 'Resume' }).click();
    await poll(() => page.getByRole('status').innerText()).toMatch(/^Resume: completed/);
    await poll(() => page.locator('.badge.paused').count()).toBe(0);
    await page.getByRole('button', { name: 'Check', exact: true }).click();
    await page.getByRole('dialog', { name: 'Check?' }).getByRole('button', { name: 'Check' }).click();
    await poll(() => page.getByRole('status').innerText()).toMatch(/^Check: completed .*ok/);
  });

  it('lists the runs across destinations, newest first, and the failed ones apart', async () => {
    await page.getByRole('link', { name: 'Runs', exact: true }).click();
    await poll(async () => page.url()).toBe(`${url}/runs`);
    const caption = 'Recent runs across destinations, newest first';
    await poll(() => page.locator('caption', { hasText: caption }).count()).toBe(1);
    const { head, body } = await expectCsvEqualsTable(page, caption);
    const col = (name: string) => head.indexOf(name);
    // The CLI's sync ran every segment's audience once (the fixture has all eleven), then the page's resync one.
    expect(body).toHaveLength(11 + 1);
    expect([body[0]![col('Audience')], body[0]![col('Why')]]).toEqual([AUDIENCE, 'resync']);
    expect(body.slice(1).every((r) => r[col('Why')] === 'cli')).toBe(true);
    await page.getByRole('link', { name: 'Failed runs' }).click();
    await poll(async () => page.url()).toBe(`${url}/runs?status=failed`);
    await poll(() => page.getByRole('main').innerText()).toContain('No run has failed.');
  });

  it('shows the BullMQ queues on the queue board, refusing only its Google Fonts stylesheet', async () => {
    const before = seen.violations.length;
    await page.goto(`${url}/admin/queues`);
    await poll(() =>
      page
        .getByRole('link', { name: /^admin/i })
        .first()
        .isVisible(),
    ).toBe(true);
    await poll(() => page.getByRole('link', { name: /^sync/i }).first().isVisible()).toBe(true);
    // Nothing is loaded from elsewhere: the board's web font is refused, everything else is allowed.
    const board = seen.violations.splice(before);
    expect(board.map((v) => v.replace(/ at .*/, ''))).toEqual([
      expect.stringMatching(/^style-src-elem blocked https:\/\/fonts\.googleapis\.com\//),
    ]);
    const fonts = seen.consoleErrors.findIndex((e) => e.includes('fonts.googleapis.com'));
    if (fonts >= 0) seen.consoleErrors.splice(fonts, 1);

    // Read-only, even from its own page; and a change from elsewhere is refused before it reaches the board.
    const fromPage = await page.evaluate(
      async () => (await fetch('api/queues/sync/pause', { method: 'PUT' })).status,
    );
    expect(fromPage).toBe(405);
    const forged = await page.request.put(`${url}/admin/queues/api/queues/sync/pause`);
    expect(forged.status()).toBe(403);
    expect(((await forged.json()) as { error: string }).error).toBe('csrf');
  });

  it("shows the API's message for an audience that does not exist", async () => {
    await page.goto(`${url}/destinations/local/audiences/Nobody`);
    await poll(() => page.getByRole('alert').first().innerText()).toContain('Nobody');
  });
});

describe('as a viewer', () => {
  it('sees the history but no action buttons, and the server refuses a forged resync', async () => {
    const page = await (await newContext(browser, { width: 390, height: 844 })).newPage();
    await page.goto(`${url}${PAGE}`);
    await logIn(page, 'vera');
    await poll(async () => page.url()).toBe(`${url}${PAGE}`);
    await poll(() => runRows(page).then((r) => r.length)).toBe(2);
    expect(await page.locator('button.operator').count()).toBe(0);
    expect(await page.getByRole('heading', { name: 'Actions' }).count()).toBe(0);
    expect(await page.getByRole('link', { name: 'Runs', exact: true }).count()).toBe(0);
    expect(await page.locator('html').evaluate((html) => html.scrollWidth)).toBeLessThanOrEqual(390);
    const csrf = await page.evaluate(
      async () => ((await (await fetch('/api/v1/session')).json()) as { csrf_token: string }).csrf_token,
    );
    // The queue board refuses a viewer, as it refuses anyone not logged in.
    expect((await page.request.get(`${url}/admin/queues`)).status()).toBe(403);
    expect((await page.request.get(`${url}/admin/queues/api/queues`)).status()).toBe(403);
    expect((await fetch(`${url}/admin/queues/api/queues`)).status).toBe(401);
    const anonymous = await fetch(`${url}/admin/queues`, {
      headers: { accept: 'text/html' },
      redirect: 'manual',
    });
    expect([anonymous.status, anonymous.headers.get('location')]).toEqual([
      302,
      '/login?next=%2Fadmin%2Fqueues',
    ]);
    const forged = await page.request.post(`${url}/api/v1/destinations/local/resync`, {
      headers: { 'x-csrf-token': csrf },
      data: { audience: AUDIENCE },
    });
    expect(forged.status()).toBe(403);
  });
});

it('broke no part of the Content-Security-Policy, and logged no unexpected error', () => {
  expect(seen.violations).toEqual([]);
  expect(seen.consoleErrors.filter((e) => !/status of (404|405)/.test(e))).toEqual([]);
});
