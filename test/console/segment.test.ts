import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { serve } from '../api/harness.js';
import { killAll } from '../jobs/procs.js';
import {
  launchChromium,
  loggedInPage,
  DATES,
  expectCsvEqualsTable,
  fixtureShop,
  logIn,
  newContext,
  painted,
  poll,
  seen,
  tableOf,
} from './browser.js';

/** The segment page in Chromium, against the R reference's segments of the fixture on the later date. */

const SEGMENT = 'Need Attention';
const PAGE = `/segments/${encodeURIComponent(SEGMENT)}`;
let url: string;
let browser: Browser;
let members: string[];
let codes: Set<string>;

beforeAll(async () => {
  const shop = await fixtureShop(inject('redisUrl'));
  members = shop.members.get(SEGMENT)!;
  codes = shop.codes.get(SEGMENT)!;
  url = (await serve(['serve', '--port', '0'], shop.dir, inject('redisUrl'))).url;
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  killAll();
});

/** The focused element, as far as these tests read it (the tests are typed without the DOM's types). */
interface Focus {
  document: {
    activeElement: { tagName: string; innerText: string; getAttribute(name: string): string | null } | null;
  };
}

const idsIn = (text: string) => text.match(/cust_\d+/g) ?? [];

describe('as an operator', () => {
  let page: Page;
  beforeAll(async () => {
    page = await loggedInPage(browser, url, 'otto');
  });

  it("opens from the overview's card, with its definition holding every code R put in it", async () => {
    await page.getByRole('link', { name: SEGMENT, exact: true }).click();
    await poll(async () => page.url()).toBe(`${url}${PAGE}`);
    await poll(() => page.getByRole('heading', { level: 1 }).innerText()).toBe(SEGMENT);
    const shown = new Set((await page.locator('.codes').innerText()).split(', '));
    for (const code of codes) expect(shown.has(code), code).toBe(true);
    await poll(() => page.locator('.facts').innerText()).toContain(`${members.length} on ${DATES[1]}`);
    await poll(() => page.locator('.action').count()).toBe(1);
  });

  it('charts its size at each snapshot, with the same numbers in the table and CSV', async () => {
    await poll(() => painted(page.locator('[data-chart*="customers at each snapshot"]'))).toBeGreaterThan(
      500,
    );
    const { body } = await expectCsvEqualsTable(page, /: size from /);
    expect(body.map((r) => r[0])).toEqual([...DATES]);
    expect(body[1]![1]).toBe(String(members.length));
  });

  it('counts where its customers came from: together, every customer it has now', async () => {
    const { head, body } = await expectCsvEqualsTable(page, /: movement from /);
    const came = body.filter((r) => r[head.indexOf('Direction')] === 'came from');
    const total = came.reduce((s, r) => s + Number(r[head.indexOf('Customers')]!.replace(/,/g, '')), 0);
    expect(total).toBe(members.length);
    // Orders only accumulate between the dates: nobody is gone.
    expect(body.some((r) => r[head.indexOf('Segment')] === 'gone')).toBe(false);
  });

  it('lists its audiences with their status, linked to their pages', async () => {
    const link = page.getByRole('link', { name: `RFM: ${SEGMENT} on local` });
    await poll(() => link.getAttribute('href')).toBe(
      `/destinations/local/audiences/${encodeURIComponent(`RFM: ${SEGMENT}`)}`,
    );
    await expectCsvEqualsTable(page, `Audiences of ${SEGMENT}`);
  });

  it("shows a sample of its customers and of a movement cell's, all R's members of it", async () => {
    const sample = page.getByLabel('Customer ids');
    await poll(async () => idsIn(await sample.innerText()).length).toBe(Math.min(20, members.length));
    for (const id of idsIn(await sample.innerText())) expect(members).toContain(id);

    const buttons = page.getByRole('button', { name: /^Sample from / });
    await poll(() => buttons.count()).toBeGreaterThan(0);
    await buttons.first().click();
    const status = page.locator('.sample[role=status]');
    await poll(async () => idsIn(await status.innerText()).length).toBeGreaterThan(0);
    for (const id of idsIn(await status.innerText())) expect(members).toContain(id);
  });

  it("opens from a cell of the overview's movement table, with that cell's period", async () => {
    await page.goto(`${url}/`);
    const { table } = await tableOf(page, `Movement from ${DATES[0]} to ${DATES[1]}`);
    const column = (await table.locator('thead th').allInnerTexts()).indexOf(SEGMENT);
    const row = table.locator('tbody tr', { has: page.locator('th', { hasText: /^new$/ }) });
    await row.locator('> *').nth(column).getByRole('link').click();
    await poll(async () => page.url()).toBe(`${url}${PAGE}?from=${DATES[0]}&to=${DATES[1]}`);
    await poll(() => page.getByLabel('From', { exact: true }).inputValue()).toBe(DATES[0]);
    const { head, body } = await expectCsvEqualsTable(page, /: movement from /);
    const came = body.filter((r) => r[head.indexOf('Direction')] === 'came from');
    const total = came.reduce((s, r) => s + Number(r[head.indexOf('Customers')]!.replace(/,/g, '')), 0);
    expect(total).toBe(members.length);
  });

  it('opens from a movement cell reached by the keyboard alone: Tab to its table, Enter, Tab to the cell, Enter', async () => {
    await page.goto(`${url}/`);
    const heatmap = page.getByRole('img', {
      name: `Movement between segments from ${DATES[0]} to ${DATES[1]}`,
    });
    await poll(() => painted(heatmap)).toBeGreaterThan(500);
    const focused = () =>
      page.evaluate(() => {
        const el = (globalThis as unknown as Focus).document.activeElement;
        return { tag: el?.tagName ?? '', text: el?.innerText ?? '', href: el?.getAttribute('href') ?? '' };
      });
    /** Presses Tab until the focused element is the one wanted (a bound only against a page that has none). */
    const tabTo = async (wanted: (f: Awaited<ReturnType<typeof focused>>) => boolean) => {
      for (let k = 0; k < 300; k++) {
        await page.keyboard.press('Tab');
        if (wanted(await focused())) return;
      }
      throw new Error('Tab never reached it');
    };
    await tabTo((f) => f.tag === 'SUMMARY' && f.text === `Table: Movement from ${DATES[0]} to ${DATES[1]}`);
    await page.keyboard.press('Enter');
    const cell = `${PAGE}?${new URLSearchParams({ from: DATES[0], to: DATES[1] })}`;
    await tabTo((f) => f.tag === 'A' && f.href === cell);
    await page.keyboard.press('Enter');
    await poll(async () => page.url()).toBe(`${url}${cell}`);
    await poll(() => page.getByRole('heading', { level: 1 }).innerText()).toBe(SEGMENT);
    await poll(() => page.getByLabel('From', { exact: true }).inputValue()).toBe(DATES[0]);
    // Its own chart is named for a screen reader too.
    await poll(() => page.getByRole('img', { name: /customers at each snapshot/ }).count()).toBe(1);
  });

  it('keeps a chosen period in the address', async () => {
    await page.goto(`${url}${PAGE}?from=${DATES[1]}`);
    await poll(() => page.getByLabel('From', { exact: true }).inputValue()).toBe(DATES[1]);
    await poll(() =>
      page
        .locator('table', { has: page.locator('caption', { hasText: /: size from / }) })
        .locator('tbody tr')
        .count(),
    ).toBe(1);
  });

  it('says there is no such segment when asked for one that is not, naming it and linking the others', async () => {
    // The server answers 404 too, so a link checker or a proxy's log tells it apart.
    expect((await page.goto(`${url}/segments/Nobody`))?.status()).toBe(404);
    expect((await page.goto(`${url}${PAGE}`))?.status()).toBe(200);
    await page.goto(`${url}/segments/Nobody`);
    await poll(() => page.getByRole('heading', { level: 1 }).innerText()).toBe('No such segment');
    expect(await page.title()).toBe('No such segment · audience-sync');
    await poll(() => page.getByRole('alert').innerText()).toContain('There is no segment named “Nobody”');
    const links = page.getByRole('list', { name: 'Segments' }).getByRole('link');
    expect(await links.count()).toBe(11);
    expect(await page.getByRole('link', { name: SEGMENT, exact: true }).getAttribute('href')).toBe(PAGE);
    // Nothing of a segment's page is shown for it.
    expect(await page.getByRole('heading', { level: 2 }).count()).toBe(0);
    expect(await page.getByRole('form', { name: 'Period' }).count()).toBe(0);
  });
});

describe('as a viewer', () => {
  it('sees no customer ids, and the server refuses them', async () => {
    const page = await (await newContext(browser, { width: 390, height: 844 })).newPage();
    await page.goto(`${url}${PAGE}`);
    await logIn(page, 'vera');
    await poll(async () => page.url()).toBe(`${url}${PAGE}`);
    await poll(() => page.getByRole('heading', { name: 'Audiences' }).isVisible()).toBe(true);
    expect(await page.locator('button.operator').count()).toBe(0);
    expect(await page.getByLabel('Customer ids').count()).toBe(0);
    expect(await page.locator('html').evaluate((html) => html.scrollWidth)).toBeLessThanOrEqual(390);
    expect(
      (await page.request.get(`${url}/api/v1/segments/${encodeURIComponent(SEGMENT)}/sample`)).status(),
    ).toBe(403);
  });
});

it('broke no part of the Content-Security-Policy, and logged no unexpected error', () => {
  expect(seen.violations).toEqual([]);
  // Provoked: the forged POST's 403, and the unknown segment's page, which is a 404.
  const provoked = (e: string) => /status of 403/.test(e) || /\/segments\/Nobody: .*status of 404/.test(e);
  expect(seen.consoleErrors.filter((e) => !provoked(e))).toEqual([]);
});
