import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileConnector } from '../connectors/file/index.js';
import type { Segmented } from '../src/score/pipeline.js';
import { Status } from '../src/state/records.js';
import type { StateStore } from '../src/state/store.js';
import { Identities, type AudiencePlan } from '../src/sync/plan.js';
import type { Prepared } from '../src/sync/prepare.js';
import { syncDestination, type AudienceResult, type SyncOptions } from '../src/sync/run.js';

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(process.env.BENCH_DIR ?? tmpdir(), prefix));
}

/** Syncs the prepared config's (first) destination as a worker does: a client, the run, the client closed. */
export async function syncPrepared(
  prepared: Prepared,
  options: Omit<SyncOptions, 'segmented' | 'audiences'>,
): Promise<AudienceResult[]> {
  const destination = prepared.destinations[0]!;
  const client = destination.connector.create(destination.config, {
    destination: destination.name,
    baseDir: prepared.baseDir,
    log: options.log,
  });
  try {
    return await syncDestination(destination, client, {
      ...options,
      segmented: prepared.segmented,
      audiences: prepared.audiences,
    });
  } finally {
    await client.close?.();
  }
}

/**
 * Writes what a sync of these plans to a `file` destination named `local` would leave in the state (every
 * planned addition confirmed); returns the identifier hashes stored.
 */
export async function writeState(
  store: StateStore,
  customers: Segmented,
  plans: readonly AudiencePlan[],
): Promise<number> {
  const config = fileConnector.configSchema.parse({ type: 'file', path: 'out' });
  const identities = new Identities(customers, (person) => fileConnector.identify(person, config), 2);
  let hashes = 0;
  for (const plan of plans) {
    const state = store.audience('local', plan.audience);
    await identities.hold(plan.add);
    for (let i = 0; i < plan.add.length; i += 10_000)
      await state.append(
        Array.from(plan.add.subarray(i, i + 10_000), (c) => {
          const m = identities.member(c);
          hashes += m.slots.filter(Boolean).length;
          return { key: m.key, status: Status.confirmed, upload: 0, slots: [...m.slots] };
        }),
      );
    await state.checkpoint();
  }
  return hashes;
}
