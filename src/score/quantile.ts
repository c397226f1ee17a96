/**
 * Quantile binning exactly as the R `rfm` package does it (`bins()` in its utils.R):
 * the interior breaks are R's type-7 quantiles at 0.2, 0.4, 0.6, 0.8, each plus 1, and the bins are
 * half-open [lower, upper) from min to max + 1. The arithmetic follows R's `quantile.default` and
 * `seq()` operation by operation so that the doubles, and so the scores, are identical.
 */

export const BINS = 5;

/** `seq(0, 1, length.out = 6)` as R computes it: from + (1:n1-1) * ((to - from) / n1), then `to`. */
const PROBS: readonly number[] = Array.from({ length: BINS - 1 }, (_, i) => (i + 1) * (1 / BINS));

/** R's type-7 quantile of an ascending-sorted sample. */
export function quantileType7(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const index = 1 + Math.max(n - 1, 0) * p;
  const lo = Math.floor(index);
  const hi = Math.ceil(index);
  const qs = sorted[lo - 1]!;
  const xhi = sorted[hi - 1]!;
  if (index > lo && xhi !== qs) {
    const h = index - lo;
    return (1 - h) * qs + h * xhi;
  }
  return qs;
}

/** The four interior breaks (quantile + 1) for a sample. */
export function quantileBreaks(values: ArrayLike<number>): number[] {
  const a = Float64Array.from(values);
  const n = a.length;
  // Type-7 reads two order statistics per probability: selecting them is linear, sorting is not.
  const ranks = [
    ...new Set(PROBS.flatMap((p) => [Math.floor(1 + (n - 1) * p) - 1, Math.ceil(1 + (n - 1) * p) - 1])),
  ]
    .filter((r) => r >= 0 && r < n)
    .sort((x, y) => x - y);
  const sorted: { length: number; [rank: number]: number } = { length: n };
  let from = 0;
  for (const r of ranks) {
    sorted[r] = selectRank(a, r, from, n - 1);
    from = r;
  }
  return PROBS.map((p) => quantileType7(sorted, p) + 1);
}

/**
 * The value of rank k (0-based) in a[lo..hi], moving it to a[k] with nothing greater before it and nothing
 * smaller after (Hoare's selection; a sort of what is left where the pivots keep choosing badly).
 */
export function selectRank(a: Float64Array, k: number, lo: number, hi: number): number {
  for (let rounds = 2 * Math.ceil(Math.log2(hi - lo + 2)) + 8; hi > lo; rounds--) {
    if (rounds === 0) {
      a.subarray(lo, hi + 1).sort();
      return a[k]!;
    }
    const x = a[lo]!;
    const y = a[(lo + hi) >>> 1]!;
    const z = a[hi]!;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i++] = a[j]!;
        a[j--] = t;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k]!;
  }
  return a[k]!;
}

/**
 * Scores 1..5 for each value. `higherIsBetter` false reverses them (recency: fewest days scores 5).
 * A value's bin is the number of breaks it reaches, which is what R's sequence of [lower, upper)
 * assignments gives, empty bins included.
 */
export function quantileScores(
  values: ArrayLike<number>,
  higherIsBetter: boolean,
): { scores: Uint8Array; breaks: number[] } {
  const breaks = quantileBreaks(values);
  const [b1, b2, b3, b4] = breaks as [number, number, number, number];
  const scores = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const bin = 1 + (v >= b1 ? 1 : 0) + (v >= b2 ? 1 : 0) + (v >= b3 ? 1 : 0) + (v >= b4 ? 1 : 0);
    scores[i] = higherIsBetter ? bin : BINS + 1 - bin;
  }
  return { scores, breaks };
}
