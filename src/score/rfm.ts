import type { ScoringConfig } from '../config/schema.js';
import type { Customers } from '../source/read.js';
import { buildSegmentMap, type SegmentMap } from '../segment/maps.js';
import { ntileScores } from './ntile.js';
import { quantileScores } from './quantile.js';

/** Scores and segments, aligned with `customers.ids`. */
export interface Scores {
  readonly r: Uint8Array;
  readonly f: Uint8Array;
  readonly m: Uint8Array;
  /** Index into `segments` per customer. */
  readonly segment: Uint16Array;
  /** Segment names in display order (the map's order, then any names a scores source brought). */
  readonly segments: readonly string[];
  /** Quantile breaks per dimension (method quantile only), for analysts checking in R. */
  readonly breaks?: { recency: number[]; frequency: number[]; monetary: number[] };
}

export type Method = ScoringConfig['method'];

/** Scores every customer 1-5 on each dimension and puts them into the map's segments. */
export function scoreCustomers(customers: Customers, method: Method, map: SegmentMap): Scores {
  const n = customers.ids.length;
  let r: Uint8Array;
  let f: Uint8Array;
  let m: Uint8Array;
  let breaks: Scores['breaks'];
  if (customers.given) {
    ({ r, f, m } = customers.given);
  } else if (method === 'ntile') {
    r = ntileScores(customers.recencyDays, customers.ids, false);
    f = ntileScores(customers.frequency, customers.ids, true);
    m = ntileScores(customers.value, customers.ids, true);
  } else {
    const rq = quantileScores(customers.recencyDays, false);
    const fq = quantileScores(customers.frequency, true);
    const mq = quantileScores(customers.value, true);
    [r, f, m] = [rq.scores, fq.scores, mq.scores];
    breaks = { recency: rq.breaks, frequency: fq.breaks, monetary: mq.breaks };
  }

  const segments = [...map.names];
  const segment = new Uint16Array(n);
  const givenSegment = customers.given?.segment;
  for (let i = 0; i < n; i++) {
    const name = givenSegment?.get(i);
    if (name !== undefined) {
      let k = segments.indexOf(name);
      if (k < 0) k = segments.push(name) - 1;
      segment[i] = k;
    } else {
      segment[i] = map.byCode[r[i]! * 100 + f[i]! * 10 + m[i]!]!;
    }
  }
  return { r, f, m, segment, segments, ...(breaks ? { breaks } : {}) };
}

export interface SegmentSize {
  segment: string;
  customers: number;
  share: number;
  optedOut: number;
  action?: string;
}

/** Customers per segment, largest first, with the opted-out among them. */
export function segmentSizes(customers: Customers, scores: Scores, map: SegmentMap): SegmentSize[] {
  const counts = new Array<number>(scores.segments.length).fill(0);
  const opted = new Array<number>(scores.segments.length).fill(0);
  for (let i = 0; i < scores.segment.length; i++) {
    counts[scores.segment[i]!]!++;
    if (customers.optedOut[i]) opted[scores.segment[i]!]!++;
  }
  const total = scores.segment.length || 1;
  return scores.segments
    .map((segment, k) => ({
      segment,
      customers: counts[k]!,
      share: counts[k]! / total,
      optedOut: opted[k]!,
      ...(map.actions[segment] ? { action: map.actions[segment] } : {}),
    }))
    .sort((a, b) => b.customers - a.customers);
}

export { buildSegmentMap };
