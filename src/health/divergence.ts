import type { Divergence, Reading } from './schema.js';

/**
 * Whether an audience's size on its platform has stayed away from what we sent. Platforms count matched
 * people, not uploaded identifiers, so "what we sent" is scaled by a ratio: the match rate the platform
 * reports, else the audience's own ratio (size / sent) at its last reading in band taken once the platform
 * had had its processing time after our last change (a file destination counts identifiers, more than one
 * per member: its ratio is learned too). A reading is in band when its size is within `share` of
 * ratio × sent (at least ± MIN_SLACK). Readings of unknown size are skipped: they neither raise nor clear.
 * Divergent: every known reading since `since` was outside the band, for at least the processing time (at once where it is 0).
 */

/** Members of slack at least: platforms round small counts. */
export const MIN_SLACK = 10;

export interface DivergenceRule {
  /** Half-width of the band, as a share of the expected size. */
  share: number;
  processingMinutes: number;
  now: Date;
}

export function divergenceOf(readings: readonly Reading[], rule: DivergenceRule): Divergence {
  const processingMs = rule.processingMinutes * 60_000;
  let learned: number | undefined;
  let changedAt = -Infinity;
  let previousSent: number | null | undefined;
  let since: number | undefined;
  let last:
    { reading: Reading; ratio?: number; from: 'match_rate' | 'learned' | 'none'; band?: Band } | undefined;

  for (const reading of readings) {
    const time = Date.parse(reading.at);
    const sent = reading.sent ?? reading.expected;
    if (reading.changed || (previousSent !== undefined && sent !== previousSent)) changedAt = time;
    previousSent = sent;
    if (reading.size === null || sent === null) continue;
    const settled = time - changedAt >= processingMs;
    const reported = reading.matchRate !== null && reading.matchRate > 0 ? reading.matchRate : undefined;
    const ratio = reported ?? learned;
    const from = reported !== undefined ? 'match_rate' : learned !== undefined ? 'learned' : 'none';
    let inBand: boolean;
    let band: Band | undefined;
    if (ratio !== undefined) {
      band = bandOf(ratio * sent, rule.share);
      inBand = reading.size >= band.low && reading.size <= band.high;
    } else if (sent === 0) {
      band = bandOf(0, rule.share);
      inBand = reading.size <= band.high;
    } else {
      // Nothing to go by yet: the first settled, non-zero size sets this audience's ratio.
      inBand = settled && reading.size > 0;
    }
    if (inBand) {
      since = undefined;
      if (settled && reported === undefined && sent > 0 && reading.size > 0) learned = reading.size / sent;
    } else since ??= time;
    // A reading that set the ratio is described by it.
    if (ratio === undefined && learned !== undefined)
      last = { reading, from: 'learned', ratio: learned, band: bandOf(learned * sent, rule.share) };
    else last = { reading, from, ...(ratio !== undefined ? { ratio } : {}), ...(band ? { band } : {}) };
  }

  const base = { share: rule.share, processingMinutes: rule.processingMinutes };
  if (!last)
    return {
      ...base,
      state: 'unknown',
      divergent: false,
      since: null,
      reading: null,
      expected: readings.at(-1)?.expected ?? null,
      sent: readings.at(-1)?.sent ?? null,
      platformSize: null,
      baseline: { ratio: learned ?? null, from: learned !== undefined ? 'learned' : 'none' },
      band: null,
    };
  const outside = since !== undefined;
  const divergent = outside && rule.now.getTime() - since! >= processingMs;
  return {
    ...base,
    state: !outside ? 'in_band' : divergent ? 'divergent' : 'settling',
    divergent,
    since: outside ? new Date(since!).toISOString() : null,
    reading: last.reading.at,
    expected: last.reading.expected,
    sent: last.reading.sent,
    platformSize: last.reading.size,
    baseline: { ratio: last.ratio ?? null, from: last.from },
    band: last.band ?? null,
  };
}

interface Band {
  low: number;
  high: number;
}

function bandOf(expected: number, share: number): Band {
  const slack = Math.max(expected * share, MIN_SLACK);
  return { low: Math.max(0, Math.floor(expected - slack)), high: Math.ceil(expected + slack) };
}
