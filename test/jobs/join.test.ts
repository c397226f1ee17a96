import { describe, expect, it } from 'vitest';
import { covers } from '../../jobs/join.js';

describe('a waiting sync job covers a resync', () => {
  const job = { destination: 'meta', allowRemovals: ['RFM: Lost'] };
  it.each([
    [job, { destination: 'meta' }, true],
    [job, { destination: 'meta', audience: 'RFM: Lost' }, true],
    [{ ...job, audience: 'RFM: Lost' }, { destination: 'meta', audience: 'RFM: Lost' }, true],
    [{ ...job, audience: 'RFM: Lost' }, { destination: 'meta' }, false],
    [{ ...job, audience: 'RFM: Lost' }, { destination: 'meta', audience: 'RFM: At Risk' }, false],
    [job, { destination: 'google' }, false],
    [job, { destination: 'meta', full: true }, false],
    [{ ...job, full: true }, { destination: 'meta' }, true],
    [job, { destination: 'meta', allowShrink: true }, false],
    [{ ...job, allowShrink: true }, { destination: 'meta' }, true],
    [job, { destination: 'meta', allowRemovals: ['RFM: Lost'] }, true],
    [job, { destination: 'meta', allowRemovals: ['RFM: Lost', 'RFM: At Risk'] }, false],
    [{ ...job, allowRemovals: ['*'] }, { destination: 'meta', allowRemovals: ['RFM: At Risk'] }, true],
    [job, { destination: 'meta', allowRemovals: ['*'] }, false],
  ])('%j covers %j: %s', (waiting, request, expected) => {
    expect(covers(waiting, request)).toBe(expected);
  });
});
