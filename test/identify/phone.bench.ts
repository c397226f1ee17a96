/**
 * `npx vitest bench --run test/identity/phone.bench.ts`
 *
 * normalizePhone against the plain library on 100k phone numbers of the example shop (its US, GB, DE and
 * FR formats and dirt, with each customer's own country column), and on the valid ones already in E.164.
 * One iteration normalises them all: µs per call = the mean in ms × 1000 / the count in the title.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parsePhoneNumberFromString } from 'libphonenumber-js';
import { bench, describe } from 'vitest';
import { generateShop } from '../../src/example/generate.js';
import { normalizeCountry, normalizePhone } from '../../src/identify/normalize.js';

const N = 100_000;

async function shopPhones(): Promise<[string, string][]> {
  const dir = mkdtempSync(path.join(tmpdir(), 'phone-bench-'));
  try {
    const shop = await generateShop(dir, { customers: Math.ceil(N / 0.75), ordersPerCustomer: 1 });
    const rows = readFileSync(shop.files.customers, 'utf8').split('\n').slice(1);
    const phones: [string, string][] = [];
    for (const row of rows) {
      // customer_id,email,phone,first_name,last_name,country,…: no field of these holds a comma.
      const f = row.split(',');
      if (f[2]) phones.push([f[2], f[5]!]);
      if (phones.length === N) break;
    }
    return phones;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function library(raw: string, country: string): string | undefined {
  const p = parsePhoneNumberFromString(raw, normalizeCountry(country));
  return p?.isValid() ? p.number : undefined;
}

const shop = await shopPhones();
const e164 = shop.flatMap(([raw, country]): [string, string][] => {
  const number = library(raw, country);
  return number ? [[number, country]] : [];
});
const options = { time: 0, iterations: 10, warmupIterations: 2 };

let sink = 0;
function run(inputs: [string, string][], f: (raw: string, country: string) => string | undefined): void {
  for (const [raw, country] of inputs) if (f(raw, country) !== undefined) sink++;
}

describe(`${N} phones as the example shop writes them`, () => {
  bench('before: parsePhoneNumberFromString + isValid()', () => run(shop, library), options);
  bench('after: normalizePhone', () => run(shop, normalizePhone), options);
});

describe(`${e164.length} valid phones already in E.164`, () => {
  bench('before: parsePhoneNumberFromString + isValid()', () => run(e164, library), options);
  bench('after: normalizePhone', () => run(e164, normalizePhone), options);
});

process.on('exit', () => {
  if (sink < 0) console.log(sink);
});
