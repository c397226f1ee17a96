import { describe, expect, it } from 'vitest';
import { murmur3, writeKey } from '../../src/record/keys.js';

const utf8 = (s: string) => Buffer.from(s, 'utf8');

describe('customer keys', () => {
  it('are MurmurHash3 x86_32 under two seeds, as R digest computes it', () => {
    // Rscript -e 'library(digest); digest(s, algo="murmur32", serialize=FALSE, seed=0)' and seed=1540483477,
    // in a UTF-8 locale: every tail length (0 to 3 bytes after the 4-byte blocks) and a multi-byte letter.
    const r: [string, string, string][] = [
      ['', '00000000', 'd9aaf7d3'],
      ['a', '3c2569b2', 'c795411c'],
      ['ab', '9bbfd75f', 'a2a9e341'],
      ['abc', 'b3dd93fa', 'ab01af23'],
      ['abcd', '43ed676a', '3ace933d'],
      ['abcde', 'e89b9af6', '552e960a'],
      ['c0', '0431b0a5', 'fe4d5a93'],
      ['c1234567', '51cc32d6', '00eca3e0'],
      ['customer-00042', 'db70651f', '2daa45bd'],
      ['Zoë-ü', '8662744d', '07cdddf7'],
    ];
    for (const [id, seed0, seed1] of r) {
      expect(murmur3(utf8(id), 0).toString(16).padStart(8, '0')).toBe(seed0);
      expect(murmur3(utf8(id), 1540483477).toString(16).padStart(8, '0')).toBe(seed1);
      const key = Buffer.alloc(10, 0xee);
      writeKey(utf8(id), key, 1);
      expect(key.toString('hex')).toBe(`ee${seed0}${seed1}ee`);
    }
  });

  it('do not collide over two million sequential ids, and spread evenly over buckets', () => {
    const n = 2_000_000;
    const keys = Buffer.alloc(n * 8);
    const buckets = new Uint32Array(256);
    for (let i = 0; i < n; i++) {
      writeKey(utf8(`c${i}`), keys, i * 8);
      buckets[keys[i * 8]!]!++; // the top byte picks the state's bucket
    }
    const seen = new Set<bigint>();
    for (let i = 0; i < n; i++) seen.add(keys.readBigUInt64BE(i * 8));
    // 64-bit keys: a collision among 2 M has a chance of about 1 in 10^7.
    expect(seen.size).toBe(n);
    // Chi-square over 256 buckets, 255 degrees of freedom: above 340 has a chance under 1 in 10^3.
    const mean = n / 256;
    const chi = buckets.reduce((a, b) => a + (b - mean) ** 2 / mean, 0);
    expect(chi).toBeLessThan(340);
  });
});
