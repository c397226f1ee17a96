import { describe, expect, it } from 'vitest';
import {
  dateParser,
  dayNumber,
  formatDay,
  parseAmount,
  parseAutoDate,
  parseFlag,
} from '../../src/source/parse.js';

const day = (s: string) => Date.parse(`${s}T00:00:00Z`) / 86_400_000;

describe('dates', () => {
  it('reads ISO dates and timestamps, converting offsets to the UTC date', () => {
    expect(parseAutoDate('2006-12-31')).toBe(day('2006-12-31'));
    expect(parseAutoDate('2024-05-01 13:45:00')).toBe(day('2024-05-01'));
    expect(parseAutoDate('2024-05-01T01:30:00+02:00')).toBe(day('2024-04-30'));
    expect(parseAutoDate('2024-05-01T23:30:00-01:00')).toBe(day('2024-05-02'));
    expect(parseAutoDate('2024-05-01 10:00:00+00')).toBe(day('2024-05-01'));
    expect(parseAutoDate('2024-05-01T10:00:00.123Z')).toBe(day('2024-05-01'));
  });

  it('rejects what is not a calendar date', () => {
    for (const bad of ['2024-13-01', '2023-02-29', 'not-a-date', '', '01/02/2024', '2024-5-1'])
      expect(parseAutoDate(bad), bad).toBeUndefined();
    expect(parseAutoDate('2024-02-29')).toBe(day('2024-02-29'));
  });

  it('reads configured patterns and epochs', () => {
    expect(dateParser('DD/MM/YYYY')('31/12/2006')).toBe(day('2006-12-31'));
    expect(dateParser('MM/DD/YYYY')('12/31/2006')).toBe(day('2006-12-31'));
    expect(dateParser('DD.MM.YYYY')('1.2.2024')).toBe(day('2024-02-01'));
    expect(dateParser('YYYYMMDD')('20061231')).toBe(day('2006-12-31'));
    expect(dateParser('DD/MM/YYYY')('12/31/2006')).toBeUndefined();
    expect(dateParser('unix')('1167523200')).toBe(day('2006-12-31'));
    expect(dateParser('unix_ms')('1167523200000')).toBe(day('2006-12-31'));
    expect(dateParser('unix')('')).toBeUndefined();
  });

  it('round-trips day numbers', () => {
    expect(formatDay(dayNumber(2026, 1, 1)!)).toBe('2026-01-01');
  });
});

describe('numbers and flags', () => {
  it('reads plain decimals only', () => {
    expect(parseAmount('12')).toBe(12);
    expect(parseAmount(' -3.50 ')).toBe(-3.5);
    expect(parseAmount('.5')).toBe(0.5);
    expect(parseAmount('1e3')).toBe(1000);
    for (const bad of ['', ' ', 'abc', '12,3', '0x10', '1.2.3', 'NaN', 'Infinity', '12x'])
      expect(parseAmount(bad), bad).toBeUndefined();
  });

  it('reads flags as spreadsheets and databases write them', () => {
    for (const t of ['true', 'TRUE', 't', 'yes', 'Y', '1']) expect(parseFlag(t)).toBe(true);
    for (const f of ['false', 'f', 'no', '0', '']) expect(parseFlag(f)).toBe(false);
    expect(parseFlag('maybe')).toBeUndefined();
  });
});
