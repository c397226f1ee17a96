import type { RedisClient } from '../redis-client.js';
import { z } from 'zod';
import { UserError, ExitCode } from '../errors.js';
import { scrub } from '../redact.js';
import { privacyKeys } from './keys.js';

/** One person kept out of every audience: customer keys and identifier digests (hex), never plaintext. */
const suppressionEntrySchema = z.object({
  id: z.string(),
  added_at: z.string(),
  /** The erasure request that added it. */
  erasure: z.string().optional(),
  /** 8-byte customer keys (src/record/keys.ts), hex. */
  keys: z.array(z.string()),
  /** 32-byte identifier digests as the platforms' rules make them (each standalone: an email, a phone), hex. */
  hashes: z.array(z.string()),
});
export type SuppressionEntry = z.infer<typeof suppressionEntrySchema>;

/** A suppression an operator lifted: why, by whom and when (its digests are gone). */
const liftedSuppressionSchema = suppressionEntrySchema
  .omit({ keys: true, hashes: true })
  .extend({ lifted_at: z.string(), lifted_by: z.string(), reason: z.string() });
export type LiftedSuppression = z.infer<typeof liftedSuppressionSchema>;

/**
 * The installation's suppression list as a plan reads it: a customer is suppressed when its key or any
 * of its identifier slots is on it.
 */
export class Suppression {
  private constructor(
    private readonly keys: ReadonlySet<string>,
    private readonly hashes: ReadonlySet<string>,
    /** First word of each digest: most slots are told apart without building a string. */
    private readonly prints: ReadonlySet<number>,
  ) {}

  static readonly none = new Suppression(new Set(), new Set(), new Set());

  static of(entries: readonly SuppressionEntry[]): Suppression {
    const keys = new Set<string>();
    const hashes = new Set<string>();
    const prints = new Set<number>();
    for (const e of entries) {
      for (const k of e.keys) keys.add(Buffer.from(k, 'hex').toString('latin1'));
      for (const h of e.hashes) {
        const b = Buffer.from(h, 'hex');
        hashes.add(b.toString('latin1'));
        prints.add(b.readUInt32LE(0));
      }
    }
    return new Suppression(keys, hashes, prints);
  }

  static async load(redis: RedisClient, redisPrefix: string): Promise<Suppression> {
    return Suppression.of(await suppressionEntries(redis, redisPrefix));
  }

  get empty(): boolean {
    return this.keys.size === 0 && this.hashes.size === 0;
  }

  /** Whether the customer with this key and these identifier slots is on the list. */
  matches(key: Buffer, slot: (s: number) => Buffer | undefined, slotCount: number): boolean {
    if (this.empty) return false;
    if (this.keys.has(key.toString('latin1'))) return true;
    for (let s = 0; s < slotCount; s++) {
      const v = slot(s);
      if (v && this.prints.has(v.readUInt32LE(0)) && this.hashes.has(v.toString('latin1'))) return true;
    }
    return false;
  }
}

export async function suppressionEntries(
  redis: RedisClient,
  redisPrefix: string,
): Promise<SuppressionEntry[]> {
  const all = await redis.hvals(privacyKeys.suppressions(redisPrefix));
  return all.map((json) => suppressionEntrySchema.parse(JSON.parse(json))).sort(byAdded);
}

export async function liftedSuppressions(
  redis: RedisClient,
  redisPrefix: string,
): Promise<LiftedSuppression[]> {
  const all = await redis.hvals(privacyKeys.lifted(redisPrefix));
  return all.map((json) => liftedSuppressionSchema.parse(JSON.parse(json))).sort(byAdded);
}

const byAdded = (a: { added_at: string; id: string }, b: { added_at: string; id: string }) =>
  a.added_at.localeCompare(b.added_at) || a.id.localeCompare(b.id);

export async function suppressionEntry(
  redis: RedisClient,
  redisPrefix: string,
  id: string,
): Promise<SuppressionEntry | undefined> {
  const json = await redis.hget(privacyKeys.suppressions(redisPrefix), id);
  return json === null ? undefined : suppressionEntrySchema.parse(JSON.parse(json));
}

export async function saveSuppression(
  redis: RedisClient,
  redisPrefix: string,
  entry: SuppressionEntry,
): Promise<void> {
  await redis.hset(privacyKeys.suppressions(redisPrefix), entry.id, JSON.stringify(entry));
}

/** Adds keys and digests learned later (from the state) to an entry that is still on the list. */
export async function extendSuppression(
  redis: RedisClient,
  redisPrefix: string,
  id: string,
  more: { keys: Iterable<string>; hashes: Iterable<string> },
): Promise<void> {
  const entry = await suppressionEntry(redis, redisPrefix, id);
  if (!entry) return;
  const keys = new Set([...entry.keys, ...more.keys]);
  const hashes = new Set([...entry.hashes, ...more.hashes]);
  if (keys.size === entry.keys.length && hashes.size === entry.hashes.length) return;
  await saveSuppression(redis, redisPrefix, { ...entry, keys: [...keys], hashes: [...hashes] });
}

/** Takes a person off the list (later runs may add them again); the reason is kept, the digests are not. */
export async function liftSuppression(
  redis: RedisClient,
  redisPrefix: string,
  id: string,
  reason: string,
  by: string,
): Promise<LiftedSuppression> {
  if (!reason.trim())
    throw new UserError('a suppression is lifted only with a reason', ExitCode.usage, 'pass --reason "…"');
  const entry = await suppressionEntry(redis, redisPrefix, id);
  if (!entry) {
    const known = (await suppressionEntries(redis, redisPrefix)).map((e) => e.id);
    throw new UserError(
      `no suppression with id '${id}'`,
      ExitCode.usage,
      known.length ? `suppressions are: ${known.join(', ')}` : 'the suppression list is empty',
    );
  }
  const lifted: LiftedSuppression = {
    id,
    added_at: entry.added_at,
    erasure: entry.erasure,
    lifted_at: new Date().toISOString(),
    lifted_by: by,
    // An operator may type who asked: an email or a phone in it is not kept.
    reason: scrub(reason.trim()),
  };
  await redis
    .multi()
    .hdel(privacyKeys.suppressions(redisPrefix), id)
    .hset(privacyKeys.lifted(redisPrefix), id, JSON.stringify(lifted))
    .exec();
  return lifted;
}
