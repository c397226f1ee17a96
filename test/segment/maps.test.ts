import { describe, expect, it } from 'vitest';
import { ALL_CODES, DEFAULT_SEGMENT_CODES, buildSegmentMap, segmentOf } from '../../src/segment/maps.js';
import { ConfigError } from '../../src/errors.js';

describe('segment maps', () => {
  it('the default map assigns each of the 125 codes exactly once to 11 segments', () => {
    const all = Object.values(DEFAULT_SEGMENT_CODES).flat();
    expect(all).toHaveLength(125);
    expect(new Set(all)).toEqual(new Set(ALL_CODES));
    const map = buildSegmentMap({ map: 'default', actions: {} });
    expect(map.names).toHaveLength(11);
    expect(segmentOf(map, 555)).toBe('Champions');
    expect(segmentOf(map, 111)).toBe('Lost');
    expect(segmentOf(map, 214)).toBe("Can't Lose Them");
    expect(map.warnings).toEqual([]);
  });

  it('reports a code assigned twice', () => {
    expect(() =>
      buildSegmentMap({ map: 'codes', codes: { A: [555, 554], B: [554] }, other: 'Rest', actions: {} }),
    ).toThrow(/554 \(A and B\)/);
  });

  it('reports unassigned codes unless a catch-all segment is named', () => {
    expect(() => buildSegmentMap({ map: 'codes', codes: { Best: [555] }, actions: {} })).toThrow(ConfigError);
    expect(() => buildSegmentMap({ map: 'codes', codes: { Best: [555] }, actions: {} })).toThrow(
      /124 of 125/,
    );
    const map = buildSegmentMap({ map: 'codes', codes: { Best: [555] }, other: 'Rest', actions: {} });
    expect(segmentOf(map, 555)).toBe('Best');
    expect(segmentOf(map, 554)).toBe('Rest');
    expect(map.warnings[0]).toMatch(/124 RFM codes go to 'Rest'/);
  });

  it('range rules: first match wins, the rest are Others (R rfm_segment)', () => {
    const map = buildSegmentMap({ map: 'rules', other: 'Others', actions: {} });
    expect(segmentOf(map, 555)).toBe('Champions');
    // 545 matches Potential Loyalist (3-5/3-5/2-5) before anything else.
    expect(segmentOf(map, 545)).toBe('Potential Loyalist');
    expect(segmentOf(map, 211)).toBe('About To Sleep');
    expect(segmentOf(map, 151)).toBe('Lost');
    // 512: R 5, F 1, M 2 → New Customers (4-5/1-3/1-5)
    expect(segmentOf(map, 512)).toBe('New Customers');
    const others = ALL_CODES.filter((c) => segmentOf(map, c) === 'Others');
    expect(others.length).toBeGreaterThan(0);
    expect(others).toContain(251);
  });

  it('warns about a rule that can never match', () => {
    const map = buildSegmentMap({
      map: 'rules',
      rules: [
        { name: 'All', recency: [1, 5], frequency: [1, 5], monetary: [1, 5] },
        { name: 'Best', recency: [5, 5], frequency: [5, 5], monetary: [5, 5] },
      ],
      actions: {},
    });
    expect(map.warnings.join()).toMatch(/rules\[1\] \(Best\) never matches/);
  });
});
