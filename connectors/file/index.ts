import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
} from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type {
  AudienceStats,
  BatchOutcome,
  PollOutcome,
  Check,
  ConnectorClient,
  ConnectorDefinition,
  Member,
  RemoteAudience,
} from '../../src/connector.js';
import { ConnectorError } from '../../src/connector.js';
import { sha256Slot, isSha256Hex } from '../../src/identify/hash.js';
import { normalizeEmail, normalizePhone, phoneSkip } from '../../src/identify/normalize.js';
import type { Identified, Person, SkipReason, Slot } from '../../src/identify/types.js';
import { ExitCode, UserError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { reasonOf, replaceFile, syncFolder, writeWhole } from './disk.js';
import { FolderLock, LockFailed } from './lock.js';

/**
 * `file`: a platform on disk, for the quick start, tests and dry runs. Every change batch (one line per
 * member, as sent) is appended whole and flushed to `changes.jsonl` before `add`/`remove` returns, so a
 * batch counts only once the disk holds all of it. Each audience's `<id>.members` file (its hashed
 * identifiers, `email=<sha256>`, one per line, sorted) is the member file as of a log position, rewritten
 * from the log when a client closes. Any number of processes may share the folder: each step runs under
 * a lock file and starts from what is on disk, never from a process's own copy.
 */

export const fileConfigSchema = z.strictObject({
  type: z.literal('file'),
  /** Folder holding the audience files and the change log (relative to the config file). */
  path: z.string().min(1),
  /** Country for phone numbers written without a country code. */
  default_country: z
    .string()
    .regex(/^[A-Za-z]{2}$/, 'expected an ISO 3166 alpha-2 code such as US')
    .default('US'),
  batch_size: z.number().int().min(1).max(100_000).default(10_000),
  /**
   * Behave like a platform that processes uploads later (Google, Meta): batches are accepted as
   * pending and take effect this many seconds after they were sent. 0: final at once.
   */
  process_after_seconds: z.number().min(0).max(86_400).default(0),
});
export type FileConfig = z.infer<typeof fileConfigSchema>;

const SLOTS = ['email', 'phone'] as const;

/** SHA-256 of the trimmed, lowercased email and of the E.164 phone; hashed input is kept as it is. */
export function identify(person: Person, config: Pick<FileConfig, 'default_country'>): Identified {
  let email: Slot | undefined;
  let phone: Slot | undefined;
  let reason: SkipReason | undefined;
  const rawEmail = person.email?.trim();
  if (rawEmail) {
    if (isSha256Hex(rawEmail)) email = Buffer.from(rawEmail.toLowerCase(), 'hex');
    else {
      const e = normalizeEmail(rawEmail);
      if (e) email = sha256Slot(e);
      else reason = 'invalid email';
    }
  }
  const rawPhone = person.phone?.trim();
  if (rawPhone) {
    if (isSha256Hex(rawPhone)) phone = Buffer.from(rawPhone.toLowerCase(), 'hex');
    else {
      const p = normalizePhone(rawPhone, person.country?.trim() || config.default_country);
      if (p) phone = sha256Slot(p);
      else reason ??= phoneSkip(rawPhone, person.country?.trim() || undefined);
    }
  }
  if (!email && !phone) return { skip: reason ?? 'no usable identifier' };
  return { slots: [email, phone] };
}

/** One line per member: `email=<hex> phone=<hex>`, in slot order, empty slots left out. */
export function memberLine(slots: readonly (Buffer | undefined)[]): string {
  const parts: string[] = [];
  slots.forEach((s, i) => {
    if (s) parts.push(`${SLOTS[i] ?? `slot${i}`}=${s.toString('hex')}`);
  });
  return parts.join(' ');
}

const logEntrySchema = z.object({
  seq: z.number().int().positive(),
  at: z.string(),
  audience: z.string(),
  op: z.enum(['add', 'remove', 'replace']),
  members: z.array(z.string()),
  /** When the batch takes effect (process_after_seconds > 0); at once when absent. */
  applies_at: z.string().optional(),
});
type LogEntry = z.infer<typeof logEntrySchema>;

/**
 * An audience as the platform sees it: the identifiers it holds. Like an ad platform, it matches
 * people by any of their identifiers: adding a member adds its identifiers, removing one takes them out.
 */
class Members {
  readonly identifiers = new Set<string>();

  add(line: string): void {
    for (const id of line.split(' ')) if (id) this.identifiers.add(id);
  }

  remove(line: string): void {
    for (const id of line.split(' ')) this.identifiers.delete(id);
  }

  clear(): void {
    this.identifiers.clear();
  }
}

const slug = (name: string): string =>
  name
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '') || 'audience';

/** Errors of a disk that needs someone to act (space, quota, size limit, permissions) before a retry helps. */
const NEEDS_AN_OPERATOR = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'EROFS', 'EIO', 'EACCES', 'EPERM', 'EISDIR']);

export class FileClient implements ConnectorClient {
  private readonly dir: string;
  private readonly logFile: string;
  private readonly registryFile: string;
  private readonly lock: FolderLock;
  private readonly delayMs: number;
  private registry: Record<string, string> = {};
  /** `epochs.json`: per audience id, the epoch of the state that last filled it (see `stamp`). */
  private readonly epochFile: string;
  /** The change log's whole entries in file order, and the bytes they take from its start. */
  private log: LogEntry[] = [];
  private logBytes = 0;
  private lastSeq = 0;
  private tornLines = 0;
  /** Whether this client synced anything (a client used only for `check` writes nothing). */
  private used = false;

  constructor(
    config: FileConfig,
    baseDir: string,
    private readonly logger?: Logger,
  ) {
    this.delayMs = config.process_after_seconds * 1000;
    this.dir = path.resolve(baseDir, config.path);
    this.logFile = path.join(this.dir, 'changes.jsonl');
    this.registryFile = path.join(this.dir, 'audiences.json');
    this.epochFile = path.join(this.dir, 'epochs.json');
    this.lock = new FolderLock(path.join(this.dir, 'audiences.lock'));
  }

  async check(): Promise<Check[]> {
    // The folder, or the nearest folder above it that exists, must be writable; nothing is created.
    let dir = this.dir;
    while (!existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
    try {
      accessSync(dir, constants.W_OK);
      return [{ name: 'folder', ok: true, detail: `${this.dir} is writable` }];
    } catch (error) {
      return [
        {
          name: 'folder',
          ok: false,
          detail: `${dir} is not writable: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
        },
      ];
    }
  }

  /**
   * Found or created under the lock, from the registry on disk: two processes never make twins. A found
   * audience answers with the epoch `epochs.json` holds for it; a new one is given `epoch`.
   */
  async ensureAudience(
    name: string,
    knownId?: string,
    epoch?: string,
  ): Promise<RemoteAudience & { created: boolean; epoch?: string | undefined }> {
    return this.locked(() => {
      const epochs = readJsonMap(this.epochFile);
      const existing =
        knownId && this.registry[knownId] === name
          ? knownId
          : Object.keys(this.registry).find((id) => this.registry[id] === name);
      if (existing) return { id: existing, name, created: false, epoch: epochs[existing] };
      let id = slug(name);
      for (let n = 2; this.registry[id] !== undefined; n++) id = `${slug(name)}-${n}`;
      const registry = { ...this.registry, [id]: name };
      try {
        if (epoch !== undefined) this.writeEpoch(epochs, id, epoch);
        replaceFile(this.registryFile, JSON.stringify(registry, null, 2) + '\n');
      } catch (error) {
        throw this.diskError(`could not create audience '${name}' in ${this.registryFile}`, error);
      }
      this.registry = registry;
      return { id, name, created: true, epoch };
    });
  }

  /** Records the state's epoch for the audience, as a platform's description would carry it. */
  async stamp(audience: RemoteAudience, epoch: string): Promise<void> {
    await this.locked(() => {
      const epochs = readJsonMap(this.epochFile);
      if (epochs[audience.id] === epoch) return;
      try {
        this.writeEpoch(epochs, audience.id, epoch);
      } catch (error) {
        throw this.diskError(`could not mark audience '${audience.name}' in ${this.epochFile}`, error);
      }
    });
  }

  private writeEpoch(epochs: Record<string, string>, id: string, epoch: string): void {
    replaceFile(this.epochFile, JSON.stringify({ ...epochs, [id]: epoch }, null, 2) + '\n');
  }

  async add(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.apply(audience, 'add', members);
  }

  async remove(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.apply(audience, 'remove', members);
  }

  async replace(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.apply(audience, 'replace', members);
  }

  /** The identifiers the audience holds: like a platform, the file cannot tell which belong to one person. */
  async stats(audience: RemoteAudience): Promise<AudienceStats> {
    return this.locked(() => ({
      size: this.holding(audience.id).members.identifiers.size,
      counts: 'identifiers',
      warnings: [],
    }));
  }

  /**
   * Brings every member file that is behind the change log up to date (this run's batches, another
   * process's, or those of a run whose member files could not be written). Each file is tried; if one
   * cannot be written the error says so, and the next client to close writes it from the log.
   */
  async close(): Promise<void> {
    if (!this.used) return;
    const ids = await this.locked(() => Object.keys(this.registry));
    const failed: string[] = [];
    let cause: unknown;
    for (const id of ids) {
      try {
        await this.locked(() => this.writeMembers(id));
      } catch (error) {
        failed.push(`'${this.registry[id] ?? id}'`);
        cause ??= error;
      }
    }
    if (this.tornLines > 0)
      this.logger?.warn(
        { file: this.logFile, lines: this.tornLines },
        `${this.logFile}: ${this.tornLines} torn line(s) left by an interrupted write were ignored`,
      );
    if (failed.length > 0)
      throw new UserError(
        `could not write the member files of ${failed.join(', ')} in ${this.dir}: ${reasonOf(cause)}`,
        ExitCode.failed,
        `every batch sent is in ${this.logFile}, and the next sync of this destination writes these files from it; ${
          isNeedsOperator(cause) ? 'free space on that disk (or raise the file size limit), then ' : ''
        }sync again`,
      );
  }

  private async apply(
    audience: RemoteAudience,
    op: LogEntry['op'],
    members: readonly Member[],
  ): Promise<BatchOutcome> {
    const lines = members.map((m) => memberLine(m.slots));
    return this.locked(() => {
      if (this.registry[audience.id] === undefined)
        throw new ConnectorError(`file audience '${audience.id}' does not exist in ${this.dir}`, 'permanent');
      const at = new Date();
      const entry: LogEntry = {
        seq: this.nextSeq(),
        at: at.toISOString(),
        audience: audience.id,
        op,
        members: lines,
        ...(this.delayMs > 0 ? { applies_at: new Date(at.getTime() + this.delayMs).toISOString() } : {}),
      };
      try {
        this.append(entry);
      } catch (error) {
        throw this.diskError(
          `could not write a batch of ${lines.length} members to ${this.logFile}`,
          error,
          'not counted, the next sync sends it again',
        );
      }
      return entry.applies_at ? { status: 'pending', token: String(entry.seq) } : { status: 'confirmed' };
    });
  }

  /** A pending batch is done once its time has come (it is then applied when the audience is read). */
  async poll(_audience: RemoteAudience, token: string): Promise<PollOutcome> {
    return this.locked(() => {
      const entry = this.log.find((e) => e.seq === Number(token));
      if (!entry) return { status: 'failed', reason: `no batch ${token} in ${this.logFile}` };
      return inEffect(entry, Date.now()) ? { status: 'done' } : { status: 'processing' };
    });
  }

  /** Runs `body` under the folder's lock, after reading what other processes wrote meanwhile. */
  private locked<T>(body: () => T): Promise<T> {
    this.used = true;
    try {
      mkdirSync(this.dir, { recursive: true });
    } catch (error) {
      throw this.diskError(`could not create the folder ${this.dir}`, error);
    }
    return this.lock
      .hold(() => {
        this.refresh();
        return body();
      })
      .catch((error: unknown) => {
        throw error instanceof LockFailed
          ? this.diskError(`could not lock the folder with ${error.file}`, error.cause)
          : error;
      });
  }

  private refresh(): void {
    this.registry = readJsonMap(this.registryFile);
    this.readLog();
  }

  /**
   * Reads the entries appended since our last look. A tail without its newline is a write that failed
   * half-way (no writer is active while we hold the lock): it is cut off, never read as a batch.
   */
  private readLog(): void {
    let fd: number;
    try {
      fd = openSync(this.logFile, 'r+');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      if (this.logBytes > 0) this.forgetLog();
      return;
    }
    try {
      const size = fstatSync(fd).size;
      // Shorter than what we read: cut or replaced by hand; read it again from the start.
      if (size < this.logBytes) this.forgetLog();
      if (size === this.logBytes) return;
      const buf = Buffer.alloc(size - this.logBytes);
      for (let done = 0; done < buf.length;) {
        const n = readSync(fd, buf, done, buf.length - done, this.logBytes + done);
        if (n === 0) break;
        done += n;
      }
      const end = buf.lastIndexOf(0x0a) + 1;
      for (const line of buf.subarray(0, end).toString('utf8').split('\n')) {
        if (!line) continue;
        const entry = parseEntry(line);
        if (!entry) {
          this.tornLines++;
          continue;
        }
        this.log.push(entry);
        this.lastSeq = Math.max(this.lastSeq, entry.seq);
      }
      this.logBytes += end;
      if (this.logBytes < size) {
        ftruncateSync(fd, this.logBytes);
        fsyncSync(fd);
      }
    } finally {
      closeSync(fd);
    }
  }

  private forgetLog(): void {
    this.log = [];
    this.logBytes = 0;
    this.lastSeq = 0;
  }

  /** The next sequence number: after every entry in the log and every member file's position. */
  private nextSeq(): number {
    // A log started afresh (deleted by hand) must not number entries that member files already count.
    if (this.logBytes === 0)
      for (const id of Object.keys(this.registry))
        this.lastSeq = Math.max(this.lastSeq, readMembersFile(this.membersFile(id), true).seq);
    return this.lastSeq + 1;
  }

  /** Appends one entry whole and flushed to disk, or leaves the log as it was. */
  private append(entry: LogEntry): void {
    const data = Buffer.from(JSON.stringify(entry) + '\n', 'utf8');
    const created = !existsSync(this.logFile);
    // Positioned writes at the end we read under the lock (O_APPEND would ignore the position).
    const fd = openSync(this.logFile, constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      writeWhole(fd, data, this.logBytes);
      fsyncSync(fd);
    } catch (error) {
      try {
        ftruncateSync(fd, this.logBytes);
        fsyncSync(fd);
      } catch {
        // The next reader cuts the torn tail off under the lock.
      }
      throw error;
    } finally {
      closeSync(fd);
    }
    if (created) syncFolder(this.dir);
    this.log.push(entry);
    this.logBytes += data.length;
    this.lastSeq = entry.seq;
  }

  /**
   * The audience as the platform holds it now: its member file, then the batches after the file's
   * position that have taken effect, in log order (one still processing holds back those after it).
   */
  private holding(id: string): { members: Members; seq: number } {
    const file = readMembersFile(this.membersFile(id));
    const members = new Members();
    for (const line of file.lines) members.add(line);
    let seq = file.seq;
    const now = Date.now();
    for (const entry of this.log) {
      if (entry.audience !== id || entry.seq <= file.seq) continue;
      if (!inEffect(entry, now)) break;
      applyEntry(members, entry);
      seq = entry.seq;
    }
    return { members, seq };
  }

  /**
   * Rewrites the audience's member file when the log holds batches it does not that have taken effect
   * (the first after the file's position decides, as in `holding`); an up-to-date file is read no further
   * than its header.
   */
  private writeMembers(id: string): void {
    const name = this.registry[id];
    if (name === undefined) return;
    const file = readMembersFile(this.membersFile(id), true);
    const next = this.log.find((e) => e.audience === id && e.seq > file.seq);
    if (file.exists && !(next && inEffect(next, Date.now()))) return;
    const held = this.holding(id);
    const lines = [...held.members.identifiers].sort();
    replaceFile(
      this.membersFile(id),
      `# audience-sync file audience: ${name}; seq=${held.seq}\n${lines.join('\n')}${lines.length ? '\n' : ''}`,
    );
  }

  private membersFile(id: string): string {
    return path.join(this.dir, `${id}.members`);
  }

  private diskError(what: string, error: unknown, consequence?: string): ConnectorError {
    const operator = isNeedsOperator(error);
    return new ConnectorError(
      `${what} (${reasonOf(error)})${consequence ? `: ${consequence}` : ''}${
        operator ? '; free space on that disk or raise the file size limit' : ''
      }`,
      operator ? 'permanent' : 'retryable',
      { cause: error },
    );
  }
}

/** Whether the batch has taken effect by `now` (one sent with `process_after_seconds` waits). */
function inEffect(entry: LogEntry, now: number): boolean {
  return !entry.applies_at || Date.parse(entry.applies_at) <= now;
}

function isNeedsOperator(error: unknown): boolean {
  // An IncompleteWrite carries its cause's code, so one look serves both.
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && NEEDS_AN_OPERATOR.has(code);
}

/** One log line, or undefined for a line that is not a whole entry (a write torn by a failure). */
function parseEntry(line: string): LogEntry | undefined {
  const entry = (text: string) => {
    try {
      const parsed = logEntrySchema.safeParse(JSON.parse(text));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  };
  // An older version could leave a torn entry with a whole one after it on the same line: keep that one.
  const at = line.lastIndexOf('{"seq":');
  return entry(line) ?? (at > 0 ? entry(line.slice(at)) : undefined);
}

/** A member file: its position in the log (`seq=` in the header) and its lines; none when missing. */
function readMembersFile(
  file: string,
  headerOnly = false,
): { seq: number; lines: string[]; exists: boolean } {
  let text: string;
  try {
    text = headerOnly ? readHeader(file) : readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { seq: 0, lines: [], exists: false };
    throw error;
  }
  const [header, ...lines] = text.split('\n');
  const seq = Number(/; seq=(\d+)$/.exec(header ?? '')?.[1] ?? 0);
  return { seq, lines: headerOnly ? [] : lines.filter(Boolean), exists: true };
}

function readHeader(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(4096);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).toString('utf8').split('\n')[0] ?? '';
  } finally {
    closeSync(fd);
  }
}

function applyEntry(members: Members, entry: LogEntry): void {
  if (entry.op === 'replace') members.clear();
  for (const line of entry.members) {
    if (entry.op === 'remove') members.remove(line);
    else members.add(line);
  }
}

export const fileConnector: ConnectorDefinition<FileConfig> = {
  type: 'file',
  // One change log and one audience registry for the whole folder.
  exclusive: 'destination',
  configSchema: fileConfigSchema,
  batchSize: (config) => config.batch_size,
  final: (config) => config.process_after_seconds === 0,
  processingMinutes: (config) => config.process_after_seconds / 60,
  slots: () => SLOTS,
  identify,
  identifiers: 'file/index.js',
  create: (config, context) => new FileClient(config, context.baseDir, context.log),
};

/** A JSON object of strings from `file` (empty when the file does not exist). */
function readJsonMap(file: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw error;
  }
  try {
    return JSON.parse(text) as Record<string, string>;
  } catch (error) {
    throw new ConnectorError(
      `${file} is not valid JSON (${(error as Error).message}): restore it from a backup or fix it by hand`,
      'permanent',
    );
  }
}
