import { setTimeout as sleep } from 'node:timers/promises';
import { ConnectorError } from '../connector.js';
import type { Logger } from '../log.js';

export interface RetryPolicy {
  /** Attempts for retryable errors (network, 5xx, concurrent modification). */
  attempts: number;
  baseMs: number;
  maxMs: number;
  /** Longest total time spent waiting on rate limits for one call. */
  maxRateLimitWaitMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 6,
  baseMs: 500,
  maxMs: 30_000,
  maxRateLimitWaitMs: 15 * 60_000,
};

/**
 * Runs one platform call: retryable errors back off exponentially with full jitter, rate limits wait
 * for the platform's delay, anything else is thrown at once. Batches already sent stay sent.
 */
export async function withRetry<T>(
  what: string,
  call: () => Promise<T>,
  log: Logger,
  policy: RetryPolicy = DEFAULT_RETRY,
  signal?: AbortSignal,
): Promise<T> {
  let attempt = 0;
  let waitedForRateLimit = 0;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof ConnectorError)) throw error;
      if (error.kind === 'rate_limited') {
        const wait = error.options.retryAfterMs ?? policy.baseMs * 2 ** Math.min(attempt, 10);
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
      const wait = Math.random() * Math.min(policy.maxMs, policy.baseMs * 2 ** attempt);
      log.warn(
        { what, attempt, waitMs: Math.round(wait) },
        `${what} failed (${error.message}); retry ${attempt} in ${Math.ceil(wait)} ms`,
      );
      await sleep(wait, undefined, { signal });
    }
  }
}
