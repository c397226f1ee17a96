import { describe, expect, it } from 'vitest';
import { membershipOf, type AudienceSpec } from '../../src/audience/audiences.js';
import type { Segmented } from '../../src/score/pipeline.js';
import { TextColumn } from '../../src/source/text.js';

/** Customers c0..c7: their segment (by index into `segments`), opt-out flag and brand. */
const segments = ['Champions', 'Loyal', 'At Risk'];
const rows: [number, 0 | 1, string | undefined][] = [
  [0, 0, 'Acme'],
  [1, 0, 'acme '],
  [0, 1, 'Acme'],
  [2, 0, 'Globex'],
  [0, 0, undefined],
  [1, 1, 'ACME'],
  [1, 0, 'Globex'],
  [0, 0, ' acme'],
];
const segmented = {
  customers: {
    ids: TextColumn.from(rows.map((_, i) => `c${i}`)),
    optedOut: Uint8Array.from(rows.map((r) => r[1])),
    attributes: { brand: TextColumn.from(rows.map((r) => r[2])) },
    profile: {},
  },
  scores: { segments, segment: Uint16Array.from(rows.map((r) => r[0])) },
} as unknown as Segmented;
const spec = (segs: string[], where: Record<string, string[]> = {}): AudienceSpec =>
  ({ name: 'a', segments: segs, where, destinations: ['d'] }) as AudienceSpec;

describe('audience membership', () => {
  it('takes the customers of its segments in order, counting the opted out in the segment size only', () => {
    expect(membershipOf(spec(['Champions']), segmented)).toEqual({
      members: Uint32Array.from([0, 4, 7]),
      segmentSize: 4,
      optedOut: 1,
    });
    expect(membershipOf(spec(['Loyal', 'Champions']), segmented).members).toEqual(
      Uint32Array.from([0, 1, 4, 6, 7]),
    );
    expect(membershipOf(spec(['Nobody']), segmented)).toEqual({
      members: new Uint32Array(0),
      segmentSize: 0,
      optedOut: 0,
    });
  });

  it('filters on attributes, case and spaces aside', () => {
    expect(membershipOf(spec(['Champions', 'Loyal'], { brand: ['ACME'] }), segmented)).toEqual({
      members: Uint32Array.from([0, 1, 7]),
      segmentSize: 5,
      optedOut: 2,
    });
    expect(membershipOf(spec(['Loyal'], { brand: ['globex', 'acme'] }), segmented).members).toEqual(
      Uint32Array.from([1, 6]),
    );
  });
});
