import { createHash, randomBytes } from 'node:crypto';
import calculateSlot from 'cluster-key-slot';
import type { RedisClient } from '../redis-client.js';
import {
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
 *   {t}:meta        hash: name, remote id, upload sequence, record format, and the layout: generation
 *                   `gen`, shard bits, bucket bits, `gen_seq` (the last generation made), `gc_from`
 *   {t}:u           hash: upload id → pending batch on the platform (JSON: token, op, count, at)
 *   {t.n}:b:<gen>   hash, one per shard: bucket → packed records sorted by key (the checkpointed state)
 *   {t.n}:j:<gen>   list, one per shard: packed records appended per acknowledged batch (absolute, replayable)
 *   {t.n}:c:<gen>   hash, one per shard: its members, and its members by status (`n:<status>`)
 * A record's shard is its key's first `shard_bits` bits; each shard has a hash tag of its own, chosen to fall
 * in its own part of the 16,384 slots, so on a Redis Cluster an audience's records spread over every
 * master. A bucket is a longer key prefix, inside one shard, so reading shards and then buckets in index
 * order reads the state in key order (`ordered`).
 *
 * A run appends to the journal only after the platform acknowledged a batch, and folds the journal into
 * the buckets at checkpoints, shard by shard: a shard's buckets are written, then its journal trimmed and its
 * counts changed in one transaction (one slot). Journal entries say what a member *is*, not what changed,
 * so a checkpoint interrupted half way is finished by the next one. A rewrite (a new bucket count, a
 * replace) writes a new generation beside the old one and switches `gen` in one write; older generations
 * are deleted after (`collect`), so a crash leaves one or the other.
 *
 * Generation 0 is the layout 0.1.0 wrote: one shard, in `{t}:b` and `{t}:j`, counted in the meta. It is read
 * as it is and rewritten into shards at its next checkpoint. A state in a record format before 3 is not
 * read (`outdated`): a run replaces it.
 */

/** Members of an audience's state by status, as of its last checkpoint. */
export interface StateCounts {
  confirmed: number;
  addPending: number;
  removePending: number;
  rejected: number;
}

/** The count field of one status. */
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

/** A new state's shards: 2^5 = 32 hash tags, 512 slots apart (three masters hold 10 or 11 each). */
export const SHARD_BITS = 5;
const SLOTS = 16_384;

/**
 * At most this much of its own journal an audience's state keeps in memory for its checkpoint (a first
 * sync of about 390,000 members of five identifiers); beyond it, the checkpoint reads the journal back.
 */
const COPY_BYTES = 64 * 2 ** 20;

/** A read of a state found the generation it started on replaced (by a run's rewrite or replace). */
export class StateMoved extends Error {}

/** Where a state's records are: its generation, in how many shards and buckets. */
interface Layout {
  /** 0: the one-shard layout of 0.1.0, in the meta's slot. */
  gen: number;
  shardBits: number;
  /** Bucket bits (at least `shardBits`), or -1 before the first checkpoint that had records. */
  bits: number;
  /** Generations from this one up to `gen` (excluded) may still have keys (`collect`). */
  gcFrom: number;
}

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
  private readonly tag: string;
  private readonly redis: RedisClient;
  /** The record format of the stored state, once read. */
  private format: number | undefined;
  /** The hash tag of each shard, once found (`shardTag`). */
  private readonly tags = new Map<number, string>();
  /**
   * The journal as this object wrote it, shard by shard, entry by entry, since it last saw every shard's
   * journal empty: a checkpoint folds this copy instead of reading back what was just written, when Redis
   * holds as many entries. Undefined when unknown, or once it would hold more than `COPY_BYTES`.
   */
  private written: { entries: Map<number, Buffer[]>; bytes: number } | undefined;

  constructor(
    private readonly store: StateStore,
    readonly destination: string,
    readonly name: string,
  ) {
    this.redis = store.redis;
    // The meta and the uploads share one hash tag (one Cluster slot), so MULTI covers them.
    this.tag = createHash('sha256').update(`${destination}\0${name}`).digest('hex').slice(0, 16);
    this.base = `${store.prefix}:{${this.tag}}`;
  }

  private key(part: 'meta' | 'u'): string {
    return `${this.base}:${part}`;
  }

  /**
   * The hash tag of shard `s` of 2^`shardBits`: the first of `<tag>.0`, `<tag>.1`, … whose slot is in the
   * shard's own part of the slot space, so a Cluster's masters (which hold ranges of slots) share the shards.
   */
  private shardTag(s: number, shardBits: number): string {
    const known = this.tags.get(s);
    if (known) return known;
    const width = SLOTS >>> shardBits;
    for (let n = 0; ; n++) {
      const tag = `${this.tag}.${n}`;
      if (Math.floor(calculateSlot(tag) / width) === s) {
        this.tags.set(s, tag);
        return tag;
      }
    }
  }

  private shardKey(lay: Layout, s: number, part: 'b' | 'j' | 'c'): string {
    if (lay.gen === 0) return part === 'c' ? this.key('meta') : `${this.base}:${part}`;
    return `${this.store.prefix}:{${this.shardTag(s, lay.shardBits)}}:${part}:${lay.gen}`;
  }

  /** Every key of generation `gen` (including keys it may never have written). */
  private keysOf(gen: number, shardBits: number): string[] {
    const lay: Layout = { gen, shardBits, bits: -1, gcFrom: gen };
    return shardsOf(lay).flatMap((s) => (['b', 'j', 'c'] as const).map((p) => this.shardKey(lay, s, p)));
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
   * that the audience must be replaced whole; `replaced()` once it is. The switch to a new, empty generation
   * is one transaction: a crash leaves one or the other.
   */
  async startReplace(reason: string): Promise<void> {
    const gen = await this.redis.hincrby(this.key('meta'), 'gen_seq', 1);
    await done(
      this.redis
        .multi()
        .del(this.key('u'), `${this.base}:b`, `${this.base}:j`)
        .hdel(this.key('meta'), 'bits', ...COUNTED.map(countField))
        .hset(this.key('meta'), 'gen', gen, 'shard_bits', SHARD_BITS, 'replace', reason)
        .hset(this.key('meta'), 'members', 0, 'format', FORMAT)
        .exec(),
    );
    this.format = FORMAT;
    this.sawEmptyJournal();
    await this.collect();
  }

  async replaced(): Promise<void> {
    await this.redis.hdel(this.key('meta'), 'replace');
  }

  /**
   * Whether records the state counted are gone (their keys evicted, or lost with a restart or a failover
   * that kept only some): a shard counts members but has neither buckets nor journal, or the meta says
   * members and no shard holds any or says it has none (a checkpoint that emptied the state and stopped
   * before it wrote the meta's count leaves the shards it emptied counting 0: empty, not lost; keys that
   * were evicted say nothing).
   */
  async lost(): Promise<boolean> {
    const lay = await this.layout();
    if (!lay) return false;
    const members = Number((await this.redis.hget(this.key('meta'), 'members')) ?? 0);
    const shards = await Promise.all(
      shardsOf(lay).map(async (s) => {
        const [[, counted], [, buckets], [, journal]] = (await done(
          this.redis
            .multi()
            .hget(this.shardKey(lay, s, 'c'), 'members')
            .exists(this.shardKey(lay, s, 'b'))
            .exists(this.shardKey(lay, s, 'j'))
            .exec(),
        )) as [[null, string | null], [null, number], [null, number]];
        return { counted: Number(counted ?? 0), zero: counted === '0', held: buckets + journal > 0 };
      }),
    );
    if (shards.some((s) => s.counted > 0 && !s.held)) return true;
    return members > 0 && !shards.some((s) => s.held || s.zero);
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

  /**
   * The state's layout, or undefined when it has none yet (nothing written). A state 0.1.0 wrote has
   * the record format marked and no generation: generation 0.
   */
  private async layout(): Promise<Layout | undefined> {
    const [gen, shardBits, bits, format, gcFrom] = await this.redis.hmget(
      this.key('meta'),
      'gen',
      'shard_bits',
      'bits',
      'format',
      'gc_from',
    );
    const b = bits === null ? -1 : Number(bits);
    if (gen !== null)
      return { gen: Number(gen), shardBits: Number(shardBits), bits: b, gcFrom: Number(gcFrom ?? 1) };
    if (format !== null) return { gen: 0, shardBits: 0, bits: b, gcFrom: 0 };
    return undefined;
  }

  /** The layout to write in: a state with none yet starts its first generation in shards. */
  private async writable(): Promise<Layout> {
    await this.readable();
    const known = await this.layout();
    if (known) return known;
    const gen = await this.redis.hincrby(this.key('meta'), 'gen_seq', 1);
    // Two objects starting one state at once: the first generation set is the one both use.
    await done(
      this.redis
        .multi()
        .hsetnx(this.key('meta'), 'gen', gen)
        .hsetnx(this.key('meta'), 'shard_bits', SHARD_BITS)
        .hset(this.key('meta'), 'format', FORMAT)
        .exec(),
    );
    this.format = FORMAT;
    return (await this.layout())!;
  }

  /** Records what the platform acknowledged for one batch, with its pending upload. */
  async append(records: readonly RecordToWrite[], upload?: { id: number } & Upload): Promise<void> {
    if (records.length === 0 && !upload) return;
    const lay = await this.writable();
    // Each shard's records, in the order given.
    const groups = new Map<number, RecordToWrite[]>();
    for (const r of records) {
      const s = shardOfHigh(keyHigh(r.key, 0), lay.shardBits);
      let list = groups.get(s);
      if (!list) groups.set(s, (list = []));
      list.push(r);
    }
    const entries = [...groups].map(([s, list]) => [s, encodeRecords(list)] as const);
    // The upload first: a record waiting on an upload the state does not know would wait for good.
    const tx = this.redis.multi().hset(this.key('meta'), 'format', FORMAT);
    if (upload) {
      const { id, ...rest } = upload;
      tx.hset(this.key('u'), String(id), JSON.stringify(rest));
    }
    // Generation 0's journal is in the meta's slot: one transaction, as 0.1.0 wrote it.
    if (lay.gen === 0) for (const [s, entry] of entries) tx.rpush(this.shardKey(lay, s, 'j'), entry);
    await done(tx.exec());
    if (lay.gen !== 0)
      await Promise.all(entries.map(([s, entry]) => this.redis.rpush(this.shardKey(lay, s, 'j'), entry)));
    // Kept in the order Redis took them: one connection answers in the order it was asked.
    const copy = this.written;
    if (copy) {
      for (const [s, entry] of entries) {
        let list = copy.entries.get(s);
        if (!list) copy.entries.set(s, (list = []));
        list.push(entry);
        copy.bytes += entry.length;
      }
      if (copy.bytes > COPY_BYTES) this.written = undefined;
    }
  }

  /** What this object appends from now on is the whole journal: its copy starts (see `written`). */
  private sawEmptyJournal(): void {
    this.written = { entries: new Map(), bytes: 0 };
  }

  /**
   * Folds the journal into the buckets, shard by shard and byte for byte: records are ordered by key
   * within each touched bucket and copied, not decoded; one shard's journal is in memory at a time. With
   * `transform`, every bucket is rewritten and each record waiting on an upload passes through it (to
   * settle pending uploads); one it maps to undefined leaves the state. A state of 0.1.0's layout, or one
   * whose bucket count no longer fits its size, is then rewritten (`rewrite`).
   */
  async checkpoint(transform?: (record: StateRecord) => StateRecord | undefined): Promise<void> {
    const lay = await this.writable();
    if (lay.gcFrom < lay.gen) await this.collect();
    const shards = shardsOf(lay);
    // Each shard's journal length, and whether a fold of it stopped part way (see `foldShard`): one round trip.
    const [lengths, stopped] = await Promise.all([
      Promise.all(shards.map((s) => this.redis.llen(this.shardKey(lay, s, 'j')))),
      Promise.all(shards.map((s) => this.redis.hexists(this.shardKey(lay, s, 'c'), 'folding'))),
    ]);
    // A journal seen empty: what this object appends from now on is the whole of it. One that is not is
    // trimmed below, and seen empty there (or not: its copy waits for the next checkpoint that sees it so).
    const copy = this.written;
    this.written = undefined;
    const empty = lengths.every((n) => n === 0);
    if (empty) this.sawEmptyJournal();
    // A state 0.1.0 wrote before the counts existed is counted whole, once: every bucket is read.
    const counted =
      lay.gen !== 0 || (await this.redis.hexists(this.key('meta'), countField(Status.confirmed))) === 1;
    if (empty && !transform && counted && lay.gen !== 0) return;
    // The journal of shard s: this object's copy when Redis holds as many entries as it wrote (the lease
    // keeps other writers out), else read back.
    const journalOf = async (s: number): Promise<Buffer[]> => {
      const mine = copy ? (copy.entries.get(s) ?? []) : undefined;
      if (mine && mine.length === lengths[s]) return mine;
      return lengths[s] === 0 ? [] : this.redis.lrangeBuffer(this.shardKey(lay, s, 'j'), 0, -1);
    };

    let bits = lay.bits;
    // No buckets yet: the first records choose how many (keys are hashes: shard 0 holds its share of them).
    // An empty checkpoint (a run settles before it pushes) chooses nothing, or a first sync would be folded
    // into a few buckets and then rewritten.
    const first = bits < 0 ? await journalOf(0) : undefined;
    if (bits < 0) {
      if (empty) {
        if (lay.gen === 0) await this.redis.hset(this.key('meta'), ...zeroCounts());
        return;
      }
      const estimate = lay.gen === 0 ? countRecords(first!) : countRecords(first!) * shards.length;
      bits = Math.max(lay.shardBits, idealBits(estimate));
      await this.redis.hset(this.key('meta'), 'bits', bits);
    }
    const whole = transform !== undefined || !counted;
    let left = 0;
    for (const s of shards) {
      const journal = s === 0 && first ? first : await journalOf(s);
      if (journal.length === 0 && !whole) continue;
      left += await this.foldShard(lay, bits, s, journal, whole || stopped[s] === 1, transform);
    }
    if (left === 0) this.sawEmptyJournal();
    const members = await this.members(lay);
    if (lay.gen !== 0) await this.redis.hset(this.key('meta'), 'members', members);
    const fits = Math.max(SHARD_BITS, idealBits(members));
    if (lay.gen === 0 || Math.abs(fits - bits) >= 2) await this.rewrite(lay, fits);
  }

  /**
   * Folds one shard's journal into its buckets, then trims the journal and changes the shard's counts in
   * one transaction. Returns how many journal entries are left (appended meanwhile).
   *
   * The counts change by what the fold found in the buckets it read. A fold that stopped after writing
   * some buckets (a crash) leaves buckets that already hold the journal's records and counts that do not:
   * the field `folding` in the shard's counts, set before the first bucket is written and cleared with the
   * counts, tells the next checkpoint, which then folds that shard `whole`: every bucket read and counted.
   */
  private async foldShard(
    lay: Layout,
    bits: number,
    s: number,
    journal: Buffer[],
    whole: boolean,
    transform: ((record: StateRecord) => StateRecord | undefined) | undefined,
  ): Promise<number> {
    const bucketsKey = this.shardKey(lay, s, 'b');
    const countsKey = this.shardKey(lay, s, 'c');
    const journalKey = this.shardKey(lay, s, 'j');
    const fresh = Placements.of(journal);
    // The journal's records of each bucket, in the order written.
    const touched = new Map<number, number[]>();
    for (let i = 0; i < fresh.size; i++) {
      const b = bucketOfHigh(fresh.hi[i]!, bits);
      let list = touched.get(b);
      if (!list) touched.set(b, (list = []));
      list.push(i);
    }
    const buckets = whole
      ? await this.allBucketBytes(bucketsKey)
      : await this.someBucketBytes(bucketsKey, [...touched.keys()]);
    // Per status: the change (or, over every bucket, the total) of the members counted.
    const byStatus = new Map<number, number>(COUNTED.map((c) => [c, 0]));
    const tally = (status: number, by: number) => byStatus.set(status, (byStatus.get(status) ?? 0) + by);
    const writes = new BucketWrites(this.redis);
    await this.redis.hset(countsKey, 'folding', 1);
    let delta = 0;
    let members = 0;
    for (const b of new Set([...buckets.keys(), ...touched.keys()])) {
      const bytes = buckets.get(b);
      const stored = Placements.of(bytes ? [bytes] : []);
      const n = stored.size;
      if (!whole) for (let k = 0; k < n; k++) tally(stored.status(k), -1);
      // What each member is now: the last of its records, stored or written since (see `newest`).
      const keep: number[] = [];
      const replaced = new Map<number, Buffer>();
      for (const id of newest(stored, fresh, touched.get(b) ?? [])) {
        const from = id < n ? stored : fresh;
        const i = id < n ? id : id - n;
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
      delta += keep.length - n;
      members += keep.length;
      const packed = keep.length > 0 ? packIds(stored, fresh, keep, replaced) : undefined;
      await writes.add(bucketsKey, String(b), packed);
    }
    await writes.end();
    // The journal goes only after every bucket is written; entries appended meanwhile stay.
    const tx = this.redis.multi().ltrim(journalKey, journal.length, -1);
    for (const [status, n] of byStatus)
      if (whole) tx.hset(countsKey, countField(status), n);
      else if (n !== 0) tx.hincrby(countsKey, countField(status), n);
    if (whole) tx.hset(countsKey, 'members', members);
    else tx.hincrby(countsKey, 'members', delta);
    tx.hdel(countsKey, 'folding').llen(journalKey);
    const results = await done(tx.exec());
    return Number(results.at(-1)?.[1] ?? 0);
  }

  /** Members as of the last checkpoint: the sum of the shards' counts. */
  private async members(lay: Layout): Promise<number> {
    const each = await Promise.all(
      shardsOf(lay).map((s) => this.redis.hget(this.shardKey(lay, s, 'c'), 'members')),
    );
    return each.reduce((sum, n) => sum + Number(n ?? 0), 0);
  }

  /**
   * Writes the state (as `ordered` reads it) as a new generation in shards and `bits` bucket bits, byte for
   * byte and a bucket at a time, then switches to it in one write and deletes the old one.
   */
  private async rewrite(from: Layout, bits: number): Promise<void> {
    const gen = await this.redis.hincrby(this.key('meta'), 'gen_seq', 1);
    const to: Layout = { gen, shardBits: SHARD_BITS, bits, gcFrom: from.gcFrom };
    const counts = new Map<number, Map<number, number>>();
    const writes = new BucketWrites(this.redis);
    let current = -1;
    let parts: Buffer[] = [];
    let members = 0;
    const flush = async () => {
      if (current < 0 || parts.length === 0) return;
      const key = this.shardKey(to, shardOfBucket(current, to), 'b');
      const packed = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      const field = String(current);
      parts = [];
      await writes.add(key, field, packed);
    };
    for await (const packed of this.orderedIn(from)) {
      let start = 0;
      for (let at = 0; at < packed.length; at += recordLength(packed, at)) {
        const b = bucketOfHigh(keyHigh(packed, at), bits);
        if (b !== current) {
          if (at > start) parts.push(packed.subarray(start, at));
          await flush();
          current = b;
          start = at;
        }
        const s = shardOfBucket(b, to);
        let byStatus = counts.get(s);
        if (!byStatus) counts.set(s, (byStatus = new Map()));
        const status = statusAt(packed, at);
        byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
        members++;
      }
      if (packed.length > start) parts.push(packed.subarray(start));
    }
    await flush();
    await writes.end();
    await Promise.all(
      [...counts].map(([s, byStatus]) => {
        const fields = COUNTED.flatMap((c) => [countField(c), byStatus.get(c) ?? 0]);
        const n = [...byStatus.values()].reduce((a, b) => a + b, 0);
        return this.redis.hset(this.shardKey(to, s, 'c'), 'members', n, ...fields);
      }),
    );
    // The switch: one transaction in the meta's slot (0.1.0's keys are there too, and go with it).
    await done(
      this.redis
        .multi()
        .hset(this.key('meta'), 'gen', gen, 'shard_bits', SHARD_BITS, 'bits', bits, 'format', FORMAT)
        .hset(this.key('meta'), 'members', members)
        .hdel(this.key('meta'), ...COUNTED.map(countField))
        .del(`${this.base}:b`, `${this.base}:j`)
        .exec(),
    );
    this.format = FORMAT;
    this.sawEmptyJournal();
    await this.collect();
  }

  /** Deletes the keys of every generation before the current one (a rewrite's or a replace's leftovers). */
  private async collect(): Promise<void> {
    const lay = await this.layout();
    if (!lay || lay.gen === 0) return;
    for (let gen = Math.max(1, lay.gcFrom); gen < lay.gen; gen++)
      await Promise.all(this.keysOf(gen, lay.shardBits).map((key) => this.redis.unlink(key)));
    await this.redis.hset(this.key('meta'), 'gc_from', lay.gen);
  }

  /** Refuses to touch a state this version does not read (see `outdated`). */
  private async readable(): Promise<void> {
    const outdated = await this.outdated();
    if (outdated)
      throw new Error(
        `the state of '${this.name}' on ${this.destination}: ${outdated}; run a sync of ${this.destination}, which replaces the audience with its segment`,
      );
  }

  /** The record format of the stored state: as marked, else 1 when there is a state (the first format had no mark). */
  private async recordFormat(): Promise<number> {
    if (this.format) return this.format;
    const [[, mark], [, buckets], [, journal]] = (await done(
      this.redis
        .multi()
        .hget(this.key('meta'), 'format')
        .exists(`${this.base}:b`)
        .exists(`${this.base}:j`)
        .exec(),
    )) as [[null, string | null], [null, number], [null, number]];
    if (mark !== null) return (this.format = Number(mark));
    return (this.format = buckets || journal ? 1 : FORMAT);
  }

  /**
   * The state as packed records in key order, a bucket at a time, with any journal not yet checkpointed
   * (a crashed run's) laid over it without writing anything: a plan reads the truth and touches nothing.
   */
  async *ordered(): AsyncGenerator<Buffer> {
    await this.readable();
    // A reader outside the run's lease (plan, status, the API) may find the generation it started on gone:
    // read again from the start if nothing was handed on yet, else say so (see `unmoved`).
    for (let attempt = 1; ; attempt++) {
      const lay = await this.layout();
      if (!lay) return;
      let handed = false;
      try {
        for await (const packed of this.orderedIn(lay)) {
          handed = true;
          yield packed;
        }
        return;
      } catch (error) {
        if (!(error instanceof StateMoved) || handed || attempt === 3) throw error;
      }
    }
  }

  /**
   * Throws `StateMoved` when the state is no longer in `lay`'s generation: a run rewrote or replaced it and
   * deletes the old one's keys (only after the switch, so a read of them that this follows is sound if it
   * passes). A run's own reads pass: its lease keeps other writers out.
   */
  private async unmoved(lay: Layout): Promise<void> {
    const gen = await this.redis.hget(this.key('meta'), 'gen');
    if (Number(gen ?? 0) !== lay.gen)
      throw new StateMoved(
        `the state of '${this.name}' on ${this.destination} was rewritten by a run while it was read; read it again`,
      );
  }

  /**
   * `ordered` in one layout: shard by shard, its journal's latest record per member laid over its buckets,
   * fetched in index order (their keys' order), the next ones while the caller reads these.
   */
  private async *orderedIn(lay: Layout): AsyncGenerator<Buffer> {
    for (const s of shardsOf(lay)) {
      const journal = await this.redis.lrangeBuffer(this.shardKey(lay, s, 'j'), 0, -1);
      // The journal's latest record per member, in key order (deleted ones included: they hide a bucket's).
      const placed = Placements.of(journal);
      const latest = newest(
        NONE,
        placed,
        Array.from({ length: placed.size }, (_, i) => i),
      );
      if (lay.bits < 0) {
        // Never checkpointed: the journal is all there is.
        await this.unmoved(lay);
        if (latest.length > 0) yield packNewest(NONE, placed, latest);
        continue;
      }
      const key = this.shardKey(lay, s, 'b');
      const per = 2 ** (lay.bits - lay.shardBits);
      const end = (s + 1) * per;
      const CHUNK = 512;
      const fetch = (first: number) => {
        const indexes = Array.from({ length: Math.min(CHUNK, end - first) }, (_, k) => String(first + k));
        return this.redis.hmgetBuffer(key, ...indexes);
      };
      let j = 0;
      let next = fetch(s * per);
      for (let first = s * per; first < end; first += CHUNK) {
        const values = await next;
        if (first + CHUNK < end) next = fetch(first + CHUNK);
        // These buckets (and the journal, read before them) are this generation's if it is still current.
        await this.unmoved(lay);
        for (let k = 0; k < values.length; k++) {
          const b = first + k;
          const stored = values[k];
          let to = j;
          while (to < latest.length && bucketOfHigh(placed.hi[latest[to]!]!, lay.bits) === b) to++;
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
  }

  /** The state's records in key order, decoded (see `ordered`). */
  async *scan(): AsyncGenerator<StateRecord[]> {
    for await (const packed of this.ordered()) yield decodeRecords(packed);
  }

  /**
   * Members by status as of the last checkpoint, kept by every write (no scan); undefined for a state
   * never written, or not counted yet (written by 0.1.0 before the counts existed: its next checkpoint
   * counts it).
   */
  async counts(): Promise<StateCounts | undefined> {
    // The counts of the generation that is current once they are read (a reader outside the run's lease
    // may find the one it started on deleted; see `unmoved`).
    for (let attempt = 1; ; attempt++) {
      const lay = await this.layout();
      if (!lay) return undefined;
      const each = await Promise.all(
        shardsOf(lay).map((s) => this.redis.hmget(this.shardKey(lay, s, 'c'), ...COUNTED.map(countField))),
      );
      try {
        await this.unmoved(lay);
      } catch (error) {
        if (error instanceof StateMoved && attempt < 3) continue;
        throw error;
      }
      return this.summed(lay, each);
    }
  }

  /** The shards' counts added up; undefined for a 0.1.0 state not counted yet. */
  private summed(lay: Layout, each: (string | null)[][]): StateCounts | undefined {
    if (lay.gen === 0 && each[0]![0] === null) return undefined;
    const sum = new Map<number, number>(COUNTED.map((c) => [c, 0]));
    for (const values of each) COUNTED.forEach((c, k) => sum.set(c, sum.get(c)! + Number(values[k] ?? 0)));
    return {
      confirmed: sum.get(Status.confirmed)!,
      addPending: sum.get(Status.addPending)!,
      removePending: sum.get(Status.removePending)!,
      rejected: sum.get(Status.rejected)!,
    };
  }

  async size(): Promise<number> {
    let n = 0;
    for await (const records of this.scan()) n += records.length;
    return n;
  }

  /** Bucket → its packed records, for every bucket in this hash. */
  private async allBucketBytes(key: string): Promise<Map<number, Buffer>> {
    const out = new Map<number, Buffer>();
    let cursor = '0';
    do {
      const [next, pairs] = await this.redis.hscanBuffer(key, cursor, 'COUNT', 512);
      cursor = next.toString();
      for (let i = 0; i < pairs.length; i += 2) out.set(Number(pairs[i]!.toString()), pairs[i + 1]!);
    } while (cursor !== '0');
    return out;
  }

  /** Bucket → its packed records, for these buckets of this hash where they hold any. */
  private async someBucketBytes(key: string, indexes: number[]): Promise<Map<number, Buffer>> {
    const out = new Map<number, Buffer>();
    for (let i = 0; i < indexes.length; i += 512) {
      const chunk = indexes.slice(i, i + 512);
      const values = await this.redis.hmgetBuffer(key, ...chunk.map(String));
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

/** The shards of a layout, in key order. */
function shardsOf(lay: Layout): number[] {
  return Array.from({ length: 2 ** lay.shardBits }, (_, s) => s);
}

/** The shard of a key whose first four bytes are `high`. */
function shardOfHigh(high: number, shardBits: number): number {
  return shardBits === 0 ? 0 : high >>> (32 - shardBits);
}

/** The shard of bucket `b` (a bucket is a longer key prefix than its shard). */
function shardOfBucket(b: number, lay: Layout): number {
  return lay.shardBits === 0 ? 0 : b >>> (lay.bits - lay.shardBits);
}

/** How many records these buffers pack. */
function countRecords(buffers: readonly Buffer[]): number {
  let n = 0;
  for (const buf of buffers) for (let at = 0; at < buf.length; at += recordLength(buf, at)) n++;
  return n;
}

type Replies = [Error | null, unknown][];

/** A pipeline's or a transaction's replies, or its first error thrown (ioredis resolves with errors inside). */
async function done(replies: Promise<Replies | null>): Promise<Replies> {
  const all = await replies;
  if (!all) throw new Error('a Redis transaction was aborted');
  for (const [error] of all) if (error) throw error;
  return all;
}

/**
 * Buckets written (or deleted) in batches of up to 256 of one hash: one HSET of every bucket written and
 * one HDEL of every bucket emptied, not a pipeline of commands (ioredis joins a pipeline's commands in one
 * more copy of their bytes). The next batch is built while Redis takes the last (one in flight, awaited
 * before the next goes), and every reply is checked.
 */
class BucketWrites {
  private key: string | undefined;
  private fields: (string | Buffer)[] = [];
  private emptied: string[] = [];
  private sent: Promise<unknown> | undefined;

  constructor(private readonly redis: RedisClient) {}

  /** Bucket `field` of hash `key` is now `packed`; deleted when undefined. */
  async add(key: string, field: string, packed: Buffer | undefined): Promise<void> {
    if (key !== this.key || this.fields.length / 2 + this.emptied.length >= 256) await this.send();
    this.key = key;
    if (packed) this.fields.push(field, packed);
    else this.emptied.push(field);
  }

  async end(): Promise<void> {
    await this.send();
    await this.sent;
  }

  private async send(): Promise<void> {
    if (this.fields.length === 0 && this.emptied.length === 0) return;
    await this.sent;
    const key = this.key!;
    const sent = Promise.all([
      this.fields.length > 0 ? this.redis.hset(key, ...this.fields) : undefined,
      this.emptied.length > 0 ? this.redis.hdel(key, ...this.emptied) : undefined,
    ]);
    // Awaited by the next `send` or `end`; marked handled meanwhile, in case the caller throws first.
    sent.catch(() => undefined);
    this.sent = sent;
    this.fields = [];
    this.emptied = [];
  }
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
    const n = countRecords(buffers);
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
  // By key, then in the order written (a bucket's stored records are in key order already).
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
