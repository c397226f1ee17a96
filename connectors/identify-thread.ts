import { parentPort } from 'node:worker_threads';
import type { Identified, Person } from '../src/identify/types.js';
import { TextColumn } from '../src/source/text.js';
import { identifyOne, type IdentityBuffers } from '../src/identify/one.js';
import type { IdentifiedSlice, IdentifyTask, Reply } from '../src/identify/pool.js';
import { KEY_BYTES, SLOT_BYTES } from '../src/record/records.js';

type Rules = (person: Person, config: unknown) => Identified;

/** Each connector's rules, imported once: the module its definition names, next to this script. */
const loaded = new Map<string, Promise<Rules>>();
function rulesOf(module: string): Promise<Rules> {
  let rules = loaded.get(module);
  if (!rules) {
    rules = import(new URL(module, import.meta.url).href).then((m: { identify?: Rules }) => {
      if (typeof m.identify !== 'function') throw new Error(`${module} exports no identify function`);
      return m.identify;
    });
    loaded.set(module, rules);
  }
  return rules;
}

/**
 * A worker thread of the identify pool (`src/identify/pool.ts`) for the built-in connectors:
 * normalises and hashes a slice of customers with the destination's connector, reading the shared
 * columns, into buffers of its own that it gives to the caller with its answer.
 */
parentPort!.on('message', async (task: IdentifyTask) => {
  let reply: Reply;
  try {
    reply = { id: task.id, ...identifySlice(task, await rulesOf(task.rules)) };
  } catch (error) {
    reply = { id: task.id, error: error instanceof Error ? error.message : String(error) };
  }
  const out = reply.out;
  // Moved, not copied: this thread keeps nothing of the answer.
  parentPort!.postMessage(reply, out ? [out.keys, out.digests, out.masks, out.skips, out.slots] : []);
});

/** The slice's identities, and its customers skipped for a reason outside the task's list (by position in the caller's list). */
function identifySlice(task: IdentifyTask, rules: Rules): Pick<Reply, 'odd' | 'out'> {
  const identify = (person: Person) => rules(person, task.config);
  const columns = task.columns.map(([name, parts]) => [name, TextColumn.view(parts)] as const);
  const ids = TextColumn.view(task.ids);
  const n = task.customers.length;
  const out: IdentifiedSlice = {
    keys: new ArrayBuffer(n * KEY_BYTES),
    digests: new ArrayBuffer(n * 8),
    masks: new ArrayBuffer(n * 2),
    skips: new ArrayBuffer(n),
    slots: new ArrayBuffer(n * task.slotCount * SLOT_BYTES),
  };
  const into: IdentityBuffers = {
    slotCount: task.slotCount,
    reasons: task.reasons,
    keys: Buffer.from(out.keys),
    digests: new Uint32Array(out.digests),
    masks: new Uint16Array(out.masks),
    skips: new Uint8Array(out.skips),
  };
  const slots = Buffer.from(out.slots);
  const odd: [number, string][] = [];
  for (let k = 0; k < n; k++) {
    const id = identifyOne(task.customers[k]!, columns, ids, identify, into, k, slots);
    if ('skip' in id && !into.skips[k]) odd.push([task.from + k, id.skip]);
  }
  return { odd, out };
}
