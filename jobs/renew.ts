/** What the lease-renewing thread (`lease-thread.ts`) and `Lease` share; nothing here imports more. */

/** Renews a lease that is still ours (its token): 1, else 0. */
export const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/** A main thread that has not beaten for this long is stuck: its leases are no longer renewed. */
export const STUCK_MS = 300_000;

/** What the main thread asks of the renewing thread (`lease-thread.ts`). */
export type RenewerMessage =
  { op: 'keep'; id: number; key: string; token: string; ttlMs: number } | { op: 'drop'; id: number };

/** What the renewing thread tells the main thread: it is connected, or a lease is no longer ours. */
export type RenewerReport = { ready: true } | { lost: number };
