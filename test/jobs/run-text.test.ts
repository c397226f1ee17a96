import { Redis } from 'ioredis';
import { afterAll, expect, inject, it } from 'vitest';
import { failedRun, lastRuns, recordRun, runRecord } from '../../jobs/history.js';

/**
 * Platforms echo what they were sent, and a run's error, hold reason and rejection reasons are their
 * text: the run history (Redis) must keep none of the personal data in it.
 */
const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.quit());

it('keeps no email or phone number of a platform error in the run history', async () => {
  const prefix = `{run-text-${process.pid}}`;
  const meta = { run: 'r1', at: new Date(0).toISOString(), reason: 'manual' as const, full: false };
  const run = {
    ...failedRun('meta', 'Champions', meta, 'Invalid user: Jane.Doe+x@example.com (phone +44 20 7946 0958)'),
  };
  const completed = runRecord(
    {
      destination: 'meta',
      audience: 'Champions',
      segmentSize: 3,
      members: 3,
      plannedAdds: 3,
      plannedRemoves: 0,
      added: 3,
      removed: 0,
      unchanged: 0,
      waiting: 0,
      pending: 0,
      skipped: { 'not a contact of the list: carl@example.info': 1 },
      rejected: 2,
      rejectedReasons: { 'bad email anna@example.org': 2 },
      failed: 0,
      inFlight: 0,
      durationMs: 5,
      held: 'held: (415) 555-0100 was sent twice',
    },
    meta,
    { size: 3, warnings: ['size lags for bob@example.net'] },
  );
  await recordRun(redis, prefix, [run, completed]);
  const stored = (await redis.lrange(`${prefix}:history:meta:Champions`, 0, -1)).join('\n');
  expect(stored).toContain('Invalid user');
  for (const pii of ['example.com', 'example.org', 'example.net', 'example.info', '7946', '555-0100'])
    expect(stored).not.toContain(pii);
  const [, back] = await lastRuns(redis, prefix, 'meta', 'Champions', 2);
  expect(back?.error).toMatch(/Invalid user: \[email\] \(phone \[number\]\)/);
  // A record written before scrubbing is scrubbed as it is read.
  await redis.lpush(
    `${prefix}:history:meta:Champions`,
    JSON.stringify({ ...run, error: 'no such user ann@example.com' }),
  );
  expect((await lastRuns(redis, prefix, 'meta', 'Champions'))[0]?.error).toBe('no such user [email]');
  await redis.del(`${prefix}:history:meta:Champions`);
});
