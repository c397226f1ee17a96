import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { serve } from '../api/harness.js';
import { killAll } from '../jobs/procs.js';
import {
  DATES,
  expectCsvEqualsTable,
  fixtureShop,
  launchChromium,
  logIn,
  newContext as recordingContext,
  painted,
  poll,
  seen,
} from './browser.js';

/**
 * The web console in Debian's Chromium, against `audience-sync serve`, real Redis and two snapshots of the
 * R reference's fixture (orders_basic): sizes are checked against the R package's own segments for it.
 */

const CSP_PARTS = ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"];

/** Segment → customers on 2026-01-01, as the R reference's rfm package segmented the fixture. */
let expected: Map<string, number>;
/** Segment → customers on 2025-12-01, from `score`'s output. */
let early: Map<string, number>;
let url: string;
let browser: Browser;
/** Every CSP violation and console error of every page (`seen`), and every response that lacked the policy. */
const { violations, consoleErrors } = seen;
const withoutCsp: string[] = [];
/** The browser's window, as far as these tests read it (the tests are typed without the DOM's types). */
interface Styles {
  getComputedStyle(el: unknown): { backgroundColor: string };
}

beforeAll(async () => {
  const shop = await fixtureShop(inject('redisUrl'));
  expected = new Map([...shop.members].map(([segment, ids]) => [segment, ids.length]));
  early = shop.early;
  url = (await serve(['serve', '--port', '0'], shop.dir, inject('redisUrl'))).url;
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  killAll();
});

/** A browser context (its own cookies) that records violations, console errors and responses without CSP. */
async function newContext(viewport = { width: 1280, height: 900 }): Promise<BrowserContext> {
  const context = await recordingContext(browser, viewport);
  context.on('response', (r) => {
    const csp = r.headers()['content-security-policy'] ?? '';
    if (!CSP_PARTS.every((p) => csp.includes(p))) withoutCsp.push(`${r.status()} ${r.url()}`);
  });
  return context;
}

describe('as an operator', () => {
  let page: Page;
  beforeAll(async () => {
    page = await (await newContext()).newPage();
  });

  it('sends a visitor who is not logged in to the login page, and back to the page they asked for', async () => {
    await page.goto(`${url}/?from=2025-01-01`);
    await poll(async () => page.url()).toBe(`${url}/login?next=${encodeURIComponent('/?from=2025-01-01')}`);
    await poll(() => page.getByRole('heading', { level: 1 }).innerText()).toBe('Log in');
    await page.getByLabel('User name', { exact: true }).fill('otto');
    await page.getByLabel('Password', { exact: true }).fill('not-the-password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await poll(() => page.getByRole('alert').innerText()).toContain('wrong user name or password');
    await logIn(page, 'otto');
    await poll(async () => page.url()).toBe(`${url}/?from=2025-01-01`);
    await poll(() => page.getByRole('heading', { level: 1 }).innerText()).toBe('Overview');
    await poll(() => page.getByLabel('From', { exact: true }).inputValue()).toBe('2025-01-01');
  });

  it("shows each segment's size as R's rfm package counts it, on the cards and in the table", async () => {
    await page.goto(`${url}/`);
    const cards = page.locator('.cards > li');
    await poll(() => cards.count()).toBe(11);
    const shown = new Map<string, number>();
    for (const card of await cards.all())
      shown.set(
        await card.getByRole('heading').innerText(),
        Number((await card.locator('.size').innerText()).replace(/\D/g, '')),
      );
    const all = [...shown.keys()];
    expect(new Map(all.map((s) => [s, expected.get(s) ?? 0]))).toEqual(shown);
    expect([...expected.keys()].every((s) => shown.has(s))).toBe(true);

    const { body } = await expectCsvEqualsTable(page, `Segments on ${DATES[1]}`);
    expect(new Map(body.map((r) => [r[0]!, Number(r[1]!.replace(/,/g, ''))]))).toEqual(shown);
  });

  it('draws the trend with one point per snapshot, and the movement heatmap with counts on hover', async () => {
    const trend = page.locator('[data-chart^="Segment sizes at each snapshot"]');
    const heatmap = page.locator('[data-chart^="Movement between segments"]');
    const sparks = page.locator('.chart.spark');
    await poll(() => sparks.count()).toBe(11);
    for (const chart of [trend, heatmap, sparks.first()])
      await poll(() => painted(chart)).toBeGreaterThan(500);

    const sizes = await expectCsvEqualsTable(page, /^Segment sizes from/);
    expect(sizes.body.map((r) => r[0])).toEqual([...DATES]);
    const latest = sizes.body[1]!;
    sizes.head
      .slice(1)
      .forEach((segment, k) =>
        expect(Number(latest[k + 1]!.replace(/,/g, '')), segment).toBe(expected.get(segment) ?? 0),
      );

    // Each column of the matrix sums to the segment's size now (nobody is gone: orders only accumulate).
    const movement = await expectCsvEqualsTable(page, `Movement from ${DATES[0]} to ${DATES[1]}`);
    expect(movement.body[0]![0]).toBe('new');
    movement.head.slice(1).forEach((to, k) => {
      const sum = movement.body.reduce((s, row) => s + Number(row[k + 1]!.replace(/,/g, '')), 0);
      expect(sum, to).toBe(to === 'gone' ? 0 : (expected.get(to) ?? 0));
    });

    // Somewhere inside each plot (hover scrolls the chart into view first).
    await heatmap.hover({ position: { x: (await heatmap.boundingBox())!.width * 0.6, y: 200 } });
    await poll(() => heatmap.innerText()).toMatch(/→ .+: \d+ customers/);
    await trend.hover({ position: { x: (await trend.boundingBox())!.width * 0.8, y: 250 } });
    await poll(() => trend.innerText()).toContain(DATES[1]);
  });

  it("shows the destination's health from one request, and lets an operator ask for the platform's sizes", async () => {
    const asked: string[] = [];
    page.on('request', (r) => asked.push(new URL(r.url()).pathname));
    await page.reload();
    await poll(() => page.getByRole('list', { name: 'Audiences by status' }).innerText()).toContain(
      'In sync',
    );
    const health = await expectCsvEqualsTable(page, 'Audiences on each destination');
    expect(health.body).toHaveLength(11);
    expect(asked.filter((p) => p.startsWith('/api/v1/audiences'))).toEqual(['/api/v1/audiences']);
    expect(asked.filter((p) => /^\/api\/v1\/destinations\/.+\/audiences\//.test(p))).toEqual([]);
    page.removeAllListeners('request');
    await page.getByRole('button', { name: /Read local.s sizes now/ }).click();
    await poll(() => page.getByRole('status').innerText()).toMatch(/Asked the workers .* \(job admin:\d+\)/);
  });

  it('shows the cards as of the period’s last snapshot, so a bookmarked address shows what it showed', async () => {
    const cardSizes = async () => {
      const shown = new Map<string, number>();
      for (const card of await page.locator('.cards > li').all())
        shown.set(
          await card.getByRole('heading').innerText(),
          Number((await card.locator('.size').innerText()).replace(/\D/g, '')),
        );
      return shown;
    };
    // A period ending between the two snapshots shows the first one's sizes, with no change yet.
    for (const to of [DATES[0], '2025-12-31']) {
      await page.goto(`${url}/?to=${to}`);
      await poll(() => page.locator('#segments-title ~ p').first().innerText()).toContain(
        `scored as of ${DATES[0]}`,
      );
      await poll(() => page.locator('.cards > li').count()).toBe(11);
      const shown = await cardSizes();
      expect(shown).toEqual(new Map([...shown.keys()].map((s) => [s, early.get(s) ?? 0])));
      expect([...early.keys()].every((s) => shown.has(s))).toBe(true);
      expect(await page.locator('.cards').innerText()).not.toContain(' since ');
      await poll(() => page.locator('#movement-title + p').innerText()).toBe(
        `The first snapshot (${DATES[0]}) has no earlier one to count movement from.`,
      );
    }
    // The later snapshot: the change on each card is the difference of the two snapshots.
    await page.goto(`${url}/?to=${DATES[1]}`);
    await poll(() => page.locator('.cards > li').count()).toBe(11);
    const { head, body } = await expectCsvEqualsTable(page, `Segments on ${DATES[1]}`);
    for (const row of body) {
      const segment = row[0]!;
      const change = (expected.get(segment) ?? 0) - (early.get(segment) ?? 0);
      expect(Number(row[head.indexOf('Change')]!.replace(/[,+]/g, '')), segment).toBe(change);
    }
  });

  it('gives each segment a colour of its own, in the light and in the dark theme', async () => {
    const colours = async () => {
      await page.goto(`${url}/`);
      await poll(() => page.locator('.cards > li .swatch').count()).toBe(11);
      return page
        .locator('.cards > li .swatch')
        .evaluateAll((els) =>
          els.map((el) => (globalThis as unknown as Styles).getComputedStyle(el).backgroundColor),
        );
    };
    const light = await colours();
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = await colours();
    await page.emulateMedia({ colorScheme: 'light' });
    for (const set of [light, dark]) {
      expect(new Set(set).size).toBe(11);
      expect(set.every((c) => /^rgb\(/.test(c))).toBe(true);
    }
    expect(dark).not.toEqual(light);
  });

  it('fits a phone screen without scrolling sideways', async () => {
    for (const width of [1280, 390]) {
      await page.setViewportSize({ width, height: 844 });
      await page.goto(`${url}/`);
      await poll(() => page.locator('.cards > li').count()).toBe(11);
      await poll(() => page.getByRole('list', { name: 'Audiences by status' }).isVisible()).toBe(true);
      expect(
        await page.locator('html').evaluate((html) => html.scrollWidth),
        `at ${width}px`,
      ).toBeLessThanOrEqual(width);
    }
  });

  it('keeps the period in the address, and says what is wrong with a bad one', async () => {
    await page.goto(`${url}/?from=${DATES[1]}`);
    const sizes = page.locator('table', { has: page.locator('caption', { hasText: /^Segment sizes from/ }) });
    await poll(() => sizes.locator('tbody tr').count()).toBe(1);
    await page.goto(`${url}/?from=yesterday`);
    await poll(() => page.locator('#trend-title + [role=alert]').innerText()).toMatch(
      /from: expected a date as YYYY-MM-DD/,
    );
  });

  it('logs out: the overview then sends the visitor to log in, and the session no longer works', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await poll(async () => page.url()).toBe(`${url}/login`);
    expect((await page.request.get(`${url}/api/v1/session`)).status()).toBe(401);
    await page.goto(`${url}/`);
    await poll(async () => page.url()).toBe(`${url}/login`);
  });

  it('answers an unknown page with a 404 page that says so', async () => {
    const response = await page.goto(`${url}/no/such/page?x=1`);
    expect(response!.status()).toBe(404);
    await poll(() => page.getByRole('heading', { level: 1 }).innerText()).toBe('Page not found');
    await poll(() => page.getByRole('main').innerText()).toContain('There is no page at /no/such/page');
    await poll(() => page.getByRole('link', { name: 'overview' }).getAttribute('href')).toBe('/');

    // A control: markup with an inline style is refused, and the test hears of it twice (then forgets it).
    const before = violations.length;
    const errorsBefore = consoleErrors.length;
    await page
      .locator('main')
      .evaluate((main) => main.insertAdjacentHTML('beforeend', '<p style="color: red">x</p>'));
    await poll(async () => violations.length).toBe(before + 1);
    expect(violations.splice(before)[0]).toMatch(/^style-src/);
    await poll(async () => consoleErrors.length).toBe(errorsBefore + 1);
    expect(consoleErrors.splice(errorsBefore)[0]).toMatch(
      /inline style violates the .*Content Security Policy/,
    );
  });
});

describe('as a viewer', () => {
  it('sees no operator buttons, and the server refuses a forged action', async () => {
    const page = await (await newContext({ width: 390, height: 844 })).newPage();
    await page.goto(`${url}/login`);
    await logIn(page, 'vera');
    await poll(async () => page.url()).toBe(`${url}/`);
    await poll(() => page.getByRole('list', { name: 'Audiences by status' }).isVisible()).toBe(true);
    await poll(() => page.locator('.cards > li').count()).toBe(11);
    await poll(() => page.getByText('vera (viewer)').isVisible()).toBe(true);
    await poll(() => page.locator('button.operator').count()).toBe(0);
    await poll(() => page.getByRole('button', { name: /sizes now/ }).count()).toBe(0);
    const csrf = await page.evaluate(
      async () => ((await (await fetch('/api/v1/session')).json()) as { csrf_token: string }).csrf_token,
    );
    const forged = await page.request.post(`${url}/api/v1/destinations/local/stats`, {
      headers: { 'x-csrf-token': csrf },
    });
    expect(forged.status()).toBe(403);
  });
});

it('sent the Content-Security-Policy with every response, and the pages broke none of it', () => {
  expect(withoutCsp).toEqual([]);
  expect(violations).toEqual([]);
  // The browser reports the answers it was meant to get: 401 for the wrong password, 404 for the unknown
  // page, 400 for the bad period. A visitor who is not logged in is sent to log in by the server, before
  // the page asks the API anything, so no other 401 shows.
  const unexpected = consoleErrors.filter(
    (e) =>
      !/\/api\/v1\/session: Failed to load resource: the server responded with a status of 401/.test(e) &&
      !/\/no\/such\/page(\?x=1)?: Failed to load resource: the server responded with a status of 404/.test(
        e,
      ) &&
      !/from=yesterday: Failed to load resource: the server responded with a status of 400/.test(e),
  );
  expect(unexpected).toEqual([]);
});
