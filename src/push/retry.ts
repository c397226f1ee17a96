import { setTimeout as sleep } from 'node:timers/promises';
import { ConnectorError } from '../connector.js';
import type { Logger } from '../log.js';

/** Every platform's retry limits: connectors say what failed and any delay the platform named, nothing more. */
export interface RetryPolicy {
  /** Attempts for retryable errors (network, 5xx, concurrent modification). */
  attempts: number;
  /** First backoff when the platform names no delay; it doubles with each attempt, up to `maxMs`. */
  baseMs: number;
  maxMs: number;
  /** Longest total time spent waiting on rate limits for one call. */
  maxRateLimitWaitMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 6,
  baseMs: 1_000,
  maxMs: 30_000,
  maxRateLimitWaitMs: 15 * 60_000,
};

/** A `Retry-After` header (seconds, or an HTTP date), as milliseconds; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null | undefined, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * The wait before retrying after the `attempt`-th failure of its kind (0 for the first): the delay the
 * platform named (`Retry-After`, a quota's retry delay), else backoff doubling from `baseMs` up to `maxMs`,
 * between half and all of it (the jitter keeps clients that failed together from retrying together).
 */
export function retryDelay(
  error: ConnectorError,
  attempt: number,
  policy: RetryPolicy = DEFAULT_RETRY,
  random: () => number = Math.random,
): number {
  const named = error.options.retryAfterMs;
  if (named !== undefined) return named;
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * Runs one platform call: retryable errors back off, rate limits wait (up to `maxRateLimitWaitMs` in all),
 * both for the delay `retryDelay` picks; anything else is thrown at once. Batches already sent stay sent.
 */
export async function withRetry<T>(
  what: string,
  call: () => Promise<T>,
  log: Logger,
  policy: RetryPolicy = DEFAULT_RETRY,
  signal?: AbortSignal,
): Promise<T> {
  let attempt = 0;
  let rateLimits = 0;
  let waitedForRateLimit = 0;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof ConnectorError)) throw error;
      if (error.kind === 'rate_limited') {
        const wait = retryDelay(error, rateLimits++, policy);
        if (waitedForRateLimit + wait > policy.maxRateLimitWaitMs) throw error;
        waitedForRateLimit += wait;
        log.warn(
          { what, waitMs: wait },
          `rate limited: waiting ${Math.ceil(wait / 1000)} s before retrying ${what}`,
        );
        await sleep(wait, undefined, { signal });
        continue;
      }
      if (error.kind !== 'retryable' || ++attempt >= policy.attempts) throw error;
      const wait = retryDelay(error, attempt - 1, policy);
      log.warn(
        { what, attempt, waitMs: wait },
        `${what} failed (${error.message}); retry ${attempt} in ${Math.ceil(wait / 1000)} s`,
      );
      await sleep(wait, undefined, { signal });
    }
  }
}
