import { describe, expect, it } from 'vitest';
import { ConnectorError } from '../../src/connector.js';
import { createLogger } from '../../src/log.js';
import { DEFAULT_RETRY, retryDelay, withRetry } from '../../src/push/retry.js';

const log = createLogger({ level: 'silent', json: true });
const limited = (retryAfterMs?: number) =>
  new ConnectorError('slow down', 'rate_limited', retryAfterMs === undefined ? {} : { retryAfterMs });
const flaky = (retryAfterMs?: number) =>
  new ConnectorError('busy', 'retryable', retryAfterMs === undefined ? {} : { retryAfterMs });

describe('retry delays', () => {
  it("takes the platform's delay to the millisecond, for rate limits and retryable errors alike", () => {
    expect(retryDelay(limited(1_000), 0)).toBe(1_000);
    expect(retryDelay(limited(1_000), 7)).toBe(1_000);
    expect(retryDelay(flaky(3_000), 2)).toBe(3_000);
    expect(retryDelay(limited(0), 4)).toBe(0);
  });

  it('without one: seconds, doubling per attempt, between half and all of the step, capped', () => {
    // Steps 1, 2, 4, 8, 16, 30, 30 s: the lowest and highest draw of each, by hand.
    const low = [0, 1, 2, 3, 4, 5, 6].map((n) => retryDelay(limited(), n, DEFAULT_RETRY, () => 0));
    const high = [0, 1, 2, 3, 4, 5, 6].map((n) => retryDelay(flaky(), n, DEFAULT_RETRY, () => 1));
    expect(low).toEqual([500, 1_000, 2_000, 4_000, 8_000, 15_000, 15_000]);
    expect(high).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
    expect(retryDelay(flaky(), 1, DEFAULT_RETRY, () => 0.5)).toBe(1_500);
  });

  it('withRetry waits what the platform named, within the rate-limit budget, then gives up', async () => {
    const policy = { attempts: 3, baseMs: 1, maxMs: 2, maxRateLimitWaitMs: 25 };
    let calls = 0;
    const answer = await withRetry(
      'call',
      async () => {
        if (++calls < 3) throw limited(10);
        return 'done';
      },
      log,
      policy,
    );
    expect([answer, calls]).toEqual(['done', 3]);
    calls = 0;
    const error = await withRetry(
      'call',
      async () => {
        calls++;
        throw limited(10);
      },
      log,
      policy,
    ).catch((e: unknown) => e);
    // 10 + 10 ms fit the 25 ms budget; a third wait would not.
    expect([error, calls]).toEqual([expect.any(ConnectorError), 3]);
  });
});
