import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Status } from '../src/record/records.js';
import type { StateStore } from '../src/record/store.js';
import type { AudiencePlan } from '../src/diff/plan.js';

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(process.env.BENCH_DIR ?? tmpdir(), prefix));
}

/**
 * Writes what a sync of these plans to a `file` destination named `local` would leave in the state (every
 * planned addition confirmed); returns the identifier hashes stored.
 */
export async function writeState(store: StateStore, plans: readonly AudiencePlan[]): Promise<number> {
  let hashes = 0;
  for (const plan of plans) {
    const state = store.audience('local', plan.audience);
    for (let i = 0; i < plan.add.length; i += 10_000)
      await state.append(
        plan.add.slice(i, i + 10_000).map((m) => {
          hashes += m.slots.filter(Boolean).length;
          return { key: m.key, status: Status.confirmed, upload: 0, slots: [...m.slots] };
        }),
      );
    await state.checkpoint();
  }
  return hashes;
}
