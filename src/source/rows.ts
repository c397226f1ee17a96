import { createReadStream, statSync } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { parse, CsvError } from 'csv-parse';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { SourceError } from '../errors.js';

/** Rows of text from a CSV file or a PostgreSQL query, streamed: the header, then one record at a time. */
export interface RowStream {
  /** What the rows come from, for messages (never a connection string). */
  readonly label: string;
  readonly header: string[];
  readonly records: AsyncIterable<string[]>;
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
  const raw = createReadStream(file, { highWaterMark: 1 << 20 });
  const body = file.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
  body.on('error', () => undefined);
  const stream = await csvStream(body, input.delimiter, `${label} (${path.basename(file)})`);
  return { ...stream, progress: () => ({ done: raw.bytesRead, total }) };
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
  copy.on('data', (chunk: Buffer) => (bytes += chunk.length));
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
  const stream = await Promise.race([csvStream(copy, ',', label), failed]);
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

/** Parses CSV from a byte stream, detecting the delimiter from the header line when not given. */
async function csvStream(
  input: Readable,
  delimiter: string | undefined,
  label: string,
): Promise<Omit<RowStream, 'progress'>> {
  const chunks = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let first: IteratorResult<Buffer>;
  try {
    first = await chunks.next();
  } catch (error) {
    throw new SourceError(`${label}: cannot read: ${(error as Error).message}`);
  }
  const head = first.done ? '' : first.value.toString('utf8', 0, Math.min(first.value.length, 1 << 16));
  const parser = parse({
    delimiter: delimiter ?? detectDelimiter(head),
    bom: true,
    relax_column_count: true,
    skip_empty_lines: true,
    max_record_size: 1 << 20,
  });
  let failure: unknown;
  const feed = (async () => {
    if (!first.done) parser.write(first.value);
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
      if (!parser.write(next.value)) await once(parser, 'drain');
    }
    parser.end();
  })();
  feed.catch((error: unknown) => {
    failure = error;
    parser.destroy(error as Error);
  });

  const records = parser[Symbol.asyncIterator]() as AsyncIterator<string[]>;
  const wrapError = (error: unknown): unknown => {
    const cause = failure ?? error;
    if (cause instanceof SourceError) return cause;
    if (cause instanceof CsvError)
      return new SourceError(
        `${label}: malformed CSV near line ${(cause as CsvError & { lines?: number }).lines ?? '?'}: ${cause.message.split(':')[0]}`,
        'check quoting in the file (a field with a comma or quote must be wrapped in double quotes, inner quotes doubled)',
      );
    return new SourceError(`${label}: cannot read: ${(cause as Error).message ?? String(cause)}`);
  };
  let headerResult: IteratorResult<string[]>;
  try {
    headerResult = await records.next();
  } catch (error) {
    throw wrapError(error);
  }
  if (headerResult.done)
    throw new SourceError(`${label}: is empty (no header row)`, 'export the data with a header row');
  const header = headerResult.value.map((h) => h.trim());
  return {
    label,
    header,
    records: {
      async *[Symbol.asyncIterator]() {
        try {
          for (let next = await records.next(); !next.done; next = await records.next()) yield next.value;
        } catch (error) {
          throw wrapError(error);
        }
        if (failure) throw wrapError(failure);
      },
    },
    close: async () => {
      input.destroy();
      parser.destroy();
    },
  };
}

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
