import { parentPort } from 'node:worker_threads';
import type { Identified, Person } from '../src/identify/types.js';
import { TextColumn } from '../src/source/text.js';
import { identifyOne, type IdentityBuffers } from '../src/identify/one.js';
import type { IdentifyTask } from '../src/identify/pool.js';

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
 * normalises and hashes a range of customers with the destination's connector, reading the shared
 * columns and writing the shared outputs in place.
 */
parentPort!.on('message', async (task: IdentifyTask) => {
  try {
    parentPort!.postMessage({ id: task.id, odd: identifyRange(task, await rulesOf(task.rules)) });
  } catch (error) {
    parentPort!.postMessage({ id: task.id, error: error instanceof Error ? error.message : String(error) });
  }
});

/** Returns positions skipped for a reason outside SKIP_REASONS, which the caller records. */
function identifyRange(task: IdentifyTask, rules: Rules): [number, string][] {
  const identify = (person: Person) => rules(person, task.config);
  const columns = task.columns.map(([name, parts]) => [name, TextColumn.view(parts)] as const);
  const ids = TextColumn.view(task.ids);
  const customers = new Uint32Array(task.customers);
  const slots = Buffer.from(task.slots);
  const out: IdentityBuffers = {
    slotCount: task.slotCount,
    keys: Buffer.from(task.keys),
    digests: new Uint32Array(task.digests),
    masks: new Uint16Array(task.masks),
    skips: new Uint8Array(task.skips),
  };
  const odd: [number, string][] = [];
  for (let k = task.from; k < task.to; k++) {
    const id = identifyOne(customers[k]!, columns, ids, identify, out, k, slots);
    if ('skip' in id && !out.skips[k]) odd.push([k, id.skip]);
  }
  return odd;
}
