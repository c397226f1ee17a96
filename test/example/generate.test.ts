import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  CUSTOMERS_HEADER,
  HISTORY_DAYS,
  ORDERS_HEADER,
  generateShop,
  type ShopOptions,
  type ShopSummary,
} from '../../src/example/index.js';

interface Shop {
  summary: ShopSummary;
  ordersText: string;
  customersText: string;
  /** Parsed rows without the header. */
  orders: string[][];
  customers: string[][];
}

let tmp: string;
let runs = 0;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'shop-gen-test-'));
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function parseCsv(text: string): string[][] {
  return parse(text, { relaxColumnCount: false }) as string[][];
}

async function makeShop(options: ShopOptions): Promise<Shop> {
  const summary = await generateShop(join(tmp, `run-${++runs}`, 'nested'), options);
  const ordersText = await readFile(summary.files.orders, 'utf8');
  const customersText = await readFile(summary.files.customers, 'utf8');
  return {
    summary,
    ordersText,
    customersText,
    orders: parseCsv(ordersText).slice(1),
    customers: parseCsv(customersText).slice(1),
  };
}

const DAY_MS = 86_400_000;
const AMOUNT = /^-?\d+\.\d{2}$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;

function isValidDate(s: string): boolean {
  if (!ISO_DATE.test(s)) return false;
  const t = Date.parse(`${s}T00:00:00Z`);
  return Number.isFinite(t) && new Date(t).toISOString().slice(0, 10) === s;
}

function isBadOrderRow(row: string[]): boolean {
  const [id, date, amount] = row;
  return !id || !isValidDate(date ?? '') || !AMOUNT.test(amount ?? '');
}

/** Email normalised the way ad platforms expect: trimmed, lower case, Gmail dots and +tags removed. */
function normaliseEmail(raw: string): string {
  const email = raw.trim().toLowerCase();
  const at = email.lastIndexOf('@');
  let local = email.slice(0, at);
  let domain = email.slice(at + 1);
  if (domain === 'gmail.com' || domain === 'googlemail.com') {
    local = local.split('+')[0]!.replace(/\./g, '');
    domain = 'gmail.com';
  }
  return `${local}@${domain}`;
}

describe('generateShop', () => {
  let shop: Shop;

  beforeAll(async () => {
    shop = await makeShop({ customers: 5000, seed: 7, analysisDate: '2025-06-30' });
  });

  it('is deterministic: same options give byte-identical files', async () => {
    const again = await makeShop({ customers: 5000, seed: 7, analysisDate: '2025-06-30' });
    expect(again.ordersText).toBe(shop.ordersText);
    expect(again.customersText).toBe(shop.customersText);
    expect(again.summary).toEqual({ ...shop.summary, files: again.summary.files });
  });

  it('gives different files for a different seed', async () => {
    const other = await makeShop({ customers: 5000, seed: 8, analysisDate: '2025-06-30' });
    expect(other.ordersText).not.toBe(shop.ordersText);
    expect(other.customersText).not.toBe(shop.customersText);
  });

  it('keeps orders unchanged when only the opt-out share changes', async () => {
    const other = await makeShop({ customers: 5000, seed: 7, analysisDate: '2025-06-30', optOutShare: 0.5 });
    expect(other.ordersText).toBe(shop.ordersText);
    expect(other.customersText).not.toBe(shop.customersText);
  });

  it('writes the headers and one row per order and per customer', () => {
    expect(shop.ordersText.split('\n')[0]).toBe(ORDERS_HEADER);
    expect(shop.customersText.split('\n')[0]).toBe(CUSTOMERS_HEADER);
    expect(shop.ordersText.endsWith('\n')).toBe(true);
    expect(shop.customersText.endsWith('\n')).toBe(true);
    expect(shop.summary.customers).toBe(5000);
    expect(shop.summary.badRows).toBe(0);
    expect(shop.customers).toHaveLength(5000);
    expect(shop.orders).toHaveLength(shop.summary.orders);
    for (const row of shop.customers) expect(row).toHaveLength(10);
    for (const row of shop.orders) expect(row).toHaveLength(3);
    // ~5 orders per customer on average
    expect(shop.summary.orders / 5000).toBeGreaterThan(4.5);
    expect(shop.summary.orders / 5000).toBeLessThan(5.5);
  });

  it('uses fixed-width zero-padded customer ids, unique and in order', () => {
    const ids = shop.customers.map((r) => r[0]!);
    expect(ids[0]).toBe('C0000001');
    expect(ids.at(-1)).toBe('C0005000');
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^C\d{7}$/);
  });

  it('puts every order on a valid date within the three years up to the analysis date', () => {
    const end = Date.parse('2025-06-30T00:00:00Z');
    const start = end - (HISTORY_DAYS - 1) * DAY_MS;
    let min = Infinity;
    let max = -Infinity;
    for (const [, date] of shop.orders) {
      expect(isValidDate(date!)).toBe(true);
      const t = Date.parse(`${date}T00:00:00Z`);
      min = Math.min(min, t);
      max = Math.max(max, t);
    }
    expect(max).toBeLessThanOrEqual(end);
    expect(min).toBeGreaterThanOrEqual(start);
    // The window is used: somebody bought in the last week and somebody more than 2.5 years ago.
    expect(max).toBeGreaterThan(end - 7 * DAY_MS);
    expect(min).toBeLessThan(end - 900 * DAY_MS);
  });

  it('has skewed recency: many recent buyers and a tail of lapsed ones', () => {
    const end = Date.parse('2025-06-30T00:00:00Z');
    const last = new Map<string, number>();
    for (const [id, date] of shop.orders) last.set(id!, Math.max(last.get(id!) ?? 0, Date.parse(date!)));
    const recency = [...last.values()].map((t) => (end - t) / DAY_MS);
    const share = (pred: (d: number) => boolean): number => recency.filter(pred).length / recency.length;
    expect(share((d) => d <= 90)).toBeGreaterThan(0.4);
    expect(share((d) => d > 365)).toBeGreaterThan(0.15);
    expect(share((d) => d > 365)).toBeLessThan(0.45);
  });

  it('groups orders by customer in date order', () => {
    const seen = new Set<string>();
    let prevId = '';
    let prevDate = '';
    for (const [id, date] of shop.orders) {
      if (id !== prevId) {
        expect(seen.has(id!)).toBe(false);
        seen.add(id!);
      } else {
        expect(date! >= prevDate).toBe(true);
      }
      prevId = id!;
      prevDate = date!;
    }
  });

  it('writes parseable amounts with two decimals, long-tailed, with rare refunds and zeros', () => {
    const amounts = shop.orders.map(([, , a]) => {
      expect(a).toMatch(AMOUNT);
      return Number(a);
    });
    const negative = amounts.filter((a) => a < 0).length;
    const zero = amounts.filter((a) => a === 0).length;
    expect(negative / amounts.length).toBeLessThan(0.01);
    expect(zero / amounts.length).toBeLessThan(0.01);
    const sorted = amounts.filter((a) => a > 0).sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    const p99 = sorted[Math.floor(sorted.length * 0.99)]!;
    expect(median).toBeGreaterThan(10);
    expect(median).toBeLessThan(100);
    expect(p99).toBeGreaterThan(4 * median);
  });

  it('has a long tail of order counts, and sessions correlated with them', () => {
    const counts = new Map<string, number>();
    for (const [id] of shop.orders) counts.set(id!, (counts.get(id!) ?? 0) + 1);
    const values = [...counts.values()];
    const ones = values.filter((c) => c === 1).length / values.length;
    expect(ones).toBeGreaterThan(0.2);
    expect(ones).toBeLessThan(0.45);
    expect(Math.max(...values)).toBeGreaterThan(30);

    const sessions = shop.customers.map((r) => {
      expect(r[9]).toMatch(/^\d+$/);
      return Number(r[9]);
    });
    const orders = shop.customers.map((r) => counts.get(r[0]!) ?? 0);
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const ms = mean(sessions);
    const mo = mean(orders);
    let cov = 0;
    let vs = 0;
    let vo = 0;
    for (let i = 0; i < sessions.length; i++) {
      cov += (sessions[i]! - ms) * (orders[i]! - mo);
      vs += (sessions[i]! - ms) ** 2;
      vo += (orders[i]! - mo) ** 2;
    }
    const correlation = cov / Math.sqrt(vs * vo);
    expect(correlation).toBeGreaterThan(0.3);
    expect(correlation).toBeLessThan(0.99);
  });

  it('lists every ordering customer in customers.csv and every customer has orders', () => {
    const customerIds = new Set(shop.customers.map((r) => r[0]));
    const orderIds = new Set(shop.orders.map((r) => r[0]));
    for (const id of orderIds) expect(customerIds.has(id)).toBe(true);
    expect(orderIds.size).toBe(customerIds.size);
  });

  describe('identifier dirt', () => {
    const col = (name: string): string[] => {
      const index = CUSTOMERS_HEADER.split(',').indexOf(name);
      return shop.customers.map((r) => r[index]!);
    };
    const shareOf = (values: string[], pred: (v: string) => boolean): number =>
      values.filter(pred).length / values.length;

    it('has Gmail and googlemail addresses with dots, +tags and odd casing, and example domains', () => {
      const emails = col('email').filter((e) => e !== '');
      const google = emails.filter((e) => /@g(oogle)?mail\.com\s*$/i.test(e));
      expect(google.length / emails.length).toBeGreaterThan(0.3);
      expect(google.some((e) => /@googlemail\.com/i.test(e))).toBe(true);
      expect(google.some((e) => e.trim().split('@')[0]!.includes('.'))).toBe(true);
      expect(google.some((e) => e.includes('+'))).toBe(true);
      expect(google.some((e) => /@(GMail|Gmail|GMAIL)\./.test(e))).toBe(true);
      const domains = new Set(emails.map((e) => e.trim().toLowerCase().split('@')[1]));
      for (const d of domains)
        expect(d).toMatch(/^(gmail\.com|googlemail\.com|([a-z]+\.)?example\.(com|org|net))$/);
      expect(shareOf(emails, (e) => /[A-Z]/.test(e))).toBeGreaterThan(0.05);
      expect(shareOf(emails, (e) => e !== e.trim())).toBeGreaterThan(0.02);
    });

    it('has mixed-case, padded and non-ASCII names, and some missing ones', () => {
      const names = [...col('first_name'), ...col('last_name')];
      expect(names.some((n) => n !== '' && n === n.toUpperCase() && /[A-Z]/.test(n))).toBe(true);
      expect(names.some((n) => n !== '' && n === n.toLowerCase())).toBe(true);
      expect(names.some((n) => n !== n.trim())).toBe(true);
      expect(names.some((n) => /[À-ÿ]/.test(n))).toBe(true);
      expect(shareOf(names, (n) => n === '')).toBeGreaterThan(0.005);
      expect(shareOf(names, (n) => n === '')).toBeLessThan(0.1);
    });

    it('has missing emails (~5%), missing phones (~20%) and a few customers with neither', () => {
      const emails = col('email');
      const phones = col('phone');
      expect(shareOf(emails, (e) => e === '')).toBeGreaterThan(0.03);
      expect(shareOf(emails, (e) => e === '')).toBeLessThan(0.07);
      expect(shareOf(phones, (p) => p === '')).toBeGreaterThan(0.16);
      expect(shareOf(phones, (p) => p === '')).toBeLessThan(0.24);
      const neither = shop.customers.filter((_, i) => emails[i] === '' && phones[i] === '').length;
      expect(neither).toBeGreaterThan(0);
      expect(neither / shop.customers.length).toBeLessThan(0.03);
    });

    it('shares a few emails between two customers (households)', () => {
      const seen = new Map<string, number>();
      for (const e of col('email'))
        if (e) seen.set(normaliseEmail(e), (seen.get(normaliseEmail(e)) ?? 0) + 1);
      const shared = [...seen.values()].filter((n) => n > 1);
      expect(shared.length).toBeGreaterThan(0);
      expect(shared.length / shop.customers.length).toBeLessThan(0.02);
      expect(Math.max(...shared)).toBe(2);
    });

    it('uses ISO country codes with varying case and spaces', () => {
      const countries = col('country');
      expect(new Set(countries.map((c) => c.trim().toUpperCase()))).toEqual(
        new Set(['US', 'GB', 'DE', 'FR']),
      );
      expect(countries.some((c) => c !== c.trim())).toBe(true);
      expect(countries.some((c) => c === c.toLowerCase())).toBe(true);
    });

    it('formats phones and postal codes per country from fictional ranges', () => {
      const country = col('country').map((c) => c.trim().toUpperCase());
      const phones = col('phone');
      const postal = col('postal_code');
      const formats: Record<string, Set<string>> = {
        US: new Set(),
        GB: new Set(),
        DE: new Set(),
        FR: new Set(),
      };
      shop.customers.forEach((_, i) => {
        const c = country[i]!;
        const phone = phones[i]!;
        const digits = phone.replace(/\D/g, '');
        if (phone) formats[c]!.add(phone.replace(/\d/g, '9'));
        if (c === 'US') {
          if (phone) expect(digits).toMatch(/^1?\d{3}55501\d\d$/);
          if (postal[i]) expect(postal[i]).toMatch(/^\d{4,5}(-\d{4})?$/);
        } else if (c === 'GB') {
          if (phone) expect(digits).toMatch(/^(44|0)?(0?2079460|0?7700900)\d{3}$/);
          if (postal[i]) expect(postal[i]!.toUpperCase()).toMatch(/^[A-Z]{1,2}\d{1,2}[A-Z]? ?\d[A-Z]{2}$/);
        } else if (c === 'DE') {
          if (phone) expect(digits).toMatch(/^(0049|49|0)?0?(3023125|4066969|6990009|8999998|2214710)\d{3}$/);
          if (postal[i]) expect(postal[i]).toMatch(/^\d{5}$/);
        } else {
          if (phone) expect(digits).toMatch(/^(33|0)(199|639)(00|98)\d{4}$/);
          if (postal[i]) expect(postal[i]).toMatch(/^\d{5}$/);
        }
      });
      expect(formats.US).toContain('(999) 999-9999');
      expect(formats.US).toContain('999.999.9999');
      expect(formats.US).toContain('+9 999 999 9999');
      expect(formats.GB).toContain('999 9999 9999');
      expect(formats.GB).toContain('99999 999999');
      expect(formats.DE).toContain('+99 99 99999999');
      expect(formats.FR).toContain('99 99 99 99 99');
      expect(shareOf(postal, (p) => p === '')).toBeGreaterThan(0.01);
      expect(shareOf(postal, (p) => p === '')).toBeLessThan(0.1);
    });

    it('marks opt-outs at the requested share and picks brands from the list', () => {
      const optedOut = col('opted_out');
      for (const v of optedOut) expect(['true', 'false']).toContain(v);
      const share = shareOf(optedOut, (v) => v === 'true');
      expect(share).toBeGreaterThan(0.012);
      expect(share).toBeLessThan(0.03);
      expect(new Set(col('favorite_brand'))).toEqual(
        new Set(['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli']),
      );
    });
  });

  it('honours optOutShare and ordersPerCustomer', async () => {
    const other = await makeShop({ customers: 3000, seed: 3, optOutShare: 0.25, ordersPerCustomer: 2 });
    const share = other.customers.filter((r) => r[7] === 'true').length / 3000;
    expect(share).toBeGreaterThan(0.21);
    expect(share).toBeLessThan(0.29);
    expect(other.summary.orders / 3000).toBeGreaterThan(1.8);
    expect(other.summary.orders / 3000).toBeLessThan(2.2);
    const single = await makeShop({ customers: 500, seed: 3, ordersPerCustomer: 1 });
    expect(single.summary.orders).toBe(500);
  });

  it('defaults to analysis date 2026-01-01 and never writes a later date', async () => {
    const small = await makeShop({ customers: 2000 });
    const max = small.orders.reduce((m, [, d]) => (d! > m ? d! : m), '');
    expect(max <= '2026-01-01').toBe(true);
    expect(max >= '2025-12-01').toBe(true);
  });

  it('writes only headers for zero customers', async () => {
    const empty = await makeShop({ customers: 0 });
    expect(empty.ordersText).toBe(ORDERS_HEADER + '\n');
    expect(empty.customersText).toBe(CUSTOMERS_HEADER + '\n');
    expect(empty.summary).toMatchObject({ customers: 0, orders: 0, badRows: 0 });
  });

  it('rejects invalid options', async () => {
    const dir = join(tmp, 'invalid');
    await expect(generateShop(dir, { customers: -1 })).rejects.toThrow(/customers/);
    await expect(generateShop(dir, { customers: 1.5 })).rejects.toThrow(/customers/);
    await expect(generateShop(dir, { customers: 10, analysisDate: '2025-02-30' })).rejects.toThrow(/date/);
    await expect(generateShop(dir, { customers: 10, analysisDate: '01/01/2025' })).rejects.toThrow(/YYYY/);
    await expect(generateShop(dir, { customers: 10, seed: 0.5 })).rejects.toThrow(/seed/);
    await expect(generateShop(dir, { customers: 10, ordersPerCustomer: 0.5 })).rejects.toThrow(/orders/);
    await expect(generateShop(dir, { customers: 10, optOutShare: 2 })).rejects.toThrow(/optOutShare/);
    await expect(generateShop(dir, { customers: 10, badRowShare: -0.1 })).rejects.toThrow(/badRowShare/);
  });
});

describe('generateShop with badRowShare', () => {
  let clean: Shop;
  let dirty: Shop;

  beforeAll(async () => {
    clean = await makeShop({ customers: 4000, seed: 11 });
    dirty = await makeShop({ customers: 4000, seed: 11, badRowShare: 0.05 });
  });

  it('injects the reported number of bad rows, close to the requested share', () => {
    const bad = dirty.orders.filter(isBadOrderRow);
    expect(bad.length).toBe(dirty.summary.badRows);
    expect(dirty.summary.orders).toBe(clean.summary.orders);
    const expected = 0.05 * dirty.summary.orders;
    expect(Math.abs(bad.length - expected)).toBeLessThan(4 * Math.sqrt(expected));
    expect(clean.orders.filter(isBadOrderRow)).toHaveLength(0);
  });

  it('uses every kind of bad row', () => {
    const bad = dirty.orders.filter(isBadOrderRow);
    expect(bad.some(([id]) => id === '')).toBe(true);
    expect(bad.some(([, d]) => d === 'not-a-date')).toBe(true);
    expect(bad.some(([, d]) => d === '2024-13-45')).toBe(true);
    expect(bad.some(([, , a]) => a === '12,3x')).toBe(true);
    expect(bad.some(([, , a]) => a === 'abc')).toBe(true);
    // the comma in "12,3x" is quoted, so every row still has three fields
    expect(dirty.ordersText).toContain('"12,3x"');
    for (const row of dirty.orders) expect(row).toHaveLength(3);
  });

  it('leaves the valid rows exactly as in the clean shop', () => {
    expect(dirty.orders).toHaveLength(clean.orders.length);
    dirty.orders.forEach((row, i) => {
      if (!isBadOrderRow(row)) expect(row).toEqual(clean.orders[i]);
    });
    expect(dirty.customersText).toBe(clean.customersText);
  });

  it('is deterministic', async () => {
    const again = await makeShop({ customers: 4000, seed: 11, badRowShare: 0.05 });
    expect(again.ordersText).toBe(dirty.ordersText);
    expect(again.summary.badRows).toBe(dirty.summary.badRows);
  });

  it('can make every row bad', async () => {
    const allBad = await makeShop({ customers: 200, seed: 5, badRowShare: 1 });
    expect(allBad.summary.badRows).toBe(allBad.summary.orders);
    expect(allBad.orders.every(isBadOrderRow)).toBe(true);
  });
});
