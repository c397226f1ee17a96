import { parentPort } from 'node:worker_threads';
import { TextColumn } from '../source/text.js';
import type { FollowMessage, FollowReply, NewIds } from './follow.js';
import { hashIds, KeyBuckets, keyRoom, PARTS, roomFor, sortParts, type KeyRoom } from './key-order.js';
import { sketchOf } from './sketch.js';

const HALF = PARTS / 2;

/**
 * The thread of a `KeyFollower`: hashes the ids read so far into key buckets and settles them; at the
 * end, sorts half of them with their segments and sketches them.
 */
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
let room: KeyRoom | undefined;
/** The room is made once half of the customers expected are read (the estimate is closer by then), with this much to spare. */
const ROOM_AT = 0.5;
const ROOM_SPARE = 1.1;

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
    if (message.type !== 'finish') {
      buckets?.settle();
      const expected = message.ids.expected;
      if (!room && expected && done >= expected * ROOM_AT) {
        room = keyRoom(Math.ceil(expected * ROOM_SPARE));
        port.postMessage({ type: 'room', given: room.given } satisfies FollowReply);
      }
      return;
    }
    const all = buckets ?? new KeyBuckets(0);
    buckets = undefined;
    // The caller's thread sorts the upper half of the parts while this one sorts the lower half; each
    // puts its keys' segments in key order and sketches its keys.
    const { sorted, segments } = roomFor(all.size, room);
    room = undefined;
    const upper = all.parts(HALF, PARTS);
    port.postMessage({ type: 'half', parts: upper, out: sorted, segments } satisfies FollowReply);
    sortParts(all.parts(0, HALF), sorted, { from: message.segment, into: segments });
    const sketch = sketchOf(
      message.layout,
      sorted.high.subarray(0, upper.at),
      sorted.low.subarray(0, upper.at),
    );
    port.postMessage({ type: 'lower', sketch } satisfies FollowReply, [
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
