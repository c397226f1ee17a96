import type { RedisClient } from '../redis-client.js';
import { syncSchema, type Config } from '../config/schema.js';
import type { AudienceStats } from '../connector.js';
import type { Segmented } from '../score/pipeline.js';
import { pct } from '../source/read.js';
import type { AudiencePlan } from './plan.js';

/**
 * Brakes: a broken export must never empty an audience. Before anything is sent, a source that shrank
 * too much since the last sync stops the run, and an audience that would lose too large a share of its
 * members is left as it is. Both say why and how to go ahead when the change is real.
 */

/** The removal brake of one run: the config's limits and the audiences an operator let through. */
export interface RemovalBrake {
  maxShare: number;
  min: number;
  /** Audiences allowed past the brake in this run (`--allow-removals`); `*` lets every one through. */
  allow: readonly string[];
}

export function removalBrake(sync: Config['sync'], allow: readonly string[] = []): RemovalBrake {
  return { maxShare: sync.max_removal_share, min: sync.min_removals_held, allow };
}

/** The brake with the config's defaults, for callers without a config. */
export const DEFAULT_REMOVAL_BRAKE = removalBrake(syncSchema.parse({}));

/** No brake: for benchmarks and tests that remove on purpose. */
export const NO_REMOVAL_BRAKE: RemovalBrake = { maxShare: 1, min: 0, allow: ['*'] };

/** Why the brake holds this audience back, or undefined when its removals may go. */
export function heldByRemovals(plan: AudiencePlan, brake: RemovalBrake): string | undefined {
  const removing = plan.remove.length;
  if (removing === 0 || removing < brake.min || plan.current === 0) return undefined;
  const share = removing / plan.current;
  if (share <= brake.maxShare) return undefined;
  if (brake.allow.includes('*') || brake.allow.includes(plan.audience)) return undefined;
  return (
    `held by the removal brake: this run would remove ${count(removing)} of its ${count(plan.current)} members ` +
    `(${pct(share)}, more than sync.max_removal_share ${pct(brake.maxShare)}), so nothing was sent to it. ` +
    `Check the source; if the change is real, sync again with --allow-removals '${plan.audience}' ` +
    `(or raise sync.max_removal_share)`
  );
}

/**
 * Why the brake holds back the replace of an audience whose state was lost: the platform's own count
 * says the segment is far smaller than what the audience holds (the lost state took the baselines of the
 * other brakes with it). Undefined when the platform gives no count. A destination that counts
 * identifiers rather than people is compared with the identifiers the segment's members have
 * (`identifiers`, counted only then).
 */
export async function heldByReplace(
  stats: () => Promise<AudienceStats>,
  plan: AudiencePlan,
  brake: RemovalBrake,
  identifiers: () => number,
): Promise<string | undefined> {
  if (brake.allow.includes('*') || brake.allow.includes(plan.audience)) return undefined;
  const platform = await stats().catch(() => undefined);
  const size = platform?.size;
  if (!platform || size === undefined || size === 0) return undefined;
  const byIdentifiers = platform.counts === 'identifiers';
  const segment = byIdentifiers ? identifiers() : plan.members;
  const removing = size - segment;
  if (removing < brake.min || removing / size <= brake.maxShare) return undefined;
  const unit = byIdentifiers ? 'identifiers' : 'members';
  return (
    `held by the removal brake: this audience must be replaced (its state is gone), and the platform counts ` +
    `${count(size)} ${unit} where the segment has ${count(segment)} (${pct(removing / size)} fewer, more than ` +
    `sync.max_removal_share ${pct(brake.maxShare)}), so nothing was sent to it. Check the source; if it is ` +
    `right, sync again with --allow-removals '${plan.audience}'`
  );
}

/** How many rows a sync saw: customers scored, and profile rows when profiles come from a table of their own. */
export interface SourceSize {
  customers: number;
  profiles?: number;
  at: string;
}

export function sourceSizeOf(segmented: Segmented): SourceSize {
  const { profiles } = segmented.report;
  return {
    customers: segmented.customers.ids.length,
    ...(profiles ? { profiles: profiles.rows - profiles.bad } : {}),
    at: new Date().toISOString(),
  };
}

const sizeKey = (prefix: string) => `${prefix}:source:size`;

/**
 * Why this scoring must not be acted on: the source (or the profiles) fell by more than its
 * `max_shrink_share` since the last sync. Undefined when it may go, or when there is no earlier sync.
 */
export async function heldByShrink(
  redis: RedisClient,
  prefix: string,
  size: SourceSize,
  config: Pick<Config, 'source' | 'profiles'>,
): Promise<string | undefined> {
  const raw = await redis.get(sizeKey(prefix));
  if (!raw) return undefined;
  const last = JSON.parse(raw) as SourceSize;
  const fell = (what: string, now: number, before: number | undefined, key: string, limit: number) => {
    if (!before || now >= before) return undefined;
    const share = (before - now) / before;
    if (share <= limit) return undefined;
    return (
      `${what.replace('{n}', count(now))}, ${pct(share)} fewer than the ${count(before)} of the last sync ` +
      `(${last.at.replace('T', ' ').slice(0, 16)} UTC), more than ${key} ${pct(limit)}`
    );
  };
  const reasons = [
    fell(
      'the source has {n} customers',
      size.customers,
      last.customers,
      'source.max_shrink_share',
      config.source.max_shrink_share,
    ),
    size.profiles !== undefined && config.profiles
      ? fell(
          'the profiles have {n} rows',
          size.profiles,
          last.profiles,
          'profiles.max_shrink_share',
          config.profiles.max_shrink_share,
        )
      : undefined,
  ].filter((r): r is string => r !== undefined);
  if (reasons.length === 0) return undefined;
  return (
    `held by the source brake: ${reasons.join('; ')}. Nothing was sent. A partial export would empty the ` +
    `audiences: check it; if the change is real, sync again with --allow-shrink (or raise the share)`
  );
}

/** Remembers what this sync saw, for the next one's source brake. */
export async function recordSourceSize(redis: RedisClient, prefix: string, size: SourceSize): Promise<void> {
  await redis.set(sizeKey(prefix), JSON.stringify(size));
}

const count = (n: number) => n.toLocaleString('en-US');
