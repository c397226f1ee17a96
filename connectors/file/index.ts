import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
  ftruncateSync,
  fstatSync,
  readSync,
} from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type {
  BatchOutcome,
  PollOutcome,
  Check,
  ConnectorClient,
  ConnectorDefinition,
  Member,
  RemoteAudience,
} from '../../src/connector.js';
import { ConnectorError } from '../../src/connector.js';
import { sha256Slot, isSha256Hex } from '../../src/identity/hash.js';
import { normalizeEmail, normalizePhone, phoneSkip } from '../../src/identity/normalize.js';
import type { Identified, Person, SkipReason, Slot } from '../../src/identity/types.js';

/**
 * `file`: a platform on disk, for the quick start, tests and dry runs. Each audience is a file of the
 * hashed identifiers its members brought (`email=<sha256>`, one per line, sorted), and every change
 * batch (one line per member, as sent) is appended to `changes.jsonl` first, so a batch is final once
 * `add`/`remove` returns.
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
  endpoint: z.url().optional(),
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

interface LogEntry {
  seq: number;
  at: string;
  audience: string;
  op: 'add' | 'remove' | 'replace';
  members: string[];
  /** When the batch takes effect (process_after_seconds > 0); at once when absent. */
  applies_at?: string;
}

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

export class FileClient implements ConnectorClient {
  private readonly dir: string;
  private readonly logFile: string;
  private registry: Record<string, string> = {};
  private audiences = new Map<string, { members: Members; seq: number; dirty: boolean }>();
  private log: LogEntry[] | undefined;
  private seq = 0;

  private readonly delayMs: number;

  constructor(config: FileConfig, baseDir: string) {
    this.delayMs = config.process_after_seconds * 1000;
    this.dir = path.resolve(baseDir, config.path);
    this.logFile = path.join(this.dir, 'changes.jsonl');
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

  async ensureAudience(name: string, knownId?: string): Promise<RemoteAudience & { created: boolean }> {
    this.open();
    const existing =
      knownId && this.registry[knownId] === name
        ? knownId
        : Object.keys(this.registry).find((id) => this.registry[id] === name);
    if (existing) {
      this.audience(existing); // brings its member file up to date with the change log at close()
      return { id: existing, name, created: false };
    }
    let id = slug(name);
    for (let n = 2; this.registry[id] !== undefined; n++) id = `${slug(name)}-${n}`;
    this.registry[id] = name;
    atomicWrite(path.join(this.dir, 'audiences.json'), JSON.stringify(this.registry, null, 2) + '\n');
    return { id, name, created: true };
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

  async stats(audience: RemoteAudience): Promise<{ size: number; warnings: string[] }> {
    const size = this.audience(audience.id).members.identifiers.size;
    return { size, warnings: [] };
  }

  /** Writes each changed audience's member file; the change log already holds every batch. */
  async close(): Promise<void> {
    for (const [id, state] of this.audiences) {
      if (!state.dirty) continue;
      const lines = [...state.members.identifiers].sort();
      atomicWrite(
        this.membersFile(id),
        `# audience-sync file audience: ${this.registry[id]}; seq=${state.seq}\n${lines.join('\n')}${lines.length ? '\n' : ''}`,
      );
      state.dirty = false;
    }
  }

  private apply(audience: RemoteAudience, op: LogEntry['op'], members: readonly Member[]): BatchOutcome {
    this.open();
    if (this.registry[audience.id] === undefined)
      throw new ConnectorError(`file audience '${audience.id}' does not exist in ${this.dir}`, 'permanent');
    const state = this.audience(audience.id);
    const entry: LogEntry = {
      seq: ++this.seq,
      at: new Date().toISOString(),
      audience: audience.id,
      op,
      members: members.map((m) => memberLine(m.slots)),
      ...(this.delayMs > 0 ? { applies_at: new Date(Date.now() + this.delayMs).toISOString() } : {}),
    };
    // The batch is on disk before it counts: append, flush, then apply in memory.
    const fd = openSync(this.logFile, 'a');
    try {
      writeSync(fd, JSON.stringify(entry) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.log!.push(entry);
    if (entry.applies_at) return { status: 'pending', token: String(entry.seq) };
    applyEntry(state.members, entry);
    state.seq = entry.seq;
    state.dirty = true;
    return { status: 'confirmed' };
  }

  /** A pending batch is done once its time has come (it is then applied when the audience is read). */
  async poll(_audience: RemoteAudience, token: string): Promise<PollOutcome> {
    this.open();
    const entry = this.log!.find((e) => e.seq === Number(token));
    if (!entry) return { status: 'failed', reason: `no batch ${token} in ${this.logFile}` };
    return !entry.applies_at || Date.parse(entry.applies_at) <= Date.now()
      ? { status: 'done' }
      : { status: 'processing' };
  }

  private audience(id: string) {
    let state = this.audiences.get(id);
    if (state) return state;
    const members = new Members();
    let seq = 0;
    const file = this.membersFile(id);
    if (existsSync(file)) {
      const [header, ...lines] = readFileSync(file, 'utf8').split('\n');
      seq = Number(/seq=(\d+)/.exec(header ?? '')?.[1] ?? 0);
      for (const line of lines) if (line) members.add(line);
    }
    let replayed = false;
    const now = Date.now();
    for (const entry of this.log ?? []) {
      if (entry.audience !== id || entry.seq <= seq) continue;
      // Batches take effect in order: one still processing holds back those after it.
      if (entry.applies_at && Date.parse(entry.applies_at) > now) break;
      applyEntry(members, entry);
      seq = entry.seq;
      replayed = true;
    }
    // Batches a crashed run logged but never folded into the member file.
    state = { members, seq, dirty: replayed };
    this.audiences.set(id, state);
    return state;
  }

  private membersFile(id: string): string {
    return path.join(this.dir, `${id}.members`);
  }

  /** Loads the registry and the change log, dropping a last line left half-written by a crash. */
  private open(): void {
    if (this.log) return;
    mkdirSync(this.dir, { recursive: true });
    const registryFile = path.join(this.dir, 'audiences.json');
    this.registry = existsSync(registryFile)
      ? (JSON.parse(readFileSync(registryFile, 'utf8')) as Record<string, string>)
      : {};
    this.log = [];
    if (!existsSync(this.logFile)) return;
    const fd = openSync(this.logFile, 'r+');
    try {
      const size = fstatSync(fd).size;
      const buf = Buffer.alloc(size);
      readSync(fd, buf, 0, size, 0);
      const end = buf.lastIndexOf(0x0a) + 1;
      if (end < size) ftruncateSync(fd, end);
      for (const line of buf.subarray(0, end).toString('utf8').split('\n')) {
        if (!line) continue;
        const entry = JSON.parse(line) as LogEntry;
        this.log.push(entry);
        this.seq = Math.max(this.seq, entry.seq);
      }
    } finally {
      closeSync(fd);
    }
  }
}

function applyEntry(members: Members, entry: LogEntry): void {
  if (entry.op === 'replace') members.clear();
  for (const line of entry.members) {
    if (entry.op === 'remove') members.remove(line);
    else members.add(line);
  }
}

function atomicWrite(file: string, content: string): void {
  const temp = `${file}.tmp-${process.pid}`;
  const fd = openSync(temp, 'w');
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, file);
}

export const fileConnector: ConnectorDefinition<FileConfig> = {
  type: 'file',
  // One change log and one audience registry for the whole folder.
  exclusive: 'destination',
  configSchema: fileConfigSchema,
  batchSize: (config) => config.batch_size,
  final: (config) => config.process_after_seconds === 0,
  slots: () => SLOTS,
  identify,
  create: (config, context) => new FileClient(config, context.baseDir),
};
