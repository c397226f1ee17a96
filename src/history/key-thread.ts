import { parentPort } from 'node:worker_threads';
import { TextColumn } from '../source/text.js';
import type { FollowMessage, FollowReply, NewIds } from './follow.js';
import { hashIds, KeyBuckets, PARTS, sortedKeysOf, sortParts } from './key-order.js';
import { sketchOf } from './sketch.js';

const HALF = PARTS / 2;

/** The thread of a `KeyFollower`: hashes the ids read so far into key buckets and settles them; sorts them at the end. */
const port = parentPort!;
const parts = {
  chunks: [] as SharedArrayBuffer[],
  starts: [] as SharedArrayBuffer[],
  lengths: [] as SharedArrayBuffer[],
};
let buckets: KeyBuckets | undefined;
let done = 0;
let high = new Uint32Array(0);
let low = new Uint32Array(0);

function hashUpTo(ids: NewIds): void {
  parts.chunks.push(...ids.chunks);
  parts.starts.push(...ids.starts);
  parts.lengths.push(...ids.lengths);
  const size = ids.size;
  if (size <= done) return;
  const column = TextColumn.view({ ...parts, long: ids.long, size });
  buckets ??= new KeyBuckets(Math.max(ids.expected ?? 0, size));
  if (high.length < size - done) {
    high = new Uint32Array(size - done);
    low = new Uint32Array(size - done);
  }
  hashIds(column, done, size, high, low);
  buckets.add(high, low, 0, size - done, done);
  done = size;
}

port.on('message', (message: FollowMessage) => {
  try {
    hashUpTo(message.ids);
    // While the source is read, the keys so far are put in order, leaving the end mostly a merge.
    if (message.type !== 'finish') return buckets?.settle();
    const all = buckets ?? new KeyBuckets(0);
    buckets = undefined;
    // The caller's thread sorts the upper half of the parts while this one sorts the lower half.
    const sorted = sortedKeysOf(all.size);
    const theirs = new Int32Array(new SharedArrayBuffer(4));
    port.postMessage({
      type: 'half',
      parts: all.parts(HALF, PARTS),
      out: sorted,
      done: theirs,
    } satisfies FollowReply);
    sortParts(all.parts(0, HALF), sorted);
    Atomics.wait(theirs, 0, 0);
    // The keys go first: the caller puts its segments in their order while the sketch is made.
    port.postMessage({ type: 'sorted', sorted } satisfies FollowReply);
    const sketch = sketchOf(message.layout, sorted.high, sorted.low);
    port.postMessage({ type: 'sketch', sketch } satisfies FollowReply, [
      sketch.count.buffer,
      sketch.high.buffer,
      sketch.low.buffer,
      sketch.check.buffer,
    ] as ArrayBuffer[]);
  } catch (error) {
    port.postMessage({
      type: 'error',
      error: error instanceof Error ? error.message : String(error),
    } satisfies FollowReply);
  }
});
