import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { SourceError } from '../../src/errors.js';
import { openRows, type CsvInput, type RowStream } from '../../src/source/rows.js';
import { tempDir, writeTemp } from '../helpers.js';

/** A multiple of createReadStream's chunk size in rows.ts: a chunk boundary falls there. */
const MiB = 1 << 20;

const open = (file: string, extra: Partial<CsvInput> = {}): Promise<RowStream> =>
  openRows({ type: 'csv', path: file, ...extra }, '/', 'source');

async function readAll(rows: RowStream): Promise<{ header: string[]; records: string[][]; batches: number }> {
  const records: string[][] = [];
  let batches = 0;
  try {
    for await (const batch of rows.batches) {
      batches++;
      records.push(...batch);
    }
  } finally {
    await rows.close();
  }
  return { header: rows.header, records, batches };
}

const readFile = async (file: string, extra: Partial<CsvInput> = {}) => readAll(await open(file, extra));

/** CSV text whose byte at offset `at` (just before a chunk boundary) starts the row `tail`. */
function withRowAt(at: number, tail: string): string {
  const lines = ['id,text'];
  // ASCII only: characters are bytes.
  for (let size = 8, i = 0; size < at - 200; size += lines.at(-1)!.length + 1)
    lines.push(`r${i++},${'x'.repeat(60)}`);
  lines.push('');
  const head = lines.join('\n');
  return `${head}pad,${'p'.repeat(at - head.length - 'pad,\n'.length)}\n${tail}`;
}

describe('CSV rows', () => {
  it('reads quoted fields with delimiters, doubled quotes and line breaks', async () => {
    const file = writeTemp(
      'q.csv',
      'id,name,note\n1,"Doe, Jane","say ""hi"""\n2,"two\nlines","a\r\nb"\n3,plain,\n',
    );
    const { header, records } = await readFile(file);
    expect(header).toEqual(['id', 'name', 'note']);
    expect(records).toEqual([
      ['1', 'Doe, Jane', 'say "hi"'],
      ['2', 'two\nlines', 'a\r\nb'],
      ['3', 'plain', ''],
    ]);
  });

  it('reads CRLF line endings, a BOM and a trimmed header', async () => {
    const file = writeTemp('c.csv', '\uFEFF customer_id , amount\r\na,"1"\r\nb,2\r\n');
    const { header, records } = await readFile(file);
    expect(header).toEqual(['customer_id', 'amount']);
    expect(records).toEqual([
      ['a', '1'],
      ['b', '2'],
    ]);
  });

  it('detects semicolons and tabs, and takes a configured delimiter', async () => {
    expect((await readFile(writeTemp('s.csv', 'a;b;c\n1;2,5;3\n'))).records).toEqual([['1', '2,5', '3']]);
    expect((await readFile(writeTemp('t.tsv', 'a\tb\n1,5\t2\n'))).records).toEqual([['1,5', '2']]);
    const piped = await readFile(writeTemp('p.csv', 'a|b,c\n1|2,3\n'), { delimiter: '|' });
    expect(piped.header).toEqual(['a', 'b,c']);
    expect(piped.records).toEqual([['1', '2,3']]);
  });

  it('skips empty lines but keeps rows of only delimiters and rows of any width', async () => {
    const file = writeTemp('e.csv', '\na,b\n\n1,2\n,\n\n3\n4,5,6\n\n');
    const { records } = await readFile(file);
    expect(records).toEqual([['1', '2'], ['', ''], ['3'], ['4', '5', '6']]);
  });

  it('decodes multi-byte characters split across read chunks', async () => {
    for (const [char, before] of [
      ['ë', 1],
      ['😀', 1],
      ['😀', 2],
      ['😀', 3],
    ] as const) {
      // The row starts 10 bytes before the boundary: 'split,' then the character's first `before` bytes.
      const value = `${'y'.repeat(4 - before)}${char}z`;
      const content = withRowAt(MiB - 10, `split,${value}\nlast,ok\n`);
      expect(Buffer.from(content).indexOf(Buffer.from(char))).toBe(MiB - before);
      const { records } = await readFile(writeTemp('m.csv', content));
      expect(records.find((r) => r[0] === 'split')).toEqual(['split', value]);
      expect(records.at(-1)).toEqual(['last', 'ok']);
      expect(records.every((r) => r.length === 2 && !r[1]!.includes('\uFFFD'))).toBe(true);
    }
  });

  it('reads a CRLF file whose chunk boundary falls between CR and LF after a quoted field', async () => {
    const lines = ['id,text'];
    for (let size = 9; size < MiB - 200; size += lines.at(-1)!.length + 2)
      lines.push(`r${lines.length - 1},"${'x'.repeat(60)}"`);
    const rows = lines.length - 1;
    lines.push('');
    let text = lines.join('\r\n');
    // The closing quote and CR end the first chunk; the LF starts the next.
    const pad = MiB - 1 - text.length - 'pad,""'.length;
    text += `pad,"${'p'.repeat(pad)}"\r\nlast,"ok"\r\n`;
    expect(Buffer.from(text)[MiB - 1]).toBe(13);
    const { records } = await readFile(writeTemp('crlf.csv', text));
    expect(records).toHaveLength(rows + 2);
    expect(records.at(-2)).toEqual(['pad', 'p'.repeat(pad)]);
    expect(records.at(-1)).toEqual(['last', 'ok']);
  });

  it('reads a gzipped file, multi-byte characters included', async () => {
    const lines = ['id,name'];
    for (let i = 0; i < 50_000; i++) lines.push(`c${i},"Zoë ""${i}"", 😀"`);
    const dir = tempDir();
    writeFileSync(`${dir}/n.csv.gz`, gzipSync(lines.join('\n')));
    const { records } = await readFile(`${dir}/n.csv.gz`);
    expect(records).toHaveLength(50_000);
    records.forEach((r, i) => expect(r).toEqual([`c${i}`, `Zoë "${i}", 😀`]));
  });

  it('yields every row of a large file exactly once, in order, in batches', async () => {
    const n = 200_000;
    const lines = ['id,n,pad'];
    for (let i = 0; i < n; i++) lines.push(`c${i},${i},${i % 3 === 0 ? '"a,b"' : 'abcdefghij'}`);
    const { records, batches } = await readFile(writeTemp('big.csv', `${lines.join('\n')}\n`));
    expect(batches).toBeGreaterThan(1);
    expect(records).toHaveLength(n);
    for (let i = 0; i < n; i++) {
      const r = records[i]!;
      if (r[0] !== `c${i}` || r[1] !== String(i) || r[2] !== (i % 3 === 0 ? 'a,b' : 'abcdefghij'))
        expect.fail(`row ${i + 1} is ${JSON.stringify(r)}`);
    }
  });

  it('reads ahead of a slow consumer only a few chunks, and stops reading when closed', async () => {
    const lines = ['id,pad'];
    for (let i = 0; i < 300_000; i++) lines.push(`c${i},${'x'.repeat(90)}`);
    const file = writeTemp('slow.csv', lines.join('\n'));
    const rows = await open(file);
    const total = rows.progress().total!;
    expect(total).toBeGreaterThan(25 * MiB);
    const batches = rows.batches[Symbol.asyncIterator]();
    expect((await batches.next()).value![0]![0]).toBe('c0');
    await sleep(200);
    const ahead = rows.progress().done;
    expect(ahead).toBeLessThanOrEqual(8 * MiB);
    await rows.close();
    await sleep(100);
    expect(rows.progress().done).toBe(ahead);
  });

  it('fails clearly on an unterminated or malformed quote, naming the row', async () => {
    const cases: [string, RegExp][] = [
      ['id,v\na,1\n\nb,"2\nc,3\n', /near row 2: Quoted field unterminated/],
      ['id,v\na,1\nb,"2"x\nc,3\n', /near row 2: Trailing quote/],
      ['id,"v\na,1\n', /near row 0 \(the header\)/],
    ];
    for (const [text, message] of cases) {
      const error = await readFile(writeTemp('bad.csv', text)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SourceError);
      expect((error as Error).message).toMatch(/^source \(bad\.csv\): malformed CSV near row/);
      expect((error as Error).message).toMatch(message);
      expect((error as SourceError).hint).toMatch(/check quoting/);
    }
  });

  it('stops at a quote that never closes instead of buffering the rest of a large file', async () => {
    const lines = ['id,v', 'a,1', 'b,"2'];
    for (let i = 0; i < 100_000; i++) lines.push(`c${i},${'x'.repeat(40)}`);
    const file = writeTemp('open.csv', lines.join('\n'));
    const rows = await open(file);
    const error = await readAll(rows).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SourceError);
    expect((error as Error).message).toMatch(/malformed CSV near row 2: a record is longer than/);
    expect(rows.progress().done).toBeLessThan(rows.progress().total!);
  });

  it('fails clearly on an empty file and on a broken gzip file', async () => {
    await expect(open(writeTemp('empty.csv', '\n\n'))).rejects.toThrow(/is empty \(no header row\)/);
    const error = await open(writeTemp('x.csv.gz', 'id,v\na,1\n')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SourceError);
    expect((error as Error).message).toMatch(/^source \(x\.csv\.gz\): cannot read: incorrect header check/);
  });
});
