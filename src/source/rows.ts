import { createReadStream, statSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import Papa from 'papaparse';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { SourceError } from '../errors.js';

/** Rows of text from a CSV file or a PostgreSQL query, streamed: the header, then records in batches. */
export interface RowStream {
  /** What the rows come from, for messages (never a connection string). */
  readonly label: string;
  readonly header: string[];
  /** The records after the header, a batch (one parsed chunk of input) at a time; empty lines are skipped. */
  readonly batches: AsyncIterable<string[][]>;
  /** Bytes consumed and expected, where known, for progress. */
  progress(): { done: number; total?: number };
  close(): Promise<void>;
}

export interface CsvInput {
  type: 'csv';
  path: string;
  delimiter?: string | undefined;
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
  // pipe() does not pass on a read error of the file: the parser listens on the gunzip stream.
  if (body !== raw) raw.on('error', (error) => body.destroy(error));
  body.on('error', () => undefined);
  let stream: Omit<RowStream, 'progress'>;
  try {
    stream = await csvStream(body, { delimiter: input.delimiter }, `${label} (${path.basename(file)})`);
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
    stream = await Promise.race([csvStream(copy, { delimiter: ',', newline: '\n' }, label), failed]);
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
  input: Readable,
  options: { delimiter?: string | undefined; newline?: '\n' },
  label: string,
): Promise<Omit<RowStream, 'progress'>> {
  input.setEncoding('utf8');
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
    delimiter: options.delimiter ?? ((head: string) => detectDelimiter(head.slice(0, 1 << 16))),
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
      if (header === undefined && batch.length > 0) {
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
      fail(new SourceError(`${label}: cannot read: ${(error as Error)?.message ?? String(error)}`)),
  });

  const settled = () => new Promise<void>((resolve) => (wake = resolve));
  while (header === undefined && !failure && !ended) await settled();
  if (failure) throw failure;
  if (header === undefined)
    throw new SourceError(`${label}: is empty (no header row)`, 'export the data with a header row');
  return {
    label,
    header,
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
const rowName = (row: number): string => (row === 0 ? 'row 0 (the header)' : `row ${row}`);

function detectDelimiter(head: string): string {
  const line = head.split(/\r?\n/, 1)[0] ?? '';
  let best = ',';
  let bestCount = 0;
  for (const d of [',', ';', '\t', '|']) {
    const count = line.split(d).length - 1;
    if (count > bestCount) [best, bestCount] = [d, count];
  }
  return best;
}
