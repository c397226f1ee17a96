import { describe, expect, it } from 'vitest';
import { TextColumn, TextIndex } from '../../src/source/text.js';
import { compareCodePoints } from '../../src/score/ntile.js';

describe('TextColumn', () => {
  it('keeps texts of any script and length, absent entries, and replacements', () => {
    const long = 'x'.repeat(70_000);
    const values = ['a', undefined, 'Zoë', '北京', '😀 emoji', long, '', 'last'];
    const column = TextColumn.from(values);
    expect(column.toArray()).toEqual(values.map((v) => (v === '' ? undefined : v)));
    column.set(0, 'changed');
    column.set(2, undefined);
    column.set(5, 'short again');
    expect([column.get(0), column.get(2), column.get(5), column.has(2)]).toEqual([
      'changed',
      undefined,
      'short again',
      false,
    ]);
  });

  it('spans chunks: a million entries read back exactly', () => {
    const column = new TextColumn();
    for (let i = 0; i < 1_000_000; i++) column.push(`customer-${i}@example.com`);
    for (const i of [0, 1, 174_762, 174_763, 999_999])
      expect(column.get(i)).toBe(`customer-${i}@example.com`);
  });

  it('compares in code point order, like COLLATE "C" and compareCodePoints', () => {
    const values = ['b', 'a', 'ä', 'Z', '😀', '\uffff', 'ab', 'a'];
    const column = TextColumn.from(values);
    for (let i = 0; i < values.length; i++)
      for (let j = 0; j < values.length; j++)
        expect(Math.sign(column.compare(i, j))).toBe(Math.sign(compareCodePoints(values[i]!, values[j]!)));
  });
  it('keeps few distinct values as a dictionary of one byte per entry, and packs past 255 of them', () => {
    const column = new TextColumn();
    const values: (string | undefined)[] = [];
    for (let i = 0; i < 100_000; i++)
      values.push(i % 7 === 0 ? undefined : ['US', 'GB', 'Zoë', '北京'][i % 4]);
    for (const v of values) column.push(v);
    expect(column.parts().dictionary).toEqual(['GB', 'Zoë', '北京', 'US']);
    expect(column.parts().starts).toEqual([]);
    expect(TextColumn.view(column.parts()).toArray()).toEqual(values);
    expect(Math.sign(column.compare(1, 2))).toBe(Math.sign(compareCodePoints('GB', 'Zoë')));
    expect(column.bytes(3)!.toString()).toBe('北京');
    // The 256th distinct value packs the column; every earlier entry reads back the same.
    for (let k = 0; k < 300; k++) {
      column.set(k, `v${k}`);
      values[k] = `v${k}`;
    }
    expect(column.parts().dictionary).toBeUndefined();
    expect(column.toArray()).toEqual(values);
    expect(TextColumn.view(column.parts()).toArray()).toEqual(values);
  });
});

describe('TextIndex', () => {
  it('finds every id, and nothing else, across growth', () => {
    const ids = new TextColumn();
    const index = new TextIndex(ids);
    for (let i = 0; i < 50_000; i++) {
      ids.push(`id-${i * 7}`);
      index.add(i);
    }
    for (let i = 0; i < 50_000; i += 997) expect(index.get(`id-${i * 7}`)).toBe(i);
    expect(index.get('id-1')).toBeUndefined();
    expect(index.get('')).toBeUndefined();
  });

  it('finds ids of any script and length, and tells apart ids that share a prefix or a length', () => {
    const values = ['Zoë', '北京-1', '😀', 'x'.repeat(300), 'x'.repeat(299), 'ab', 'ba', 'abc'];
    const ids = TextColumn.from(values);
    const index = new TextIndex(ids);
    values.forEach((_, i) => index.add(i));
    values.forEach((v, i) => expect(index.get(v)).toBe(i));
    for (const absent of ['Zoe', '北京', 'x'.repeat(301), 'a', 'abcd', 'x'.repeat(5000)])
      expect(index.get(absent)).toBeUndefined();
  });

  it('adds an id with the hash its missed lookup computed, and keeps every id through a reserve', () => {
    const values = Array.from({ length: 5000 }, (_, i) =>
      i % 3 ? `c${i}` : `Zoë-${i}-${'y'.repeat(i % 80)}`,
    );
    const ids = new TextColumn();
    const index = new TextIndex(ids);
    values.forEach((v, i) => {
      expect(index.get(v)).toBeUndefined();
      ids.push(v);
      index.add(i, index.lastHash);
      if (i === 1000) index.reserve(100_000);
    });
    values.forEach((v, i) => expect(index.get(v)).toBe(i));
    expect(index.get('c0')).toBeUndefined();
  });
});
