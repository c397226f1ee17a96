import { createReadStream, statSync } from 'node:fs';
import path from 'node:path';
import { createGunzip } from 'node:zlib';
import Papa from 'papaparse';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { Encoding } from '../config/schema.js';
import { SourceError } from '../errors.js';
import { countReplacements, SourceDecoder, undecodableReason } from './decode.js';

/** Rows of text from a CSV file or a PostgreSQL query, streamed: the header, then records in batches. */
export interface RowStream {
  /** What the rows come from, for messages (never a connection string). */
  readonly label: string;
  readonly header: string[];
  /** The records after the header, a batch (one parsed chunk of input) at a time; empty lines are skipped. */
  readonly batches: AsyncIterable<string[][]>;
  /** Bytes consumed and expected, where known, for progress. */
  progress(): { done: number; total?: number };
  /** How a CSV file's fields were split, for messages (none for PostgreSQL, whose COPY we read). */
  readonly delimiter?: { char: string; from: 'configured' | 'detected' | 'default' };
  close(): Promise<void>;
}

/**
 * A record that held bytes the source's encoding does not allow, in place of its fields: it has no
 * fields, so a reader that checks the number of fields stops at it and asks `isUndecodable`.
 */
const UNDECODABLE: string[] = Object.freeze([]) as unknown as string[];
export const isUndecodable = (record: readonly string[]): boolean => record === UNDECODABLE;
export { undecodableReason };

/** A delimiter as a person reads it in a message. */
const delimiterName = (char: string): string => (char === '\t' ? 'tab' : `'${char}'`);

/** How the rows were split, said in a message about columns or field counts; '' for PostgreSQL. */
export function delimiterNote(rows: Pick<RowStream, 'delimiter'>): string {
  const d = rows.delimiter;
  if (!d) return '';
  const from = {
    configured: 'configured',
    detected: 'detected from the header',
    default: "the default: the header has no ',', ';', tab or '|'",
  }[d.from];
  return `delimiter ${delimiterName(d.char)} (${from})`;
}

export interface CsvInput {
  type: 'csv';
  path: string;
  delimiter?: string | undefined;
  encoding?: Encoding | undefined;
}
export interface PostgresInput {
  type: 'postgres';
  url: string;
  query: string;
}

export function openRows(
  input: CsvInput | PostgresInput,
  baseDir: string,
  label: string,
): Promise<RowStream> {
  return input.type === 'csv' ? openCsv(input, baseDir, label) : openPostgres(input, label);
}

async function openCsv(input: CsvInput, baseDir: string, label: string): Promise<RowStream> {
  const file = path.resolve(baseDir, input.path);
  let total: number;
  try {
    total = statSync(file).size;
  } catch (error) {
    throw new SourceError(
      `${label}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      'check the path (relative paths are resolved against the config file)',
    );
  }
  // 64 KiB reads: a batch of about a thousand rows; parsing 1 MiB strings is a third slower (more GC).
  const raw = createReadStream(file, { highWaterMark: 1 << 16 });
  const body = file.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
  const name = `${label} (${path.basename(file)})`;
  const text = body.pipe(new SourceDecoder(input.encoding ?? 'utf-8', name, label));
  // pipe() does not pass on errors: the parser listens on the decoder.
  if (body !== raw) raw.on('error', (error) => body.destroy(error));
  body.on('error', (error: Error) => text.destroy(error));
  text.on('error', () => undefined);
  text.once('close', () => body.destroy());
  let stream: Omit<RowStream, 'progress'>;
  try {
    stream = await csvStream(text, { delimiter: input.delimiter }, name);
  } catch (error) {
    raw.destroy();
    throw error;
  }
  return {
    ...stream,
    progress: () => ({ done: raw.bytesRead, total }),
    close: async () => {
      await stream.close();
      raw.destroy();
    },
  };
}

async function openPostgres(input: PostgresInput, label: string): Promise<RowStream> {
  const client = new pg.Client({ connectionString: input.url, application_name: 'audience-sync' });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    throw new SourceError(
      `${label}: cannot connect to PostgreSQL at ${describeUrl(input.url)}: ${(error as Error).message}`,
      'check the connection string in the environment variable named in the config, and that the server is up',
    );
  }
  const query = input.query.trim().replace(/;+\s*$/, '');
  // COPY streams rows in text as a CSV file would: one parser for both sources, and no cursor round-trips.
  await client.query("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'");
  const copy = client.query(copyTo(`COPY (${query}) TO STDOUT WITH (FORMAT csv, HEADER true)`));
  let bytes = 0;
  // Decoded to text by the parser (setEncoding), so counted back in bytes.
  copy.on('data', (chunk: string | Buffer) => (bytes += Buffer.byteLength(chunk)));
  const failed = new Promise<never>((_, reject) =>
    copy.once('error', (error: Error & { position?: string }) =>
      reject(
        new SourceError(
          `${label}: PostgreSQL rejected the query: ${error.message}${error.position ? ` (at character ${error.position})` : ''}`,
          'run the query in psql to check it; it must be a single SELECT (no trailing statements)',
        ),
      ),
    ),
  );
  failed.catch(() => undefined);
  let stream: Omit<RowStream, 'progress'>;
  try {
    // PostgreSQL sends UTF-8 (node-postgres sets client_encoding): checked all the same, as a file is.
    const text = copy.pipe(new SourceDecoder('utf-8', label, label));
    text.on('error', () => undefined);
    text.once('close', () => copy.destroy());
    stream = await Promise.race([
      csvStream(text, { delimiter: ',', newline: '\n' }, label).then(({ delimiter: _, ...rest }) => rest),
      failed,
    ]);
  } catch (error) {
    copy.destroy();
    await client.end().catch(() => undefined);
    throw error;
  }
  return {
    ...stream,
    progress: () => ({ done: bytes }),
    close: async () => {
      await stream.close();
      await client.end().catch(() => undefined);
    },
  };
}

function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return 'the configured URL';
  }
}

/** A record longer than this (in characters) means a quote that never closes: fail rather than buffer on. */
const MAX_RECORD = 1 << 20;
/** Batches parsed ahead of the consumer before the input is paused. */
const AHEAD = 4;
const QUOTING_HINT =
  'check quoting in the file (a field with a comma or quote must be wrapped in double quotes, inner quotes doubled)';

/**
 * Parses CSV from a byte stream with papaparse, a batch of records per chunk of input. The delimiter is
 * detected from the header line when not given; the line ending is detected unless given.
 */
async function csvStream(
  input: SourceDecoder,
  options: { delimiter?: string | undefined; newline?: '\n' },
  label: string,
): Promise<Omit<RowStream, 'progress'>> {
  const delimiter: NonNullable<RowStream['delimiter']> = options.delimiter
    ? { char: options.delimiter, from: 'configured' }
    : { char: ',', from: 'detected' };
  const ready: string[][][] = [];
  let header: string[] | undefined;
  let failure: SourceError | undefined;
  let ended = false;
  let closed = false;
  /** The parser, while paused for the consumer to catch up. */
  let paused: Papa.Parser | undefined;
  let wake: (() => void) | undefined;
  /** Characters received (counted before papaparse sees them), less a BOM: to tell how long the unparsed rest is. */
  let received = 0;
  /** Non-empty rows parsed so far, the header included: row N of the file (row 1 after the header) is index N. */
  let parsedRows = 0;

  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const fail = (error: SourceError): void => {
    failure ??= error;
    input.destroy();
    notify();
  };
  const resume = (): void => {
    const parser = paused;
    if (!parser) return;
    paused = undefined;
    // The input first: the parser's resume may parse a queued chunk and pause both again at once.
    input.resume();
    parser.resume();
  };

  // Registered before papaparse's own listener, so the count includes each chunk before it is parsed.
  input.on('data', (text: string) => (received += text.length));
  Papa.parse<string[]>(input, {
    delimiter:
      options.delimiter ??
      ((head: string) => {
        const found = detectDelimiter(head.slice(0, 1 << 16));
        if (found) delimiter.char = found;
        else delimiter.from = 'default';
        return delimiter.char;
      }),
    ...(options.newline ? { newline: options.newline } : {}),
    header: false,
    dynamicTyping: false,
    // Empty lines are dropped below: papaparse's error rows count them, and we number rows without them.
    skipEmptyLines: false,
    beforeFirstChunk: (chunk) => {
      if (chunk.charCodeAt(0) !== 0xfeff) return chunk;
      received--;
      return chunk.slice(1);
    },
    chunk: (results, parser) => {
      if (failure || closed) return parser.abort();
      const data = results.data;
      // An error in the last, unfinished row of a chunk is no error yet: that row is parsed again with the next chunk.
      const quotes = results.errors.find((e) => e.type === 'Quotes' && (e.row ?? 0) < data.length);
      if (quotes) {
        let row = parsedRows;
        for (let i = 0; i < (quotes.row ?? 0); i++) if (!isEmpty(data[i]!)) row++;
        fail(
          new SourceError(`${label}: malformed CSV near ${rowName(row)}: ${quotes.message}`, QUOTING_HINT),
        );
        return parser.abort();
      }
      let batch = data;
      for (let i = 0; i < data.length; i++)
        if (isEmpty(data[i]!)) {
          batch = data.filter((rec) => !isEmpty(rec));
          break;
        }
      parsedRows += batch.length;
      if (input.replaced > 0) claimUndecodable(batch, input);
      if (header === undefined && batch.length > 0) {
        if (isUndecodable(batch[0]!)) {
          fail(
            new SourceError(
              `${label}: the header row is not UTF-8 text`,
              `set ${input.configPath}.encoding: latin1 or windows-1252 if the file was written in one of them`,
            ),
          );
          return parser.abort();
        }
        header = batch[0]!.map((h) => h.trim());
        batch = batch.slice(1);
      }
      if (batch.length > 0) {
        ready.push(batch);
        notify();
      }
      if (received - results.meta.cursor > MAX_RECORD) {
        fail(
          new SourceError(
            `${label}: malformed CSV near ${rowName(parsedRows)}: a record is longer than ${MAX_RECORD} characters (a quote that is never closed?)`,
            QUOTING_HINT,
          ),
        );
        return parser.abort();
      }
      if (ready.length >= AHEAD && !paused) {
        parser.pause();
        input.pause();
        paused = parser;
      }
    },
    complete: () => {
      ended = true;
      notify();
    },
    error: (error: unknown) =>
      fail(
        error instanceof SourceError
          ? error
          : new SourceError(`${label}: cannot read: ${(error as Error)?.message ?? String(error)}`),
      ),
  });

  const settled = () => new Promise<void>((resolve) => (wake = resolve));
  while (header === undefined && !failure && !ended) await settled();
  if (failure) throw failure;
  if (header === undefined)
    throw new SourceError(`${label}: is empty (no header row)`, 'export the data with a header row');
  return {
    label,
    header,
    delimiter,
    batches: {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          if (failure) throw failure;
          const batch = ready.shift();
          if (batch) {
            if (ready.length === 0) resume();
            yield batch;
          } else if (ended) return;
          else {
            resume();
            await settled();
          }
        }
      },
    },
    close: async () => {
      closed = true;
      input.destroy();
    },
  };
}

const isEmpty = (rec: string[]): boolean => rec.length === 1 && rec[0] === '';

/** Replaces the records that hold text decoded from invalid bytes (U+FFFD) by UNDECODABLE. */
function claimUndecodable(batch: string[][], decoder: SourceDecoder): void {
  for (let i = 0; i < batch.length && decoder.replaced > 0; i++) {
    let found = 0;
    for (const field of batch[i]!) if (field.includes('\ufffd')) found += countReplacements(field);
    if (found === 0) continue;
    batch[i] = UNDECODABLE;
    decoder.replaced = Math.max(0, decoder.replaced - found);
  }
}

const rowName = (row: number): string => (row === 0 ? 'row 0 (the header)' : `row ${row}`);

/** The delimiter the header line uses most, or undefined when it has none. */
function detectDelimiter(head: string): string | undefined {
  const line = head.split(/\r?\n/, 1)[0] ?? '';
  let best: string | undefined;
  let bestCount = 0;
  for (const d of [',', ';', '\t', '|']) {
    const count = line.split(d).length - 1;
    if (count > bestCount) [best, bestCount] = [d, count];
  }
  return best;
}
