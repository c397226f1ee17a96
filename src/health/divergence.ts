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

/**
 * The rule folded over readings in time order: what the next reading and the verdict need, so that health
 * reads only the readings newer than a saved fold (JSON: kept in Redis beside the readings).
 */
export interface DivergenceFold {
  share: number;
  processingMinutes: number;
  /** Time (ms) of the newest reading folded in. */
  lastAt: number | null;
  learned: number | null;
  /** When what we sent last changed (ms). */
  changedAt: number | null;
  previousSent: number | null;
  hasPrevious: boolean;
  /** First reading of the current run outside the band (ms). */
  since: number | null;
  last: {
    reading: Reading;
    ratio: number | null;
    from: 'match_rate' | 'learned' | 'none';
    band: Band | null;
  } | null;
  latest: { expected: number | null; sent: number | null } | null;
}

export function emptyFold(rule: Omit<DivergenceRule, 'now'>): DivergenceFold {
  return {
    share: rule.share,
    processingMinutes: rule.processingMinutes,
    lastAt: null,
    learned: null,
    changedAt: null,
    previousSent: null,
    hasPrevious: false,
    since: null,
    last: null,
    latest: null,
  };
}

/** Folds these readings (newer than any folded before, oldest first) into `from`; returns a new fold. */
export function foldReadings(readings: readonly Reading[], from: DivergenceFold): DivergenceFold {
  const f: DivergenceFold = { ...from };
  const processingMs = f.processingMinutes * 60_000;
  for (const reading of readings) {
    const time = Date.parse(reading.at);
    f.lastAt = time;
    f.latest = { expected: reading.expected, sent: reading.sent };
    const sent = reading.sent ?? reading.expected;
    if (reading.changed || (f.hasPrevious && sent !== f.previousSent)) f.changedAt = time;
    f.previousSent = sent;
    f.hasPrevious = true;
    if (reading.size === null || sent === null) continue;
    const settled = f.changedAt === null || time - f.changedAt >= processingMs;
    const reported = reading.matchRate !== null && reading.matchRate > 0 ? reading.matchRate : null;
    const ratio = reported ?? f.learned;
    const from = reported !== null ? 'match_rate' : f.learned !== null ? 'learned' : 'none';
    let inBand: boolean;
    let band: Band | null = null;
    if (ratio !== null) {
      band = bandOf(ratio * sent, f.share);
      inBand = reading.size >= band.low && reading.size <= band.high;
    } else if (sent === 0) {
      band = bandOf(0, f.share);
      inBand = reading.size <= band.high;
    } else {
      // Nothing to go by yet: the first settled, non-zero size sets this audience's ratio.
      inBand = settled && reading.size > 0;
    }
    if (inBand) {
      f.since = null;
      if (settled && reported === null && sent > 0 && reading.size > 0) f.learned = reading.size / sent;
    } else f.since ??= time;
    // A reading that set the ratio is described by it.
    f.last =
      ratio === null && f.learned !== null
        ? { reading, from: 'learned', ratio: f.learned, band: bandOf(f.learned * sent, f.share) }
        : { reading, from, ratio, band };
  }
  return f;
}

/** The verdict of a fold at `now`. */
export function concludeDivergence(f: DivergenceFold, now: Date): Divergence {
  const base = { share: f.share, processingMinutes: f.processingMinutes };
  if (!f.last)
    return {
      ...base,
      state: 'unknown',
      divergent: false,
      since: null,
      reading: null,
      expected: f.latest?.expected ?? null,
      sent: f.latest?.sent ?? null,
      platformSize: null,
      baseline: { ratio: f.learned, from: f.learned !== null ? 'learned' : 'none' },
      band: null,
    };
  const outside = f.since !== null;
  const divergent = outside && now.getTime() - f.since! >= f.processingMinutes * 60_000;
  return {
    ...base,
    state: !outside ? 'in_band' : divergent ? 'divergent' : 'settling',
    divergent,
    since: outside ? new Date(f.since!).toISOString() : null,
    reading: f.last.reading.at,
    expected: f.last.reading.expected,
    sent: f.last.reading.sent,
    platformSize: f.last.reading.size,
    baseline: { ratio: f.last.ratio, from: f.last.from },
    band: f.last.band,
  };
}

export function divergenceOf(readings: readonly Reading[], rule: DivergenceRule): Divergence {
  return concludeDivergence(foldReadings(readings, emptyFold(rule)), rule.now);
}

interface Band {
  low: number;
  high: number;
}

function bandOf(expected: number, share: number): Band {
  const slack = Math.max(expected * share, MIN_SLACK);
  return { low: Math.max(0, Math.floor(expected - slack)), high: Math.ceil(expected + slack) };
}
