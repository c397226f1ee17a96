import { ConfigError } from '../errors.js';
import type { SegmentRule, SegmentsConfig } from '../config/schema.js';

/** Every RFM code from 111 to 555 with digits 1-5: the 125 cells a segment map must cover. */
export const ALL_CODES: readonly number[] = (() => {
  const codes: number[] = [];
  for (let r = 1; r <= 5; r++)
    for (let f = 1; f <= 5; f++) for (let m = 1; m <= 5; m++) codes.push(r * 100 + f * 10 + m);
  return codes;
})();

/** The default 11-segment map (../shared/reference/rfm.md): each of the 125 codes exactly once. */
export const DEFAULT_SEGMENT_CODES: Readonly<Record<string, readonly number[]>> = {
  Champions: [555, 554, 544, 545, 454, 455, 445],
  'Loyal Customers': [543, 444, 435, 355, 354, 345, 344, 335],
  'Potential Loyalist': [
    553, 551, 552, 541, 542, 533, 532, 531, 452, 451, 442, 441, 431, 453, 433, 432, 423, 353, 352, 351, 342,
    341, 333, 323,
  ],
  'New Customers': [512, 511, 422, 421, 412, 411, 311],
  Promising: [525, 524, 523, 522, 521, 515, 514, 513, 425, 424, 413, 414, 415, 315, 314, 313],
  'Need Attention': [535, 534, 443, 434, 343, 334, 325, 324],
  'About To Sleep': [331, 321, 312, 221, 213],
  'At Risk': [
    255, 254, 245, 244, 253, 252, 243, 242, 235, 234, 225, 224, 153, 152, 145, 143, 142, 135, 134, 133, 125,
    124,
  ],
  "Can't Lose Them": [155, 154, 144, 214, 215, 115, 114, 113],
  Hibernating: [332, 322, 231, 241, 251, 233, 232, 223, 222, 132, 123, 122, 212, 211],
  Lost: [111, 112, 121, 131, 141, 151],
};

/** What marketers usually do with each default segment; shown beside segment sizes. */
export const DEFAULT_ACTIONS: Readonly<Record<string, string>> = {
  Champions: 'reward; early access, referrals',
  'Loyal Customers': 'upsell; loyalty programme',
  'Potential Loyalist': 'membership or loyalty offer',
  'New Customers': 'onboarding; build the relationship',
  Promising: 'brand awareness; free trials',
  'Need Attention': 'limited-time offer based on history',
  'About To Sleep': 'reactivate with popular products',
  'At Risk': 'personal win-back emails',
  "Can't Lose Them": 'win-back offer; talk to them',
  Hibernating: 'relevant offers; cheap to ignore',
  Lost: 'revive interest or let go',
};

/** The R rfm package README's range rules, in its order (first match wins). */
export const R_PACKAGE_RULES: readonly SegmentRule[] = [
  { name: 'Champions', recency: [5, 5], frequency: [5, 5], monetary: [5, 5] },
  { name: 'Potential Loyalist', recency: [3, 5], frequency: [3, 5], monetary: [2, 5] },
  { name: 'Loyal Customers', recency: [2, 4], frequency: [2, 4], monetary: [2, 4] },
  { name: 'Promising', recency: [3, 4], frequency: [1, 3], monetary: [3, 5] },
  { name: 'New Customers', recency: [4, 5], frequency: [1, 3], monetary: [1, 5] },
  { name: "Can't Lose Them", recency: [1, 2], frequency: [3, 4], monetary: [4, 5] },
  { name: 'At Risk', recency: [1, 2], frequency: [2, 5], monetary: [4, 5] },
  { name: 'Need Attention', recency: [1, 3], frequency: [3, 5], monetary: [3, 5] },
  { name: 'About To Sleep', recency: [2, 3], frequency: [1, 3], monetary: [1, 4] },
  { name: 'Lost', recency: [1, 1], frequency: [1, 5], monetary: [1, 5] },
];

/** A resolved map: segment names in display order, and the segment of each RFM code. */
export interface SegmentMap {
  readonly names: readonly string[];
  /** Index into `names` for codes 0..555; -1 where no segment applies. */
  readonly byCode: Int16Array;
  readonly actions: Readonly<Record<string, string>>;
  /** Things a user should know that do not stop a run (rules that never match, codes left to `other`). */
  readonly warnings: readonly string[];
}

export function segmentOf(map: SegmentMap, code: number): string | undefined {
  const i = map.byCode[code] ?? -1;
  return i >= 0 ? map.names[i] : undefined;
}

/** Builds the map a config asks for, reporting codes assigned twice or left unassigned. */
export function buildSegmentMap(
  config: Pick<SegmentsConfig, 'map' | 'codes' | 'rules' | 'other' | 'actions'>,
): SegmentMap {
  const byCode = new Int16Array(556).fill(-1);
  const names: string[] = [];
  const warnings: string[] = [];
  const nameIndex = (name: string): number => {
    let i = names.indexOf(name);
    if (i < 0) i = names.push(name) - 1;
    return i;
  };

  if (config.map === 'rules') {
    const rules = config.rules ?? R_PACKAGE_RULES;
    const hits = rules.map(() => 0);
    for (const code of ALL_CODES) {
      const [r, f, m] = digits(code);
      const k = rules.findIndex(
        (rule) => within(r, rule.recency) && within(f, rule.frequency) && within(m, rule.monetary),
      );
      if (k >= 0) {
        byCode[code] = nameIndex(rules[k]!.name);
        hits[k]!++;
      }
    }
    rules.forEach((rule, k) => {
      if (hits[k] === 0)
        warnings.push(`segments.rules[${k}] (${rule.name}) never matches: earlier rules take all its codes`);
    });
  } else {
    const table = config.map === 'codes' ? config.codes! : DEFAULT_SEGMENT_CODES;
    const first = new Map<number, string>();
    const twice: string[] = [];
    for (const [name, codes] of Object.entries(table)) {
      const i = nameIndex(name);
      for (const code of codes) {
        const prior = first.get(code);
        if (prior !== undefined) twice.push(`${code} (${prior} and ${name})`);
        else {
          first.set(code, name);
          byCode[code] = i;
        }
      }
    }
    if (twice.length > 0)
      throw new ConfigError(
        `segments.codes assigns codes twice: ${twice.join(', ')}`,
        'give each RFM code to one segment only',
      );
  }

  const unassigned = ALL_CODES.filter((c) => byCode[c] === -1);
  if (unassigned.length > 0) {
    if (!config.other)
      throw new ConfigError(
        `segments: ${unassigned.length} of 125 RFM codes belong to no segment: ${unassigned.join(' ')}`,
        config.map === 'rules'
          ? 'add rules that cover them, or set segments.other (e.g. other: Others, as the R rfm package does)'
          : 'assign them in segments.codes, or set segments.other to name a catch-all segment',
      );
    const i = nameIndex(config.other);
    for (const c of unassigned) byCode[c] = i;
    warnings.push(`${unassigned.length} RFM codes go to '${config.other}': ${unassigned.join(' ')}`);
  }

  const actions =
    config.map === 'default' ? { ...DEFAULT_ACTIONS, ...config.actions } : { ...config.actions };
  for (const name of Object.keys(config.actions)) {
    if (!names.includes(name))
      warnings.push(`segments.actions names '${name}', which is not a segment of this map`);
  }
  return { names, byCode, actions, warnings };
}

function digits(code: number): [number, number, number] {
  return [Math.floor(code / 100), Math.floor(code / 10) % 10, code % 10];
}

function within(v: number, [lo, hi]: readonly [number, number]): boolean {
  return v >= lo && v <= hi;
}
