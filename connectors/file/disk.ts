import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';

/**
 * Writes that count only when whole: every byte is checked (the kernel may write less than asked when
 * the disk fills or a file size limit is reached, and says so only by the count), then flushed to disk.
 */

/** Writes all of `data` at `position`, looping on short writes; the write that cannot go on throws. */
export function writeWhole(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  try {
    while (done < data.length) {
      const n = writeSync(fd, data, done, data.length - done, position + done);
      if (n <= 0) throw Object.assign(new Error('the system wrote nothing'), { code: 'EIO' });
      done += n;
    }
  } catch (error) {
    throw new IncompleteWrite(done, data.length, error);
  }
}

/** Replaces `file` with `content` whole or not at all: a temporary file, written, flushed, renamed. */
export function replaceFile(file: string, content: string | Uint8Array): void {
  const temp = `${file}.tmp`;
  const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  try {
    const fd = openSync(temp, 'w');
    try {
      writeWhole(fd, data, 0);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
  } catch (error) {
    // On a full disk the partial copy holds space that the next attempt needs.
    try {
      rmSync(temp, { force: true });
    } catch {
      // Not a file we can remove: the error that matters is the write's.
    }
    throw error;
  }
  syncFolder(path.dirname(file));
}

/** Makes a file's creation or renaming durable: its folder's entry is flushed too. */
export function syncFolder(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch (error) {
    // Some platforms cannot open a folder for syncing; their renames are as durable as they get.
    if (['EISDIR', 'EPERM', 'EACCES'].includes((error as NodeJS.ErrnoException).code ?? '')) return;
    throw error;
  }
  try {
    fsyncSync(fd);
  } catch (error) {
    if (!['EINVAL', 'EBADF', 'EPERM'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
  } finally {
    closeSync(fd);
  }
}

/** A write the system did not finish: how far it got, and why it stopped. */
export class IncompleteWrite extends Error {
  readonly code: string | undefined;
  constructor(
    readonly written: number,
    readonly wanted: number,
    cause: unknown,
  ) {
    super(
      `wrote ${written.toLocaleString('en')} of ${wanted.toLocaleString('en')} bytes: ${reasonOf(cause)}`,
      {
        cause,
      },
    );
    this.code = (cause as NodeJS.ErrnoException).code;
  }
}

/** `ENOSPC: no space left on device` → `no space left on device (ENOSPC)`: the cause without the call. */
export function reasonOf(error: unknown): string {
  if (error instanceof IncompleteWrite) return error.message;
  const e = error as NodeJS.ErrnoException;
  if (!e.code) return e.message ?? String(error);
  const text = e.message
    .replace(new RegExp(`^${e.code}: `), '')
    .replace(/, (open|write|rename|fsync)\b.*$/, '');
  return `${text} (${e.code})`;
}
