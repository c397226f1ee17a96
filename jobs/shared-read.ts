import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../src/config/schema.js';
import type { Segmented } from '../src/score/pipeline.js';

export interface SharedRead {
  segmented: Segmented;
  /**
   * What the runs that share the read do once for it (the segment snapshot of its scoring), by name: the
   * first run to ask makes it, the others wait for the same promise. A result `keep` refuses (a snapshot
   * that failed), or an error, is not kept: the next run to ask makes it again.
   */
  once<T>(name: string, make: () => Promise<T>, keep?: (made: T) => boolean): Promise<T>;
  /** Another run's read, taken as it is. */
  reused: boolean;
  /** When the read began. */
  readAt: Date;
}

interface Entry {
  key: string;
  readAt: Date;
  /** Whether the read may serve runs that start after it ended (its source files can be checked). */
  keep: boolean;
  value: Promise<Segmented>;
  done?: boolean;
  made: Map<string, Promise<unknown>>;
  /** When it is let go: `sync.reuse_read_seconds` after the read, or after the last run that took it since. */
  expiry?: NodeJS.Timeout;
}

/**
 * One read and scoring of the source, shared by a worker's runs: runs that start while it is under way
 * wait for it, and runs that start within `sync.reuse_read_seconds` after it, or after the last run that
 * took it (a queue of a destination's audiences, run one after the other), take it too, when the config
 * is the same, the day (UTC) is the same and the source's files are unchanged (size, modification time,
 * inode). A PostgreSQL source is shared only while the read is under way: nothing cheap tells that its rows
 * are unchanged. Only the latest read is held (it is the size of the source's customers).
 */
export class SharedReads {
  private last: Entry | undefined;

  async get(config: Config, baseDir: string, read: () => Promise<Segmented>): Promise<SharedRead> {
    const { key, keep } = await readKey(config, baseDir);
    const last = this.last;
    const keepMs = config.sync.reuse_read_seconds * 1000;
    if (last && last.key === key && (!last.done || last.keep)) {
      if (last.done) this.keepFor(last, keepMs);
      return { segmented: await last.value, reused: true, readAt: last.readAt, once: onceIn(last) };
    }
    const entry: Entry = {
      key,
      readAt: new Date(),
      keep: keep && keepMs > 0,
      value: read(),
      made: new Map(),
    };
    this.last = entry;
    entry.value.then(
      () => {
        entry.done = true;
        if (entry.keep) this.keepFor(entry, keepMs);
        else this.forget(entry);
      },
      () => this.forget(entry),
    );
    return { segmented: await entry.value, reused: false, readAt: entry.readAt, once: onceIn(entry) };
  }

  /** Holds a finished read `ms` from now (a run that takes it holds it longer). */
  private keepFor(entry: Entry, ms: number): void {
    clearTimeout(entry.expiry);
    entry.expiry = setTimeout(() => this.forget(entry), ms);
    entry.expiry.unref();
  }

  private forget(entry: Entry): void {
    clearTimeout(entry.expiry);
    if (this.last === entry) this.last = undefined;
  }
}

/** `SharedRead.once` over an entry's promises. */
function onceIn(entry: Entry): SharedRead['once'] {
  return <T>(name: string, make: () => Promise<T>, keep: (made: T) => boolean = () => true) => {
    let made = entry.made.get(name) as Promise<T> | undefined;
    if (made) return made;
    const mine = (made = make());
    entry.made.set(name, mine);
    const drop = () => {
      if (entry.made.get(name) === mine) entry.made.delete(name);
    };
    mine.then((value) => !keep(value) && drop(), drop);
    return made;
  };
}

/**
 * What a read depends on, hashed: the config (its source, profiles, scoring and segments among the rest),
 * the UTC day (a relative analysis date moves with it) and, for files, their size, modification time and
 * inode. `keep`: every source is a file, so a later run can tell whether it changed.
 */
async function readKey(config: Config, baseDir: string): Promise<{ key: string; keep: boolean }> {
  const hash = createHash('sha256')
    .update(JSON.stringify(config))
    .update(new Date().toISOString().slice(0, 10));
  let keep = true;
  for (const source of [config.source, config.profiles]) {
    if (!source) continue;
    if (source.type !== 'csv') {
      keep = false;
      continue;
    }
    try {
      const s = await stat(path.resolve(baseDir, source.path), { bigint: true });
      hash.update(`\0${s.size}:${s.mtimeNs}:${s.ino}`);
    } catch {
      keep = false;
    }
  }
  return { key: hash.digest('hex'), keep };
}
