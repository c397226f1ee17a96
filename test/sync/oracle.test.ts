import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { tempDir, readCsv } from '../helpers.js';
import { cli, fileAudiences } from './harness.js';

/**
 * The whole pipeline (read, score, segment, filter, identify, hash, sync) against an oracle that shares no
 * code with it: segments from the R reference (test/fixtures/oracle-shop/segments.csv, rebuilt by
 * test/r/regenerate.sh), identifiers normalised by the plain rules below, written for this shop's formats.
 * The shop is the first 300 customers of the example shop, with its messy emails, phones and countries.
 */
const SHOP = path.resolve('test/fixtures/oracle-shop');

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** Lowercase, no spaces anywhere; one @ with something before it and a dotted domain after. */
function email(raw: string): string | undefined {
  const e = raw.replace(/\s/g, '').toLowerCase();
  return /^[^@]+@[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(e) ? e : undefined;
}

const CALLING_CODE: Record<string, string> = { US: '1', GB: '44', DE: '49', FR: '33' };

/**
 * E.164 by hand: international forms as written, national ones with the country's code (trunk 0 dropped).
 * Ofcom keeps 07700 900000-900999 for drama: no phone has such a number, so the number plan refuses them.
 */
function phone(raw: string, country: string): string | undefined {
  const e164 = nationalOrInternational(raw, country);
  return e164?.startsWith('+447700900') ? undefined : e164;
}

function nationalOrInternational(raw: string, country: string): string | undefined {
  const written = raw.trim().replace('(0)', '');
  if (written === '') return undefined;
  const digits = written.replace(/\D/g, '');
  if (written.startsWith('+')) return `+${digits}`;
  if (digits.startsWith('00')) return `+${digits.slice(2)}`;
  const code = CALLING_CODE[country.trim().toUpperCase()];
  if (code === '1') {
    if (digits.length === 10) return `+1${digits}`;
    if (digits.length === 11 && digits.startsWith('1')) return `+${digits}`;
    return undefined;
  }
  return code && digits.startsWith('0') ? `+${code}${digits.slice(1)}` : undefined;
}

/** Per audience, its members' identifiers as the file destination writes them (`email=<sha256>`). */
function expectedAudiences(): Map<string, Set<string>> {
  const segmentOf = new Map(
    readCsv(readFileSync(path.join(SHOP, 'segments.csv'), 'utf8')).map((r) => [r.customer_id!, r.segment!]),
  );
  const audiences = new Map<string, Set<string>>();
  const add = (audience: string, ids: string[]) => {
    const set = audiences.get(audience) ?? new Set<string>();
    for (const id of ids) set.add(id);
    audiences.set(audience, set);
  };
  for (const segment of new Set(segmentOf.values())) add(`RFM: ${segment}`, []);
  add('Champions who love Acme', []);
  for (const c of readCsv(readFileSync(path.join(SHOP, 'customers.csv'), 'utf8'))) {
    const segment = segmentOf.get(c.customer_id!);
    if (segment === undefined || c.opted_out === 'true') continue;
    const e = email(c.email ?? '');
    const p = phone(c.phone ?? '', c.country ?? '');
    const ids = [...(e ? [`email=${sha256(e)}`] : []), ...(p ? [`phone=${sha256(p)}`] : [])];
    add(`RFM: ${segment}`, ids);
    if (segment === 'Champions' && c.favorite_brand === 'Acme') add('Champions who love Acme', ids);
  }
  return audiences;
}

it('syncs the oracle shop to exactly the audiences the R reference and hand-made hashes give', () => {
  const dir = tempDir('audience-sync-oracle-');
  copyFileSync(path.join(SHOP, 'orders.csv'), path.join(dir, 'orders.csv'));
  copyFileSync(path.join(SHOP, 'customers.csv'), path.join(dir, 'customers.csv'));
  writeFileSync(
    path.join(dir, 'audience-sync.yaml'),
    `source: { type: csv, path: orders.csv }
profiles: { type: csv, path: customers.csv, attributes: [favorite_brand] }
scoring: { analysis_date: "2026-01-01" }
audiences:
  list:
    - { name: "Champions who love Acme", segments: [Champions], where: { favorite_brand: Acme } }
destinations:
  local: { type: file, path: out }
sync: { redis_prefix: test-${path.basename(dir)} }
`,
  );
  const run = cli(['sync', '--json'], dir);
  expect(run.code, run.stderr).toBe(0);

  const expected = expectedAudiences();
  // The oracle covers every segment of the default map but one this small shop has nobody in.
  expect(expected.size).toBe(12);
  expect([...expected.values()].reduce((n, s) => n + s.size, 0)).toBeGreaterThan(300);
  expect(fileAudiences(path.join(dir, 'out'))).toEqual(expected);
});
