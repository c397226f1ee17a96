import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileConnector } from '../connectors/file/index.js';
import { audiencesOf, membershipOf, type AudienceSpec } from '../src/audience/audiences.js';
import { configSchema, type Config } from '../src/config/schema.js';
import { Status } from '../src/record/records.js';
import type { Segmented } from '../src/score/pipeline.js';
import type { Destination } from '../src/sync/run.js';
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

/** A config that reads a scores CSV and syncs it to a `file` destination named `local` (beside the file). */
export function scoresConfig(csv: string): Config {
  return configSchema.parse({
    source: { type: 'csv', path: csv },
    scoring: { analysis_date: '2026-01-01' },
    destinations: { local: { type: 'file', path: path.join(path.dirname(csv), 'out') } },
  });
}

/** The `local` file destination, as a run gets it. */
export const localFile: Destination = {
  name: 'local',
  connector: fileConnector as unknown as Destination['connector'],
  config: fileConnector.configSchema.parse({ type: 'file', path: 'out' }),
};

/**
 * Share `part` of `parts` of the audiences, by size, as an operator would place them on machines: the
 * largest first, each to the process with the fewest members so far (every process computes the same
 * split). It yields between audiences, so that it is not counted as one long stall.
 */
export async function shareOf(
  config: Config,
  segmented: Segmented,
  part: number,
  parts: number,
): Promise<AudienceSpec[]> {
  const all: { spec: AudienceSpec; size: number }[] = [];
  for (const spec of audiencesOf(config, segmented.scores.segments)) {
    all.push({ spec, size: membershipOf(spec, segmented).members.length });
    await new Promise((resolve) => setImmediate(resolve));
  }
  const loads = new Array<number>(parts).fill(0);
  return all
    .sort((a, b) => b.size - a.size)
    .filter(({ size }) => {
      const least = loads.indexOf(Math.min(...loads));
      loads[least]! += size;
      return least === part;
    })
    .map(({ spec }) => spec);
}

/** Redis's own CPU seconds so far, from `INFO cpu`. */
export function redisCpu(info: string): number {
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return field('used_cpu_sys') + field('used_cpu_user');
}
