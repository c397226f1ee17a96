import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { SingleBar } from 'cli-progress';

/** A small aligned table for stderr; numbers right-aligned. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const numeric = headers.map(
    (_, c) =>
      rows.length > 0 && rows.every((r) => typeof r[c] === 'number' || /^[\d.,% -]+$/.test(String(r[c]))),
  );
  const line = (r: string[]) =>
    r
      .map((v, c) => (numeric[c] ? v.padStart(widths[c]!) : v.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd();
  return (
    [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n') +
    '\n'
  );
}

export function thousands(n: number): string {
  return n.toLocaleString('en-US');
}

/** A progress bar on a terminal; nothing when stderr is a pipe or CI runs us. */
export function progressBar(label: string): {
  update(done: number, total?: number, rows?: number): void;
  stop(): void;
} {
  if (!process.stderr.isTTY || process.env.CI) return { update() {}, stop() {} };
  const bar = new SingleBar({
    stream: process.stderr,
    format: `${label} [{bar}] {percentage}% | {rows} rows`,
    hideCursor: true,
    clearOnComplete: true,
  });
  let started = false;
  return {
    update(done, total, rows) {
      if (!started) {
        bar.start(total ?? 0, 0, { rows: 0 });
        started = true;
      }
      if (total !== undefined) bar.setTotal(total);
      bar.update(done, { rows: thousands(rows ?? 0) });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** Buffered line writer with backpressure, to a file or stdout. */
export class LineWriter {
  private buffer: string[] = [];
  private size = 0;
  private constructor(
    private readonly out: Writable,
    private readonly owned: boolean,
  ) {}

  static open(file: string | undefined): LineWriter {
    return file ? new LineWriter(createWriteStream(file), true) : new LineWriter(process.stdout, false);
  }

  async line(text: string): Promise<void> {
    this.buffer.push(text);
    this.size += text.length;
    if (this.size >= 1 << 16) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.buffer.length === 0) return;
    const chunk = this.buffer.join('\n') + '\n';
    this.buffer = [];
    this.size = 0;
    if (!this.out.write(chunk)) await once(this.out, 'drain');
  }

  async close(): Promise<void> {
    await this.flush();
    if (this.owned)
      await new Promise<void>((resolve, reject) =>
        this.out.end((error?: Error | null) => (error ? reject(error) : resolve())),
      );
  }
}

/** Quotes a CSV field only when it has to. */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) || value !== value.trim() ? `"${value.replace(/"/g, '""')}"` : value;
}
