import { hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { SKIP_REASONS, type Identified, type Person } from '../src/identity/types.js';
import { TextColumn } from '../src/source/text.js';
import type { IdentifyTask } from '../src/sync/identify-pool.js';
import { identifiers } from './identify.js';

/**
 * A worker thread of the identify pool (`src/sync/identify-pool.ts`) for the built-in connectors:
 * normalises and hashes a range of customers with the destination's connector, reading the shared
 * columns and writing the shared outputs in place.
 */
const KEY_BYTES = 8;
const SLOT_BYTES = 32;

parentPort!.on('message', (task: IdentifyTask) => {
  try {
    parentPort!.postMessage({ id: task.id, odd: identifyRange(task) });
  } catch (error) {
    parentPort!.postMessage({ id: task.id, error: error instanceof Error ? error.message : String(error) });
  }
});

/** Returns customers skipped for a reason outside SKIP_REASONS (by index), which the caller records. */
function identifyRange(task: IdentifyTask): [number, string][] {
  const identify = identifiers[task.connector] as
    ((person: Person, config: unknown) => Identified) | undefined;
  if (!identify) throw new Error(`no identifier rules for connector type ${task.connector} in this build`);
  const columns = Object.entries(task.columns).map(
    ([name, parts]) => [name, TextColumn.view(parts)] as const,
  );
  const ids = TextColumn.view(task.ids);
  const customers = new Uint32Array(task.customers);
  const slots = Buffer.from(task.slots);
  const masks = new Uint16Array(task.masks);
  const skips = new Uint8Array(task.skips);
  const keys = Buffer.from(task.keys);
  const keyed = new Uint8Array(task.keyed);
  const odd: [number, string][] = [];
  for (let k = task.from; k < task.to; k++) {
    const i = customers[k]!;
    const person: Person = {};
    for (const [name, column] of columns) {
      const v = column.get(i);
      if (v !== undefined) person[name] = v;
    }
    const id = identify(person, task.config);
    if (!keyed[i]) {
      hash('sha256', ids.bytes(i)!, 'buffer').copy(keys, i * KEY_BYTES, 0, KEY_BYTES);
      keyed[i] = 1;
    }
    masks[i] = 0;
    skips[i] = 0;
    if ('skip' in id) {
      const r = SKIP_REASONS.indexOf(id.skip);
      if (r >= 0) skips[i] = r + 1;
      else odd.push([i, id.skip]);
      continue;
    }
    let mask = 0;
    const at = k * task.slotCount * SLOT_BYTES;
    for (let s = 0; s < id.slots.length && s < task.slotCount; s++) {
      const slot = id.slots[s];
      if (!slot) continue;
      slot.copy(slots, at + s * SLOT_BYTES, 0, SLOT_BYTES);
      mask |= 1 << s;
    }
    if (mask === 0) skips[i] = SKIP_REASONS.indexOf('no usable identifier') + 1;
    else masks[i] = mask;
  }
  return odd;
}
