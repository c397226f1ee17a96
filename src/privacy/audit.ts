import { randomBytes } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import type { RedisClient } from '../redis-client.js';
import { z } from 'zod';
import { scrub } from '../redact.js';
import { privacyKeys } from './keys.js';

/** One operator action: who, what, when; names and flags only, never a customer's data. */
export const auditEntrySchema = z.object({
  at: z.string(),
  /** The operator: an API user or token name, or the system user who ran the CLI. */
  user: z.string(),
  /** `session`, `token`, `proxy` (the HTTP API) or `cli`. */
  via: z.string(),
  action: z.string(),
  destination: z.string().optional(),
  audience: z.string().optional(),
  /** The action's flags and references (`full`, the job, the erasure or suppression id). */
  detail: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
});
export type AuditEntry = z.infer<typeof auditEntrySchema>;

/** Who runs this CLI: the system user and the machine. */
export function cliOperator(): { user: string; via: 'cli' } {
  let name = 'unknown';
  try {
    name = userInfo().username;
  } catch {
    // no passwd entry (a container's arbitrary uid): keep 'unknown'
  }
  return { user: `${name}@${hostname()}`, via: 'cli' };
}

/** Appends an action to the audit log and drops entries older than `keepDays`. */
export async function recordAudit(
  redis: RedisClient,
  redisPrefix: string,
  keepDays: number,
  entry: Omit<AuditEntry, 'at'>,
): Promise<void> {
  const now = Date.now();
  const kept: AuditEntry = { at: new Date(now).toISOString(), ...entry };
  if (kept.detail?.reason !== undefined)
    kept.detail = { ...kept.detail, reason: scrub(String(kept.detail.reason)) };
  // A random tail keeps two identical actions in one millisecond apart in the set.
  const member = `${JSON.stringify(kept)}\n${randomBytes(4).toString('hex')}`;
  await redis
    .multi()
    .zadd(privacyKeys.audit(redisPrefix), now, member)
    .zremrangebyscore(privacyKeys.audit(redisPrefix), '-inf', `(${now - keepDays * 86_400_000}`)
    .exec();
}

/** The audit log, newest first, at most `limit` entries (and only since `since`, when given). */
export async function auditLog(
  redis: RedisClient,
  redisPrefix: string,
  options: { limit?: number; since?: Date } = {},
): Promise<AuditEntry[]> {
  const members = await redis.zrevrangebyscore(
    privacyKeys.audit(redisPrefix),
    '+inf',
    options.since ? options.since.getTime() : '-inf',
    'LIMIT',
    0,
    options.limit ?? 1000,
  );
  return members.map((m) => auditEntrySchema.parse(JSON.parse(m.slice(0, m.lastIndexOf('\n')))));
}

/** An admin request as an audit entry: `full resync` apart from `resync`, the flags and the job. */
export function adminAudit(
  who: { user: string; via: string },
  data: {
    action: string;
    destination?: string | undefined;
    audience?: string | undefined;
    full?: boolean | undefined;
    allowRemovals?: readonly string[] | undefined;
    allowShrink?: boolean | undefined;
  },
  job: string,
): Omit<AuditEntry, 'at'> {
  return {
    user: who.user,
    via: who.via,
    action: data.action === 'resync' && data.full ? 'full resync' : data.action,
    ...(data.destination !== undefined ? { destination: data.destination } : {}),
    ...(data.audience !== undefined ? { audience: data.audience } : {}),
    detail: {
      job,
      ...(data.allowRemovals?.length ? { allow_removals: data.allowRemovals.join(', ') } : {}),
      ...(data.allowShrink ? { allow_shrink: true } : {}),
    },
  };
}
