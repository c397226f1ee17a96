import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import argon2 from 'argon2';
import { parse } from 'csv-parse/sync';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { expect } from 'vitest';
import { tempDir } from '../helpers.js';
import { USERS } from '../api/harness.js';
import { run } from '../jobs/procs.js';

/** What the console's browser tests share: a shop from the R reference's fixture, and reading pages. */

const FIXTURES = path.resolve('test/fixtures/rfm');
export const DATES = ['2025-12-01', '2026-01-01'] as const;
/** Waits for a value a page shows: the bound only catches a hung page, it is no speed target. */
export const poll = <T>(read: () => Promise<T>) => expect.poll(read, { timeout: 120_000, interval: 100 });

/**
 * The orders_basic fixture scored on two dates (the first by `score`, the second by `sync` to the file
 * destination `local`), users vera (viewer) and otto (operator); `expected` is segment → customers on the
 * second date as the R package's rfm segmented it: `members` segment → its customer ids, `codes` → its RFM codes;
 * `early` segment → customers on the first date.
 */
export async function fixtureShop(redisUrl: string, options: { yaml?: string; out?: string } = {}) {
  const dir = tempDir('audience-sync-console-');
  copyFileSync(path.join(FIXTURES, 'orders_basic.csv'), path.join(dir, 'orders.csv'));
  const rows = parse(readFileSync(path.join(FIXTURES, 'expected', 'orders_basic.default.csv')), {
    columns: true,
  }) as { customer_id: string; segment: string; rfm_code: string }[];
  const members = new Map<string, string[]>();
  const codes = new Map<string, Set<string>>();
  for (const r of rows) {
    members.set(r.segment, [...(members.get(r.segment) ?? []), r.customer_id]);
    codes.set(r.segment, (codes.get(r.segment) ?? new Set()).add(r.rfm_code));
  }
  writeFileSync(
    path.join(dir, 'profiles.csv'),
    [
      'customer_id,email,opted_out',
      ...rows.map((r) => `${r.customer_id},${r.customer_id}@example.test,false`),
    ].join('\n') + '\n',
  );
  const users = await Promise.all(
    (['vera', 'otto'] as const).map(
      async (name) =>
        `    - { name: ${name}, role: ${USERS[name].role}, password_hash: "${await argon2.hash(USERS[name].password, { type: argon2.argon2id })}" }`,
    ),
  );
  writeFileSync(
    path.join(dir, 'audience-sync.yaml'),
    `source: { type: csv, path: orders.csv, shape: orders }
profiles: { type: csv, path: profiles.csv, columns: { customer_id: customer_id, email: email, opted_out: opted_out } }
scoring: { analysis_date: "${DATES[1]}", method: quantile }
segments: { map: default }
destinations:
  local: { type: file, path: ${options.out ?? 'out'} }
sync: { redis_prefix: test-${path.basename(dir)} }
http:
  users:
${users.join('\n')}
${options.yaml ?? ''}
`,
  );
  const env = { ...process.env, REDIS_URL: redisUrl, LOG_LEVEL: 'warn' };
  const score = run(['score', '--analysis-date', DATES[0], '--out', path.join(dir, 'early.csv')], {
    cwd: dir,
    env,
  });
  expect(await score.exited, score.stderr()).toBe(0);
  const sync = run(['sync'], { cwd: dir, env });
  expect(await sync.exited, sync.stderr()).toBe(0);
  /** Segment → customers on the first date, counted from `score`'s own output file. */
  const early = new Map<string, number>();
  for (const r of parse(readFileSync(path.join(dir, 'early.csv')), { columns: true }) as {
    segment: string;
  }[])
    early.set(r.segment, (early.get(r.segment) ?? 0) + 1);
  return { dir, env, members, codes, early };
}

/** Every CSP violation and console error of the contexts `newContext` made. */
export const seen = { violations: [] as string[], consoleErrors: [] as string[] };

export async function newContext(
  browser: Browser,
  viewport = { width: 1280, height: 900 },
): Promise<BrowserContext> {
  const context = await browser.newContext({
    viewport,
    locale: 'en-US',
    timezoneId: 'UTC',
    acceptDownloads: true,
  });
  context.setDefaultTimeout(120_000);
  await context.exposeBinding('reportViolation', (_source, text: string) => seen.violations.push(text));
  await context.addInitScript({
    content: `document.addEventListener('securitypolicyviolation', (e) =>
      window.reportViolation(e.violatedDirective + ' blocked ' + e.blockedURI + ' at ' + e.sourceFile + ':' + e.lineNumber));`,
  });
  context.on('console', (m) => {
    if (m.type() === 'error') seen.consoleErrors.push(`${m.location().url}: ${m.text()}`);
  });
  return context;
}

/** Debian's Chromium, headless. */
export const launchChromium = () =>
  chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });

/** A page of a new context, logged in as `name` (on the overview). */
export async function loggedInPage(browser: Browser, url: string, name: 'vera' | 'otto'): Promise<Page> {
  const page = await (await newContext(browser)).newPage();
  await page.goto(`${url}/login`);
  await logIn(page, name);
  await page.waitForURL(`${url}/`);
  return page;
}

export async function logIn(page: Page, name: 'vera' | 'otto') {
  await page.getByLabel('User name', { exact: true }).fill(name);
  await page.getByLabel('Password', { exact: true }).fill(USERS[name].password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

/** A table's header and body cells as text. */
export async function cellsOf(table: Locator): Promise<{ head: string[]; body: string[][] }> {
  const head = await table.locator('thead th').allInnerTexts();
  const body = await table
    .locator('tbody tr')
    .evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => (c as typeof tr).innerText)));
  return { head, body };
}

/** A table by its caption (folded or not: a folded one is opened), and its CSV button. */
export async function tableOf(page: Page, caption: string | RegExp) {
  const holder = page.locator('.numbers', { has: page.locator('caption', { hasText: caption }) });
  if ((await holder.evaluate((el) => el.tagName)) === 'DETAILS' && !(await holder.getAttribute('open')))
    await holder.locator('summary').click();
  return { table: holder.getByRole('table'), button: holder.getByRole('button', { name: /Download CSV/ }) };
}

/** The CSV a button downloads, parsed by csv-parse (not the papaparse that wrote it). */
export async function download(page: Page, button: Locator): Promise<string[][]> {
  const [file] = await Promise.all([page.waitForEvent('download'), button.click()]);
  return parse(readFileSync((await file.path())!), { relax_column_count: false }) as string[][];
}

/** A table cell shows the CSV's value formatted for en-US, times in the console's time zone. */
export function shows(text: string, value: string, timeZone = 'UTC'): boolean {
  if (text === value) return true;
  if (value === '') return text === '–';
  if (/^\d{4}-\d{2}-\d{2}T/.test(value))
    return (
      text ===
      new Intl.DateTimeFormat('en-US', { dateStyle: 'medium', timeStyle: 'long', timeZone }).format(
        new Date(value),
      )
    );
  if (text.endsWith('%')) return Math.abs(Number(text.slice(0, -1)) - Number(value) * 100) <= 0.05;
  // A count with its reasons after it: 3 (opted out: 3).
  const lead = text.replace(/ \(.*\)$/, '');
  return Number(lead.replace(/[,+]/g, '')) === Number(value);
}

export async function expectCsvEqualsTable(page: Page, caption: string | RegExp, timeZone = 'UTC') {
  const { table, button } = await tableOf(page, caption);
  const { head, body } = await cellsOf(table);
  const [csvHead, ...csvRows] = await download(page, button);
  expect(csvHead).toEqual(head);
  expect(csvRows).toHaveLength(body.length);
  body.forEach((row, i) =>
    row.forEach((text, k) =>
      expect(
        shows(text, csvRows[i]![k]!, timeZone),
        `${caption} row ${i} column ${head[k]}: ${text} vs ${csvRows[i]![k]}`,
      ).toBe(true),
    ),
  );
  return { head, body, csv: csvRows };
}

interface Canvas {
  width: number;
  height: number;
  getContext(
    kind: '2d',
  ): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } | null;
}

/** How many pixels of a chart's canvas are painted (not transparent). */
export const painted = (chart: Locator) =>
  chart
    .locator('canvas')
    .first()
    .evaluate((canvas) => {
      const data = (canvas as unknown as Canvas)
        .getContext('2d')!
        .getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) n++;
      return n;
    });
