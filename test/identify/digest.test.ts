import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { digestSlots } from '../../src/identify/one.js';

/**
 * The digest written out again from its description, with BigInt arithmetic and a DataView: per present
 * slot, its index mixed in, then each little-endian 32-bit word through two multiply-rotate lanes, each
 * lane finished as MurmurHash3's fmix32.
 */
function byHand(bytes: Buffer, starts: readonly (number | undefined)[]): [number, number] {
  const M = 2n ** 32n;
  const u = (x: bigint) => ((x % M) + M) % M;
  const mul = (a: bigint, b: bigint) => u(a * b);
  const rotl = (x: bigint, r: bigint) => u((x << r) | (x >> (32n - r)));
  const fmix = (h: bigint) => {
    h ^= h >> 16n;
    h = mul(h, 0x85ebca6bn);
    h ^= h >> 13n;
    h = mul(h, 0xc2b2ae35n);
    return Number(h ^ (h >> 16n));
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  let h1 = 0n;
  let h2 = 0n;
  starts.forEach((start, s) => {
    if (start === undefined) return;
    h1 ^= mul(BigInt(s + 1), 0x9e3779b1n);
    h2 ^= mul(BigInt(s + 1), 0x85ebca77n);
    for (let b = 0; b < 32; b += 4) {
      const w = BigInt(view.getUint32(start + b, true));
      h1 = rotl(mul(h1 ^ w, 0xcc9e2d51n), 13n);
      h2 = rotl(mul(h2 ^ w, 0x1b873593n), 17n);
    }
  });
  return [fmix(h1), fmix(h2)];
}

describe('digestSlots', () => {
  it('is the digest its description gives, for a row and for the same slots packed at an odd place', () => {
    for (const mask of [0b1, 0b10110, 0b11111, 0b1000000000000001]) {
      const slotCount = 16;
      const row = randomBytes(3 + slotCount * 32);
      const into = new Uint32Array(4);
      digestSlots(row, 3, mask, slotCount, false, into, 0);
      const present = Array.from({ length: slotCount }, (_, s) => (mask & (1 << s) ? 3 + s * 32 : undefined));
      expect([into[0], into[1]]).toEqual(byHand(row, present));
      // The same slots packed one after another from byte 5 (a state record's layout).
      const packed = Buffer.concat([
        Buffer.alloc(5),
        ...present.flatMap((at) => (at === undefined ? [] : [row.subarray(at, at + 32)])),
      ]);
      digestSlots(packed, 5, mask, slotCount, true, into, 2);
      expect([into[2], into[3]]).toEqual([into[0], into[1]]);
    }
  });
});
