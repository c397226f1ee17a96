/**
 * Small, fast, seedable pseudo-random number generator for the synthetic data generator.
 *
 * The core is a 32-bit "small fast counting" generator (four 32-bit words of state plus a counter),
 * seeded through an integer hash so that nearby seeds and stream numbers give unrelated sequences.
 * It only uses 32-bit integer arithmetic, so results are identical on every platform and Node version.
 * Not suitable for cryptography.
 */

const TWO_POW_32 = 4294967296;
const GOLDEN = 0x9e3779b9;

/** A 32-bit integer finaliser (xor-shift / multiply rounds). Returns an unsigned 32-bit integer. */
export function hash32(x: number): number {
  let h = x | 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private hasSpare = false;
  private spare = 0;

  /**
   * @param seed any safe integer (negative and values above 2^32 are fine)
   * @param stream independent sub-stream number, so one seed can feed several uncorrelated generators
   */
  constructor(seed: number, stream = 0) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
    const lo = seed >>> 0;
    const hi = Math.floor(seed / TWO_POW_32) >>> 0;
    const key = hash32(lo ^ hash32(hi ^ hash32(stream + GOLDEN)));
    this.a = hash32(key + GOLDEN);
    this.b = hash32(key + 2 * GOLDEN);
    this.c = hash32(key + 3 * GOLDEN);
    this.d = hash32(key + 4 * GOLDEN);
    for (let i = 0; i < 16; i++) this.nextU32();
  }

  /** Uniform unsigned 32-bit integer. */
  nextU32(): number {
    const a = this.a;
    const b = this.b;
    const c = this.c;
    const t = (((a + b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = b ^ (b >>> 9);
    this.b = (c + (c << 3)) | 0;
    this.c = (((c << 21) | (c >>> 11)) + t) | 0;
    return t >>> 0;
  }

  /** Uniform float in [0, 1). */
  float(): number {
    return this.nextU32() / TWO_POW_32;
  }

  /** Uniform float in (0, 1]: safe to pass to Math.log. */
  floatOpen(): number {
    return (this.nextU32() + 1) / TWO_POW_32;
  }

  /** Uniform integer in [0, n) for 0 < n <= 2^32. */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** True with probability p. Always consumes exactly one draw. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** Uniformly chosen element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  /** Standard normal variate (Box-Muller, caching the second value). */
  normal(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    const r = Math.sqrt(-2 * Math.log(this.floatOpen()));
    const theta = 2 * Math.PI * this.float();
    this.spare = r * Math.sin(theta);
    this.hasSpare = true;
    return r * Math.cos(theta);
  }
}
