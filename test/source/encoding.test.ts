import { writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { profilesSchema, sourceSchema, type SourceConfig } from '../../src/config/schema.js';
import { SourceError } from '../../src/errors.js';
import { readCustomers } from '../../src/source/read.js';
import { dayNumber } from '../../src/source/parse.js';
import { tempDir } from '../helpers.js';

const analysisDay = dayNumber(2026, 1, 1)!;
const scoring = { monetary: 'sum', third_dimension: 'monetary' } as const;
const csv = (file: string, extra: Record<string, unknown> = {}): SourceConfig =>
  sourceSchema.parse({ type: 'csv', path: file, ...extra });
const read = (source: SourceConfig) =>
  readCustomers(source, undefined, { analysisDay, scoring, baseDir: '/' });

/** Writes bytes (given as latin1 text, one byte per character, or as a Buffer) to a fresh file. */
function writeBytes(name: string, bytes: string | Buffer): string {
  const file = `${tempDir()}/${name}`;
  writeFileSync(file, typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  return file;
}

const HEADER = 'customer_id,order_date,amount,first_name,email\n';
/** `count` plain ASCII order rows, c0 … c(count-1). */
const asciiRows = (count: number): string =>
  Array.from({ length: count }, (_, i) => `c${i},2025-06-01,1,Ann,ann${i}@example.com\n`).join('');

describe('source.encoding', () => {
  it('reads a latin1 file as latin1: names and emails exactly as written', async () => {
    // é is 0xE9 in latin1, ö 0xF6: bytes that are not UTF-8 on their own.
    const file = writeBytes('o.csv', `${HEADER}a,2025-06-01,1,Jos\xe9,j\xf6rg@example.com\n`);
    const { customers, report } = await read(csv(file, { encoding: 'latin1' }));
    expect(customers.profile.first_name?.toArray()).toEqual(['José']);
    expect(customers.profile.email?.toArray()).toEqual(['jörg@example.com']);
    expect(report.source.bad).toBe(0);
  });

  it("reads windows-1252's own characters (0x80-0x9F) as that code page maps them", async () => {
    // 0x92 is ’ and 0x80 € in windows-1252; in latin1 they are C1 control codes.
    const file = writeBytes('o.csv', `${HEADER}a,2025-06-01,1,O\x92Brien \x80,x@example.com\n`);
    const { customers } = await read(csv(file, { encoding: 'windows-1252' }));
    expect(customers.profile.first_name?.toArray()).toEqual(['O\u2019Brien \u20ac']);
    const { customers: asLatin1 } = await read(csv(file, { encoding: 'latin1' }));
    expect(asLatin1.profile.first_name?.toArray()).toEqual(['O\u0092Brien \u0080']);
  });

  it('reads a gzipped latin1 file', async () => {
    const file = writeBytes(
      'o.csv.gz',
      gzipSync(Buffer.from(`${HEADER}a,2025-06-01,1,Ren\xe9,r@example.com\n`, 'latin1')),
    );
    const { customers } = await read(csv(file, { encoding: 'latin1' }));
    expect(customers.profile.first_name?.toArray()).toEqual(['René']);
  });

  it('makes a row with bytes that are not UTF-8 a bad row, never a name with U+FFFD in it', async () => {
    // 300 good rows, then one latin1 row (row 301) among UTF-8 ones: under the 1 % limit, so the run goes on.
    const text = Buffer.concat([
      Buffer.from(HEADER + asciiRows(300), 'utf8'),
      Buffer.from('bad,2025-06-01,1,Jos\xe9,jose@example.com\n', 'latin1'),
      Buffer.from('zoe,2025-06-01,1,Zoë,zoe@example.com\n', 'utf8'),
    ]);
    const { customers, report } = await read(csv(writeBytes('o.csv', text)));
    expect(customers.ids.length).toBe(301);
    expect(customers.ids.toArray()).not.toContain('bad');
    expect(customers.profile.first_name?.toArray()).not.toContainEqual(expect.stringContaining('\ufffd'));
    expect(customers.profile.first_name?.get(300)).toBe('Zoë');
    expect(report.source.bad).toBe(1);
    expect(report.source.samples).toEqual([
      { row: 301, reason: 'invalid UTF-8 (set source.encoding if the file is latin1 or windows-1252)' },
    ]);
  });

  it('stops with an error naming source.encoding when a whole file is latin1', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => `c${i},2025-06-01,1,Ren\xe9,r${i}@example.com\n`);
    const file = writeBytes('o.csv', HEADER + rows.join(''));
    const error = await read(csv(file)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SourceError);
    expect((error as Error).message).toMatch(/50 of 50 rows are bad.*invalid UTF-8/);
    expect((error as SourceError).hint).toMatch(/source\.encoding: latin1 or windows-1252/);
  });

  it('stops when the header itself is not UTF-8, naming source.encoding', async () => {
    const file = writeBytes('o.csv', 'customer_id,order_date,amount,pr\xe9nom\na,2025-06-01,1,x\n');
    const error = await read(csv(file)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SourceError);
    expect((error as Error).message).toMatch(/header .*not UTF-8/);
    expect((error as SourceError).hint).toMatch(/source\.encoding/);
  });

  it('names the encoding of a UTF-16 file (Excel\'s "Unicode text") instead of reading garbage', async () => {
    const body = Buffer.from(`\ufeff${HEADER}a,2025-06-01,1,Ann,a@example.com\n`, 'utf16le');
    const error = await read(csv(writeBytes('o.csv', body))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SourceError);
    expect((error as Error).message).toMatch(/UTF-16/);
  });

  it('refuses latin1 for a file that starts with a UTF-8 byte order mark', async () => {
    const file = writeBytes(
      'o.csv',
      Buffer.from(`\ufeff${HEADER}a,2025-06-01,1,Zoë,z@example.com\n`, 'utf8'),
    );
    await expect(read(csv(file, { encoding: 'latin1' }))).rejects.toThrow(
      /UTF-8 byte order mark.*source\.encoding/,
    );
  });

  it('finds no fault in UTF-8 characters split across read chunks, and finds the one at a boundary', async () => {
    // Rows of 4-byte and 2-byte characters, so that every 64 KiB chunk boundary falls inside some character.
    const good = Array.from(
      { length: 4000 },
      (_, i) => `c${i},2025-06-01,1,${'😀é'.repeat(10)},x${i}@example.com\n`,
    );
    const text = Buffer.from(HEADER + good.join(''), 'utf8');
    const boundaries = Array.from({ length: Math.floor(text.length / (1 << 16)) }, (_, k) => (k + 1) << 16);
    expect(boundaries.filter((at) => (text[at]! & 0xc0) === 0x80).length).toBeGreaterThanOrEqual(2);
    const { customers, report } = await read(csv(writeBytes('o.csv', text)));
    expect(report.source.bad).toBe(0);
    expect(customers.ids.length).toBe(4000);
    expect(customers.profile.first_name?.get(3999)).toBe('😀é'.repeat(10));

    // The same file with one byte broken just before the first chunk boundary (64 KiB), and the last byte cut.
    const broken = Buffer.from(text);
    let at = (1 << 16) - 2;
    while ((broken[at]! & 0xc0) !== 0x80) at--; // a continuation byte of some character
    broken[at] = 0x41;
    const row = broken.subarray(0, at).toString('latin1').split('\n').length - 1;
    const cut = Buffer.concat([broken, Buffer.from('last,2025-06-01,1,x,\xf0\x9f', 'latin1')]);
    const { report: brokenReport } = await read(csv(writeBytes('o.csv', cut), { max_bad_row_share: 0.01 }));
    expect(brokenReport.source.samples.map((s) => s.row)).toEqual([row, 4001]);
    expect(brokenReport.source.byReason).toEqual({
      'invalid UTF-8 (set source.encoding if the file is latin1 or windows-1252)': 2,
    });
  });

  it('checks the profiles table too, under profiles.encoding', async () => {
    const orders = writeBytes('o.csv', 'customer_id,order_date,amount\na,2025-06-01,1\n');
    const latin1 = 'customer_id,first_name\na,Andr\xe9\n';
    const { customers } = await readCustomers(
      csv(orders),
      profilesSchema.parse({ type: 'csv', path: writeBytes('p.csv', latin1), encoding: 'latin1' }),
      { analysisDay, scoring, baseDir: '/' },
    );
    expect(customers.profile.first_name?.toArray()).toEqual(['André']);
    const error = await readCustomers(
      csv(orders),
      profilesSchema.parse({ type: 'csv', path: writeBytes('p.csv', latin1) }),
      { analysisDay, scoring, baseDir: '/' },
    ).catch((e: unknown) => e);
    expect((error as SourceError).hint).toMatch(/profiles\.encoding/);
  });

  it('rejects an encoding it does not know, naming the ones it does', () => {
    const parsed = sourceSchema.safeParse({ type: 'csv', path: 'x.csv', encoding: 'utf-16' });
    expect(parsed.success).toBe(false);
    expect(JSON.stringify(parsed.error?.issues)).toMatch(/utf-8.*latin1.*windows-1252/);
  });
});
