import type { TextColumn } from '../source/text.js';
import { BINS } from './quantile.js';

/**
 * SQL `NTILE(5) OVER (ORDER BY value, customer_id)`: equal groups by rank, the first n mod 5 groups
 * one row larger, ties broken by customer id in byte (code point) order, like COLLATE "C".
 * `higherIsBetter` false orders by value descending (recency: most recent scores 5).
 */
export function ntileScores(
  values: ArrayLike<number>,
  ids: readonly string[] | TextColumn,
  higherIsBetter: boolean,
): Uint8Array {
  const byId = Array.isArray(ids)
    ? (a: number, b: number) =>
        compareCodePoints((ids as readonly string[])[a]!, (ids as readonly string[])[b]!)
    : (a: number, b: number) => (ids as TextColumn).compare(a, b);
  const n = values.length;
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const sign = higherIsBetter ? 1 : -1;
  order.sort((a, b) => {
    const d = (values[a]! - values[b]!) * sign;
    return d !== 0 ? (d < 0 ? -1 : 1) : byId(a, b);
  });
  const scores = new Uint8Array(n);
  const base = Math.floor(n / BINS);
  const extra = n % BINS;
  const bigRows = extra * (base + 1);
  for (let rank = 0; rank < n; rank++) {
    const tile = rank < bigRows ? Math.floor(rank / (base + 1)) : extra + Math.floor((rank - bigRows) / base);
    scores[order[rank]!] = tile + 1;
  }
  return scores;
}

/** Orders strings by Unicode code point, which is UTF-8 byte order (JS `<` compares UTF-16 units). */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codeUnitRank(x) - codeUnitRank(y);
  }
  return a.length - b.length;
}

function codeUnitRank(c: number): number {
  if (c < 0xd800) return c;
  return c <= 0xdfff ? c + 0x2000 : c - 0x800;
}
