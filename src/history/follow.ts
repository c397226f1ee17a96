import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { TextColumn, TextParts } from '../source/text.js';
import { workerCount } from '../identify/pool.js';
import { sortParts, type BucketParts, type SortedKeys } from './key-order.js';
import { addSketch, sketchOf, type KeySketch, type Layout } from './sketch.js';

/** The ids read so far: only the pages and chunks not sent before (the memory is shared, so those grow). */
export interface NewIds {
  chunks: SharedArrayBuffer[];
  starts: SharedArrayBuffer[];
  lengths: SharedArrayBuffer[];
  long: [number, string][];
  size: number;
  /** About how many customers the source holds, when the reader can tell. */
  expected?: number | undefined;
}

export type FollowMessage =
  | { type: 'follow'; ids: NewIds }
  /** `segment`: each customer's segment index, in shared memory. */
  | { type: 'finish'; ids: NewIds; layout: Layout; segment: Uint8Array };

export type FollowReply =
  /** The upper half of the parts, for the caller to sort into `out` and `segments` (shared). */
  | { type: 'half'; parts: BucketParts; out: SortedKeys; segments: Uint8Array }
  /** The lower half is sorted: its keys' sketch. */
  | { type: 'lower'; sketch: KeySketch }
  /** Room made while the source is read, for the segments `finish` hands over (`keyRoom`). */
  | { type: 'room'; given: Uint8Array }
  | { type: 'error'; error: string };

/** Every customer's key in key order, with their segments in that order and their sketch. */
export interface FollowedKeys {
  sorted: SortedKeys;
  segments: Uint8Array;
  sketch: KeySketch;
}

const SCRIPT = new URL('./key-thread.js', import.meta.url);

/**
 * The customers' keys, made on a thread of their own while the source is read (the read hands it the
 * ids as they come, `follow`), so that a snapshot costs the scoring little more than the sort and what
 * follows it. Without threads (one core, or AUDIENCE_SYNC_THREADS=1, or tests run from source), `start`
 * gives none, and the snapshot makes its keys itself.
 */
export class KeyFollower {
  private readonly worker: Worker;
  private failed = false;
  private followed: TextColumn | undefined;
  private sent = { chunks: 0, pages: 0 };
  private readonly replies: FollowReply[] = [];
  private waiting: ((reply: FollowReply) => void) | undefined;
  private given: Uint8Array | undefined;

  private constructor() {
    this.worker = new Worker(SCRIPT);
    this.worker.unref();
    const end = (error: string) => {
      this.failed = true;
      this.deliver({ type: 'error', error });
    };
    this.worker.on('message', (reply: FollowReply) => this.deliver(reply));
    this.worker.on('error', (error) => end(error.message));
    this.worker.on('exit', () => end('the thread stopped'));
  }

  static start(): KeyFollower | undefined {
    if (workerCount() < 1 || !existsSync(fileURLToPath(SCRIPT))) return undefined;
    return new KeyFollower();
  }

  /** For the source reader's `onCustomers`: the ids read so far. */
  readonly follow = (ids: TextColumn, expected?: number): void => {
    if (this.failed || (this.followed && this.followed !== ids)) return;
    this.followed = ids;
    const news = this.newIds(ids, expected);
    if (news) this.worker.postMessage({ type: 'follow', ids: news } satisfies FollowMessage);
  };

  /**
   * Every customer's key in key order, with their segments (`segment`, indexes below 256, by customer)
   * in that order and their sketch in `layout`; undefined when the thread failed (the caller then makes
   * them itself). The thread and this one sort half of the keys each, and sketch them; the thread ends.
   */
  async finish(ids: TextColumn, segment: Uint16Array, layout: Layout): Promise<FollowedKeys | undefined> {
    // Only the column it followed: another one's entries could be in another order.
    const news = this.failed || (this.followed && this.followed !== ids) ? undefined : this.newIds(ids);
    if (!news || segment.length !== ids.length) {
      this.stop();
      return undefined;
    }
    const n = segment.length;
    const shared =
      this.given && this.given.length >= n
        ? this.given.subarray(0, n)
        : new Uint8Array(new SharedArrayBuffer(n));
    this.given = undefined;
    shared.set(segment);
    this.worker.ref();
    this.worker.postMessage({ type: 'finish', ids: news, layout, segment: shared } satisfies FollowMessage);
    const half = await this.next();
    if (half.type !== 'half' || half.out.high.length !== ids.length) {
      this.stop();
      return undefined;
    }
    const { parts, out, segments } = half;
    sortParts(parts, out, { from: shared, into: segments });
    const upper = sketchOf(layout, out.high.subarray(parts.at), out.low.subarray(parts.at));
    const lower = await this.next();
    this.stop();
    if (lower.type !== 'lower') return undefined;
    return { sorted: out, segments, sketch: addSketch(upper, lower.sketch) };
  }

  /** Ends the thread (a scoring that failed, or after `finish`). */
  stop(): void {
    this.failed = true;
    void this.worker.terminate();
  }

  /** The pages and chunks not sent yet; none while the column is a dictionary (it is rewritten when it grows out of one). */
  private newIds(ids: TextColumn, expected?: number): NewIds | undefined {
    const parts: TextParts = ids.parts();
    if (parts.dictionary) return undefined;
    const news: NewIds = {
      chunks: parts.chunks.slice(this.sent.chunks),
      starts: parts.starts.slice(this.sent.pages),
      lengths: parts.lengths.slice(this.sent.pages),
      long: parts.long,
      size: parts.size,
      expected,
    };
    this.sent = { chunks: parts.chunks.length, pages: parts.starts.length };
    return news;
  }

  private deliver(reply: FollowReply): void {
    if (reply.type === 'room') {
      this.given = reply.given;
      return;
    }
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting) waiting(reply);
    else if (reply.type !== 'error' || this.replies.length === 0) this.replies.push(reply);
  }

  private next(): Promise<FollowReply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve) => (this.waiting = resolve));
  }
}
