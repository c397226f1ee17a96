/**
 * Per-customer sums that equal R's `sum()` bit for bit. R adds doubles in an 80-bit long double
 * (64-bit significand) in input order and rounds to a double once at the end; the R rfm package's
 * monetary totals, and so its quantile breaks, depend on that. Each running total is kept here
 * exactly as a pair of doubles (hi + lo, at most 64 significant bits), every addition is computed
 * exactly and rounded to 64 bits (ties to even), as the x87 unit does.
 */

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0; // word holding sign and exponent

/** The unbiased binary exponent of a finite, normal, non-zero double. */
function exponentOf(x: number): number {
  f64[0] = x;
  return ((u32[HI]! >>> 20) & 0x7ff) - 1023;
}

function isPowerOfTwo(x: number): boolean {
  f64[0] = x;
  return (u32[HI]! & 0xfffff) === 0 && u32[1 - HI] === 0;
}

/** 2^n for -1022 <= n <= 1023, exactly. */
function pow2(n: number): number {
  u32[HI] = (n + 1023) << 20;
  u32[1 - HI] = 0;
  return f64[0]!;
}

// Two-sum error terms without allocation.
let tsHi = 0;
let tsLo = 0;
function twoSum(a: number, b: number): void {
  const s = a + b;
  const bb = s - a;
  tsLo = a - (s - bb) + (b - bb);
  tsHi = s;
}

/** Growable columns of long-double running sums. */
export class LongDoubleSums {
  private hi: number[] = [];
  private lo: number[] = [];

  /** Starts a new sum at x (0 + x is exact). */
  push(x: number): void {
    this.hi.push(x + 0);
    this.lo.push(0);
  }

  /** Starts sum i over at x (i below the number pushed). */
  restart(i: number, x: number): void {
    this.hi[i] = x + 0;
    this.lo[i] = 0;
  }

  /** Adds x to sum i; false when the sum is no longer a finite number. */
  add(i: number, x: number): boolean {
    const hi = this.hi[i]!;
    const lo = this.lo[i]!;
    // Exact T = hi + lo + x as a non-overlapping expansion, then renormalised to a + b + c.
    twoSum(x, lo);
    const q1 = tsHi;
    const h1 = tsLo;
    twoSum(q1, hi);
    const q2 = tsHi;
    const h2 = tsLo;
    twoSum(q2, h2);
    let a = tsHi;
    const b = tsLo;
    twoSum(b, h1);
    const b2 = tsHi;
    const c = tsLo;
    twoSum(a, b2);
    a = tsHi;
    const b3 = tsLo;
    if (a === 0 || !Number.isFinite(a)) {
      this.hi[i] = a + b3 + c;
      this.lo[i] = 0;
      return a === 0;
    }
    // Round T to 64 significant bits: a is a multiple of 2^11 quanta, so only the rest b3 + c is rounded.
    let e = exponentOf(a);
    if (isPowerOfTwo(a) && (b3 < 0 || (b3 === 0 && c < 0))) e -= 1;
    if (e - 63 < -1022) {
      this.hi[i] = a + b3 + c;
      this.lo[i] = 0;
      return true;
    }
    const quantum = pow2(e - 63);
    const u = b3 / quantum;
    const w = c / quantum;
    const n = Math.floor(u);
    const frac = u - n;
    let k = n;
    // |w| is below half a unit of u, so it only decides exact ties.
    if (frac > 0.5 || (frac === 0.5 && (w > 0 || (w === 0 && n % 2 !== 0)))) k = n + 1;
    const rest = k * quantum;
    twoSum(a, rest);
    this.hi[i] = tsHi;
    this.lo[i] = tsLo;
    return Number.isFinite(tsHi);
  }

  /** The sum rounded to a double, as R's `sum()` returns it. */
  value(i: number): number {
    return this.hi[i]! + this.lo[i]!;
  }
}
