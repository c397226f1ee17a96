import { randomUUID } from 'node:crypto';
import { linkSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConnectorError } from '../../src/connector.js';

/** Who holds a lock: written into the lock file by its holder. */
interface Owner {
  pid: number;
  host: string;
  nonce: string;
  at: string;
}

export interface LockOptions {
  /** A lock older than this is taken over even when its holder may still run (another host, a reused pid). */
  staleMs: number;
  /** How long to wait for a lock held by a live process before giving up (the error is retryable). */
  waitMs: number;
}

/**
 * An exclusive lock between processes on one folder: a file, linked into place only where none exists,
 * that names its holder.
 * Held only around synchronous work (nothing awaits inside), so a holder on this host that no longer runs
 * has crashed, and its lock is taken over at once; a lock from another host is taken over by its age.
 */
export class FolderLock {
  private readonly host = hostname();
  private links = true;

  constructor(
    readonly file: string,
    private readonly options: LockOptions = { staleMs: 10 * 60_000, waitMs: 2 * 60_000 },
  ) {}

  /** Runs `body` while holding the lock; a lock that cannot be created throws `LockFailed`. */
  async hold<T>(body: () => T): Promise<T> {
    let nonce: string;
    try {
      nonce = await this.acquire();
    } catch (error) {
      throw error instanceof ConnectorError ? error : new LockFailed(this.file, error);
    }
    try {
      return body();
    } finally {
      this.release(nonce);
    }
  }

  private async acquire(): Promise<string> {
    const nonce = randomUUID();
    const mine: Owner = { pid: process.pid, host: this.host, nonce, at: new Date().toISOString() };
    // Written aside, then linked into place: a lock file always names its holder, even after a crash.
    const named = `${this.file}.${nonce}`;
    try {
      writeFileSync(named, JSON.stringify(mine), { flag: 'wx' });
      return await this.place(named, nonce);
    } finally {
      rmSync(named, { force: true });
    }
  }

  private async place(named: string, nonce: string): Promise<string> {
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      try {
        if (this.links) linkSync(named, this.file);
        else writeFileSync(this.file, readFileSync(named), { flag: 'wx' });
        return nonce;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? '';
        // A file system without hard links (some network shares): created in place instead.
        if (this.links && ['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'].includes(code)) {
          this.links = false;
          continue;
        }
        if (code !== 'EEXIST') throw error;
      }
      const held = this.inspect();
      if (!held) continue; // released between our attempt and the look
      if (held.stale) {
        this.takeOver(held.owner);
        continue;
      }
      if (Date.now() - started > this.options.waitMs)
        throw new ConnectorError(
          `the file destination's folder is locked by ${describe(held.owner)} (${this.file}); ` +
            `if no such process runs, delete that file`,
          'retryable',
        );
      await sleep(Math.min(50, 1 + attempt));
    }
  }

  /** The current holder and whether its lock is stale; undefined when there is no lock file. */
  private inspect(): { owner: Owner | undefined; stale: boolean } | undefined {
    let text: string;
    let mtimeMs: number;
    try {
      mtimeMs = statSync(this.file).mtimeMs;
      text = readFileSync(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const owner = parseOwner(text);
    const old = Date.now() - mtimeMs > this.options.staleMs;
    // A lock file that names no one (written by hand, or damaged) is judged by its age alone.
    const dead = owner !== undefined && owner.host === this.host && !running(owner.pid);
    return { owner, stale: dead || old };
  }

  /**
   * Moves the stale lock aside under a name of our own, so that of two processes taking over at once only
   * one removes it; a fresh lock moved aside by mistake (taken between our look and the move) goes back.
   */
  private takeOver(stale: Owner | undefined): void {
    const aside = `${this.file}.stale-${randomUUID()}`;
    try {
      renameSync(this.file, aside);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    const moved = parseOwner(readFileSync(aside, 'utf8'));
    if (moved && moved.nonce !== stale?.nonce) {
      try {
        linkSync(aside, this.file);
      } catch {
        // Someone holds a newer lock already: the one moved aside was released by then in all but name.
      }
    }
    unlinkSync(aside);
  }

  private release(nonce: string): void {
    // Only our own lock: one taken over as stale belongs to its new holder.
    if (parseOwner(readFileSyncOrEmpty(this.file))?.nonce === nonce) unlinkSync(this.file);
  }
}

/** The lock file could not be created or read (a full disk, no permission): `cause` says why. */
export class LockFailed extends Error {
  constructor(
    readonly file: string,
    override readonly cause: unknown,
  ) {
    super(`could not lock ${file}`, { cause });
  }
}

function parseOwner(text: string): Owner | undefined {
  try {
    const o = JSON.parse(text) as Partial<Owner>;
    return typeof o.pid === 'number' && typeof o.host === 'string' && typeof o.nonce === 'string'
      ? (o as Owner)
      : undefined;
  } catch {
    return undefined;
  }
}

function readFileSyncOrEmpty(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function describe(owner: Owner | undefined): string {
  return owner
    ? `process ${owner.pid} on ${owner.host} since ${owner.at}`
    : 'a process that has not said who it is';
}
