import { createHash, randomBytes } from 'node:crypto';
import type { RedisClient } from '../redis-client.js';
import {
  compareKeys,
  decodeAt,
  decodeRecords,
  encodeRecords,
  FORMAT,
  keyHigh,
  keyLow,
  recordLength,
  KEY_BYTES,
  Status,
  statusAt,
  type RecordToWrite,
  type StateRecord,
} from './records.js';

/**
 * Per destination audience, in Redis (no key per member):
 *   {…}:meta  hash: name, remote id, bucket bits, upload sequence, record format (absent: format 1),
 *             members by status as of the last checkpoint (`n:<status>`; absent: not counted yet)
 *   {…}:b     hash: bucket → packed records sorted by key (the checkpointed state)
 *   {…}:j     list: packed records appended per acknowledged batch (absolute, replayable)
 *   {…}:u     hash: upload id → pending batch on the platform (JSON: token, op, count, at)
 * A run appends to the journal only after the platform acknowledged a batch, and folds the journal
 * into the buckets at checkpoints. Journal entries say what a member *is*, not what changed, so a
 * checkpoint interrupted half way is finished by the next one. Buckets are key prefixes, so reading them
 * in index order reads the state in key order (`ordered`). A state in a record format before 3 is not
 * read (`outdated`): a run replaces it.
 */

/** Members of an audience's state by status, as of its last checkpoint. */
export interface StateCounts {
  confirmed: number;
  addPending: number;
  removePending: number;
  rejected: number;
}

/** The meta field counting one status. */
const COUNTED = [Status.confirmed, Status.addPending, Status.removePending, Status.rejected] as const;
const countField = (status: number) => `n:${status}`;

export interface Upload {
  token: string;
  /** `removeAll`: the first half of a replace on a platform that empties an audience, then fills it. */
  op: 'add' | 'remove' | 'replace' | 'removeAll';
  count: number;
  at: string;
}

const MAX_BITS = 16;

/**
 * At most this much of its own journal an audience's state keeps in memory for its checkpoint (a first
 * sync of about 390,000 members of five identifiers); beyond it, the checkpoint reads the journal back.
 */
const COPY_BYTES = 64 * 2 ** 20;

export class StateStore {
  constructor(
    readonly redis: RedisClient,
    readonly prefix = 'audience-sync',
  ) {}

  audience(destination: string, name: string): AudienceState {
    return new AudienceState(this, destination, name);
  }

  /** Audiences that have state for a destination (including ones no longer configured). */
  async audiencesOf(destination: string): Promise<string[]> {
    const names = await this.redis.hvals(`${this.prefix}:dest:${destination}:audiences`);
    return names.sort();
  }
}

export class AudienceState {
  private readonly base: string;
  private readonly redis: RedisClient;
  /** The record format of the stored state, once read. */
  private format: number | undefined;
  /**
   * The journal as this object wrote it, entry by entry, since it last saw the journal empty: a checkpoint
   * folds this copy instead of reading back what was just written, when Redis holds as many entries.
   * Undefined when unknown, or once it would hold more than `COPY_BYTES`.
   */
  private written: { entries: Buffer[]; bytes: number } | undefined;

  constructor(
    private readonly store: StateStore,
    readonly destination: string,
    readonly name: string,
  ) {
    this.redis = store.redis;
    // A hash tag keeps an audience's keys in one Redis Cluster slot, so MULTI covers them.
    const tag = createHash('sha256').update(`${destination}\0${name}`).digest('hex').slice(0, 16);
    this.base = `${store.prefix}:{${tag}}`;
  }

  private key(part: 'meta' | 'b' | 'j' | 'u'): string {
    return `${this.base}:${part}`;
  }

  async remoteId(): Promise<string | undefined> {
    return (await this.redis.hget(this.key('meta'), 'remote_id')) ?? undefined;
  }

  /**
   * Names the platform's audience, and lists this state among its destination's. Two writes, not one
   * transaction: the list and the state are in different hash slots of a Cluster. The list first, so that
   * a state with a remote id is always listed; both writes are idempotent, and the next run repeats them.
   */
  async setRemoteId(id: string): Promise<void> {
    await this.redis.hset(`${this.store.prefix}:dest:${this.destination}:audiences`, this.base, this.name);
    await this.redis.hset(
      this.key('meta'),
      'remote_id',
      id,
      'name',
      this.name,
      'destination',
      this.destination,
    );
  }

  /**
   * This state's epoch: a random mark made when the state is first used and kept as long as it lives,
   * which the platform's audience carries too where it can. A state that comes back empty (Redis flushed,
   * evicted, another Redis) has a new one, so it cannot pass for the state that filled the audience.
   */
  async epoch(): Promise<string> {
    const fresh = randomBytes(6).toString('hex');
    await this.redis.hsetnx(this.key('meta'), 'epoch', fresh);
    return (await this.redis.hget(this.key('meta'), 'epoch')) ?? fresh;
  }

  /** Why the audience must be replaced before anything else is sent to it (a replace that has not finished). */
  async replacing(): Promise<string | undefined> {
    return (await this.redis.hget(this.key('meta'), 'replace')) ?? undefined;
  }

  /**
   * The platform holds what this state cannot account for: forget every record and upload, and remember
   * that the audience must be replaced whole; `replaced()` once it is. Atomic: a crash leaves one or the other.
   */
  async startReplace(reason: string): Promise<void> {
    await this.redis
      .multi()
      .del(this.key('b'), this.key('j'), this.key('u'))
      .hdel(this.key('meta'), 'bits')
      .hset(this.key('meta'), 'replace', reason, 'members', 0, 'format', FORMAT, ...zeroCounts())
      .exec();
    this.format = FORMAT;
    this.sawEmptyJournal();
  }

  async replaced(): Promise<void> {
    await this.redis.hdel(this.key('meta'), 'replace');
  }

  /**
   * Whether records the state counted are gone (their keys evicted, or lost with a restart that kept only
   * some): the meta says members, but neither buckets nor journal hold any.
   */
  async lost(): Promise<boolean> {
    const [[, members], [, buckets], [, journal]] = (await this.redis
      .multi()
      .hget(this.key('meta'), 'members')
      .exists(this.key('b'))
      .exists(this.key('j'))
      .exec()) as [[null, string | null], [null, number], [null, number]];
    return Number(members ?? 0) > 0 && !buckets && !journal;
  }

  async nextUploadId(): Promise<number> {
    return this.redis.hincrby(this.key('meta'), 'upload_seq', 1);
  }

  async uploads(): Promise<Map<number, Upload>> {
    const all = await this.redis.hgetall(this.key('u'));
    return new Map(Object.entries(all).map(([id, json]) => [Number(id), JSON.parse(json) as Upload]));
  }

  async forgetUploads(ids: readonly number[]): Promise<void> {
    if (ids.length > 0) await this.redis.hdel(this.key('u'), ...ids.map(String));
  }

  /**
   * Why this state cannot be read, or undefined: it is in a record format before 3, which only
   * development builds before 0.1.0 wrote. A run treats it as lost and replaces the audience with its
   * segment (`startReplace`), which also puts the state in the current format.
   */
  async outdated(): Promise<string | undefined> {
    const format = await this.recordFormat();
    if (format >= FORMAT) return undefined;
    return `our state of this audience is in record format ${format}, which only development builds before 0.1.0 wrote and this version does not read`;
  }

  /** Records what the platform acknowledged for one batch, atomically with its pending upload. */
  async append(records: readonly RecordToWrite[], upload?: { id: number } & Upload): Promise<void> {
    if (records.length === 0 && !upload) return;
    await this.readable();
    const tx = this.redis.multi().hset(this.key('meta'), 'format', FORMAT);
    const entry = records.length > 0 ? encodeRecords(records) : undefined;
    if (entry) tx.rpush(this.key('j'), entry);
    if (upload) {
      const { id, ...rest } = upload;
      tx.hset(this.key('u'), String(id), JSON.stringify(rest));
    }
    await tx.exec();
    // Kept in the order Redis took them: one connection answers in the order it was asked.
    if (entry && this.written) {
      this.written.entries.push(entry);
      this.written.bytes += entry.length;
      if (this.written.bytes > COPY_BYTES) this.written = undefined;
    }
  }

  /** What this object appends from now on is the whole journal: its copy starts (see `written`). */
  private sawEmptyJournal(): void {
    this.written = { entries: [], bytes: 0 };
  }

  /**
   * The journal's entries: this object's copy when Redis holds as many entries as it wrote (the lease
   * keeps other writers out), else read back from Redis.
   */
  private async journal(): Promise<Buffer[]> {
    const copy = this.written;
    if (copy && (await this.redis.llen(this.key('j'))) === copy.entries.length) return copy.entries;
    return this.redis.lrangeBuffer(this.key('j'), 0, -1);
  }

  /**
   * Folds the journal into the buckets, byte for byte: records are ordered by key within each touched
   * bucket and copied, not decoded. With `transform`, every bucket is rewritten and each record waiting
   * on an upload passes through it (to settle pending uploads); one it maps to undefined leaves the state.
   */
  async checkpoint(transform?: (record: StateRecord) => StateRecord | undefined): Promise<void> {
    await this.readable();
    const journal = await this.journal();
    // A state written before the counts existed is counted whole, once: every bucket is read.
    const counted = (await this.redis.hexists(this.key('meta'), countField(Status.confirmed))) === 1;
    // A journal seen empty: what this object appends from now on is the whole of it. One that is not is
    // trimmed below, and seen empty there (or not: its copy waits for the next checkpoint that sees it so).
    this.written = undefined;
    if (journal.length === 0) this.sawEmptyJournal();
    if (journal.length === 0 && !transform && counted) return;
    const fresh = Placements.of(journal);

    let bits = Number((await this.redis.hget(this.key('meta'), 'bits')) ?? -1);
    // No buckets yet: the first records choose how many. An empty checkpoint (a run settles before it
    // pushes) chooses nothing, or a first sync would be folded into one bucket and then resharded.
    if (bits < 0 && fresh.size === 0) {
      await this.redis.hset(this.key('meta'), ...zeroCounts());
      return;
    }
    if (bits < 0) {
      bits = idealBits(fresh.size);
      await this.redis.hset(this.key('meta'), 'bits', bits);
    }
    // The journal's records of each bucket, in the order written.
    const touched = new Map<number, number[]>();
    for (let i = 0; i < fresh.size; i++) {
      const b = bucketOfHigh(fresh.hi[i]!, bits);
      let list = touched.get(b);
      if (!list) touched.set(b, (list = []));
      list.push(i);
    }
    const whole = transform !== undefined || !counted;
    const buckets = whole ? await this.allBucketBytes() : await this.someBucketBytes([...touched.keys()]);
    // Per status: the change (or, over every bucket, the total) of the members counted.
    const byStatus = new Map<number, number>(COUNTED.map((c) => [c, 0]));
    const tally = (status: number, by: number) => byStatus.set(status, (byStatus.get(status) ?? 0) + by);

    // Buckets go out in pipelines of 256, the next one built while Redis takes the last (one at a time in
    // flight, each awaited before the journal is trimmed).
    let writes = this.redis.pipeline();
    let sent: Promise<unknown> | undefined;
    let pending = 0;
    let delta = 0;
    for (const b of new Set([...buckets.keys(), ...touched.keys()])) {
      const bytes = buckets.get(b);
      const stored = Placements.of(bytes ? [bytes] : []);
      const s = stored.size;
      if (!whole) for (let k = 0; k < s; k++) tally(stored.status(k), -1);
      // What each member is now: the last of its records, stored or written since (see `newest`).
      const keep: number[] = [];
      const replaced = new Map<number, Buffer>();
      for (const id of newest(stored, fresh, touched.get(b) ?? [])) {
        const from = id < s ? stored : fresh;
        const i = id < s ? id : id - s;
        const status = from.status(i);
        if (status === Status.deleted) continue;
        let now: number = status;
        if (transform && (status === Status.addPending || status === Status.removePending)) {
          const t = transform(decodeAt(from.record(i), 0));
          if (!t || t.status === Status.deleted) continue;
          const record = encodeRecords([t]);
          replaced.set(id, record);
          now = t.status;
        }
        keep.push(id);
        tally(now, 1);
      }
      delta += keep.length - s;
      if (keep.length > 0) writes.hset(this.key('b'), String(b), packIds(stored, fresh, keep, replaced));
      else writes.hdel(this.key('b'), String(b));
      if (++pending >= 256) {
        await sent;
        sent = writes.exec();
        writes = this.redis.pipeline();
        pending = 0;
      }
    }
    await sent;
    // The journal goes only after every bucket is written; entries appended meanwhile stay.
    writes.ltrim(this.key('j'), journal.length, -1);
    for (const [status, n] of byStatus)
      if (whole) writes.hset(this.key('meta'), countField(status), n);
      else if (n !== 0) writes.hincrby(this.key('meta'), countField(status), n);
    writes.llen(this.key('j'));
    writes.hincrby(this.key('meta'), 'members', delta);
    const done = await writes.exec();
    if (Number(done?.at(-2)?.[1]) === 0) this.sawEmptyJournal();
    const members = Number(done?.at(-1)?.[1] ?? 0);
    if (Math.abs(idealBits(members) - bits) >= 2) await this.reshard(idealBits(members));
  }

  /** Rewrites every bucket for a new bucket count, then swaps it in atomically. */
  private async reshard(bits: number): Promise<void> {
    const records: StateRecord[] = [];
    // One by one: a bucket of a state written whole in one go holds more records than a call takes arguments.
    for await (const [, packed] of this.buckets()) for (const r of decodeRecords(packed)) records.push(r);
    await this.rewrite(records, bits);
  }

  /** Refuses to touch a state this version does not read (see `outdated`). */
  private async readable(): Promise<void> {
    const outdated = await this.outdated();
    if (outdated)
      throw new Error(
        `the state of '${this.name}' on ${this.destination}: ${outdated}; run a sync of ${this.destination}, which replaces the audience with its segment`,
      );
  }

  /** Writes these records as the whole state in `bits` bucket bits, atomically. */
  private async rewrite(records: readonly StateRecord[], bits: number): Promise<void> {
    const next = new Map<number, StateRecord[]>();
    for (const r of records) {
      const b = bucketOf(r.key, 0, bits);
      let list = next.get(b);
      if (!list) next.set(b, (list = []));
      list.push(r);
    }
    const temp = `${this.base}:b-rewrite`;
    let writes = this.redis.pipeline().del(temp);
    let pending = 0;
    for (const [b, list] of next) {
      list.sort((x, y) => compareKeys(x.key, 0, y.key, 0));
      writes.hset(temp, String(b), encodeRecords(list));
      if (++pending >= 256) {
        await writes.exec();
        writes = this.redis.pipeline();
        pending = 0;
      }
    }
    await writes.exec();
    const swap = this.redis.multi();
    if (next.size > 0) swap.rename(temp, this.key('b'));
    else swap.del(this.key('b'));
    const counts = new Map<number, number>(COUNTED.map((c) => [c, 0]));
    for (const r of records) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
    const fields = COUNTED.flatMap((c) => [countField(c), counts.get(c)!]);
    await swap.hset(this.key('meta'), 'bits', bits, 'format', FORMAT, ...fields).exec();
    this.format = FORMAT;
  }

  /** The record format of the stored state: as marked, else 1 when there is a state (the first format had no mark). */
  private async recordFormat(): Promise<number> {
    if (this.format) return this.format;
    const [[, mark], [, buckets], [, journal]] = (await this.redis
      .multi()
      .hget(this.key('meta'), 'format')
      .exists(this.key('b'))
      .exists(this.key('j'))
      .exec()) as [[null, string | null], [null, number], [null, number]];
    if (mark !== null) return (this.format = Number(mark));
    return (this.format = buckets || journal ? 1 : FORMAT);
  }

  /**
   * The state as packed records in key order, a bucket at a time, with any journal not yet checkpointed
   * (a crashed run's) laid over it without writing anything: a plan reads the truth and touches nothing.
   * Buckets are fetched in index order (their keys' order), the next ones while the caller reads these.
   */
  async *ordered(): AsyncGenerator<Buffer> {
    await this.readable();
    const [journal, bitsField] = await Promise.all([
      this.redis.lrangeBuffer(this.key('j'), 0, -1),
      this.redis.hget(this.key('meta'), 'bits'),
    ]);
    // The journal's latest record per member, in key order (deleted ones included: they hide a bucket's).
    const placed = Placements.of(journal);
    const latest = newest(
      NONE,
      placed,
      Array.from({ length: placed.size }, (_, i) => i),
    );
    if (bitsField === null) {
      // Never checkpointed: the journal is all there is.
      if (latest.length > 0) yield packNewest(NONE, placed, latest);
      return;
    }
    const bits = Number(bitsField);
    const count = 2 ** bits;
    const CHUNK = 512;
    const fetch = (first: number) => {
      const indexes = Array.from({ length: Math.min(CHUNK, count - first) }, (_, k) => String(first + k));
      return this.redis.hmgetBuffer(this.key('b'), ...indexes);
    };
    let j = 0;
    let next = fetch(0);
    for (let first = 0; first < count; first += CHUNK) {
      const values = await next;
      if (first + CHUNK < count) next = fetch(first + CHUNK);
      for (let k = 0; k < values.length; k++) {
        const b = first + k;
        const stored = values[k];
        let to = j;
        while (to < latest.length && bucketOfHigh(placed.hi[latest[to]!]!, bits) === b) to++;
        if (to === j) {
          if (stored) yield stored;
          continue;
        }
        // The bucket's records with the journal's newer ones laid over them.
        const under = Placements.of(stored ? [stored] : []);
        const merged = packNewest(under, placed, newest(under, placed, latest.slice(j, to)));
        j = to;
        if (merged.length > 0) yield merged;
      }
    }
  }

  /** The state's records in key order, decoded (see `ordered`). */
  async *scan(): AsyncGenerator<StateRecord[]> {
    for await (const packed of this.ordered()) yield decodeRecords(packed);
  }

  /**
   * Members by status as of the last checkpoint, kept by every write (no scan); undefined for a state
   * not counted yet (written before the counts existed: its next checkpoint counts it).
   */
  async counts(): Promise<StateCounts | undefined> {
    const [confirmed, addPending, removePending, rejected] = await this.redis.hmget(
      this.key('meta'),
      ...COUNTED.map(countField),
    );
    if (confirmed === null) return undefined;
    const n = (v: string | null | undefined) => Number(v ?? 0);
    return {
      confirmed: n(confirmed),
      addPending: n(addPending),
      removePending: n(removePending),
      rejected: n(rejected),
    };
  }

  async size(): Promise<number> {
    let n = 0;
    for await (const records of this.scan()) n += records.length;
    return n;
  }

  /** Bucket → its packed records, for every bucket (in the current format). */
  private async allBucketBytes(): Promise<Map<number, Buffer>> {
    const out = new Map<number, Buffer>();
    for await (const [b, packed] of this.buckets()) out.set(b, packed);
    return out;
  }

  /** Every stored bucket, as it is in Redis: its number and its packed records. */
  private async *buckets(): AsyncGenerator<[number, Buffer]> {
    let cursor = '0';
    do {
      const [next, pairs] = await this.redis.hscanBuffer(this.key('b'), cursor, 'COUNT', 512);
      cursor = next.toString();
      for (let i = 0; i < pairs.length; i += 2) yield [Number(pairs[i]!.toString()), pairs[i + 1]!];
    } while (cursor !== '0');
  }

  /** Bucket → its packed records, for these buckets where they hold any. */
  private async someBucketBytes(indexes: number[]): Promise<Map<number, Buffer>> {
    const out = new Map<number, Buffer>();
    for (let i = 0; i < indexes.length; i += 512) {
      const chunk = indexes.slice(i, i + 512);
      const values = await this.redis.hmgetBuffer(this.key('b'), ...chunk.map(String));
      chunk.forEach((b, k) => {
        if (values[k]) out.set(b, values[k]);
      });
    }
    return out;
  }
}

/** The count fields of an empty state. */
function zeroCounts(): (string | number)[] {
  return COUNTED.flatMap((c) => [countField(c), 0]);
}

/** Enough buckets for about 64 members each, so a checkpoint rewrites little for a small change. */
function idealBits(members: number): number {
  return Math.max(0, Math.min(MAX_BITS, Math.ceil(Math.log2(Math.max(1, members / 64)))));
}

/** The bucket of the key at `at` in `buf`: its first `bits` bits. */
function bucketOf(buf: Buffer, at: number, bits: number): number {
  return bucketOfHigh(keyHigh(buf, at), bits);
}

/** The bucket of a key whose first four bytes are `high`. */
function bucketOfHigh(high: number, bits: number): number {
  return bits === 0 ? 0 : high >>> (32 - bits);
}

/**
 * Records in place, as columns (no object per record: a first sync folds a million at once): the buffer
 * each one is in, where, how long, and its key as two numbers. A record's index is its order among them.
 */
class Placements {
  private constructor(
    private readonly buffers: readonly Buffer[],
    private readonly which: Uint32Array,
    private readonly at: Uint32Array,
    readonly length: Uint32Array,
    readonly hi: Uint32Array,
    readonly lo: Uint32Array,
  ) {}

  /** The records packed in these buffers (current format), in order. */
  static of(buffers: readonly Buffer[]): Placements {
    let n = 0;
    for (const buf of buffers) for (let at = 0; at < buf.length; at += recordLength(buf, at)) n++;
    const which = new Uint32Array(n);
    const where = new Uint32Array(n);
    const length = new Uint32Array(n);
    const hi = new Uint32Array(n);
    const lo = new Uint32Array(n);
    let k = 0;
    buffers.forEach((buf, w) => {
      for (let at = 0; at < buf.length; k++) {
        which[k] = w;
        where[k] = at;
        length[k] = recordLength(buf, at);
        hi[k] = keyHigh(buf, at);
        lo[k] = keyLow(buf, at);
        at += length[k]!;
      }
    });
    return new Placements(buffers, which, where, length, hi, lo);
  }

  get size(): number {
    return this.at.length;
  }

  status(i: number): Status {
    return statusAt(this.buffers[this.which[i]!]!, this.at[i]!);
  }

  /** Record i's bytes (a view). */
  record(i: number): Buffer {
    const at = this.at[i]!;
    return this.buffers[this.which[i]!]!.subarray(at, at + this.length[i]!);
  }

  /** Copies record i into `out` at `to`; returns its length. */
  copy(i: number, out: Buffer, to: number): number {
    const at = this.at[i]!;
    return this.buffers[this.which[i]!]!.copy(out, to, at, at + this.length[i]!);
  }
}

const NONE = Placements.of([]);

/**
 * Of `under`'s records and some of `over`'s (`newer`: indexes in the order written), the last record of
 * each key, in key order: `under`'s come first, so a newer record of a key replaces the one under it.
 * An index below `under.size` is one of `under`'s, another is `under.size` plus one of `over`'s. Deleted
 * records are kept (they hide older ones).
 */
function newest(under: Placements, over: Placements, newer: readonly number[]): number[] {
  const s = under.size;
  const m = s + newer.length;
  const hi = new Uint32Array(m);
  const lo = new Uint32Array(m);
  hi.set(under.hi);
  lo.set(under.lo);
  for (let k = 0; k < newer.length; k++) {
    hi[s + k] = over.hi[newer[k]!]!;
    lo[s + k] = over.lo[newer[k]!]!;
  }
  // By key, then in the order written (mostly in key order already: batches go out in key order).
  const order = Array.from({ length: m }, (_, p) => p);
  order.sort((x, y) => hi[x]! - hi[y]! || lo[x]! - lo[y]! || x - y);
  const out: number[] = [];
  for (let k = 0; k < m; k++) {
    const p = order[k]!;
    const q = order[k + 1];
    if (q !== undefined && hi[q] === hi[p] && lo[q] === lo[p]) continue;
    out.push(p < s ? p : s + newer[p - s]!);
  }
  return out;
}

/** Records as `newest` gives them, less the deleted ones, packed one after another. */
function packNewest(under: Placements, over: Placements, ids: readonly number[]): Buffer {
  const s = under.size;
  return packIds(
    under,
    over,
    ids.filter((id) => (id < s ? under.status(id) : over.status(id - s)) !== Status.deleted),
  );
}

/** Records numbered as `newest` numbers them, packed one after another (`replaced`: other bytes for some). */
function packIds(
  under: Placements,
  over: Placements,
  ids: readonly number[],
  replaced: ReadonlyMap<number, Buffer> = new Map(),
): Buffer {
  const s = under.size;
  let size = 0;
  const other = (id: number) => (replaced.size > 0 ? replaced.get(id) : undefined);
  for (const id of ids) size += other(id)?.length ?? (id < s ? under.length[id]! : over.length[id - s]!);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const id of ids) {
    const record = other(id);
    if (record) at += record.copy(out, at);
    else at += id < s ? under.copy(id, out, at) : over.copy(id - s, out, at);
  }
  return out;
}

export { KEY_BYTES };
