import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { extraColour } from '../../console/colours.js';

/**
 * The segment colours of style.css (light and dark sets) and the ones made past them: told apart from each
 * other (CIE76 colour difference, computed here) and readable on their theme's background (WCAG contrast).
 */

const css = readFileSync('console/style.css', 'utf8');
const dark = css.slice(css.indexOf('@media (prefers-color-scheme: dark)'));
const light = css.slice(0, css.indexOf('@media (prefers-color-scheme: dark)'));
const value = (block: string, name: string) => block.match(new RegExp(`--${name}: (#[0-9a-f]{6});`))?.[1];
const segments = (block: string) => [...block.matchAll(/--seg-(\d+): (#[0-9a-f]{6});/g)].map((m) => m[2]!);

/** sRGB 0..1 from #rrggbb or hsl(h s% l%). */
function rgbOf(colour: string): [number, number, number] {
  const hsl = colour.match(/^hsl\((\d+) (\d+)% (\d+)%\)$/);
  if (!hsl)
    return [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16) / 255) as [number, number, number];
  const [h, s, l] = [Number(hsl[1]), Number(hsl[2]) / 100, Number(hsl[3]) / 100];
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => {
    const k = (n + h / 30) % 12;
    return l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
  };
  return [f(0), f(8), f(4)];
}
const linear = (c: number) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
function luminance(colour: string): number {
  const [r, g, b] = rgbOf(colour).map(linear) as [number, number, number];
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
const contrast = (a: string, b: string) => {
  const [x, y] = [luminance(a), luminance(b)];
  return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
};
function lab(colour: string): [number, number, number] {
  const [r, g, b] = rgbOf(colour).map(linear) as [number, number, number];
  const f = (t: number) => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116);
  const x = f((0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047);
  const y = f(0.2126 * r + 0.7152 * g + 0.0722 * b);
  const z = f((0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883);
  return [116 * y - 16, 500 * (x - y), 200 * (y - z)];
}
const difference = (a: string, b: string) => {
  const [p, q] = [lab(a), lab(b)];
  return Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
};

describe.each([
  ['light', light, false],
  ['dark', dark, true],
] as const)('the %s theme', (_name, block, isDark) => {
  const background = value(block, 'bg')!;
  const palette = segments(block);

  it('has twelve segment colours, eleven default segments and one more', () => {
    expect(palette).toHaveLength(12);
  });

  it('tells every two of them apart, and each is readable on the background', () => {
    for (const [k, colour] of palette.entries()) {
      expect(contrast(colour, background), colour).toBeGreaterThanOrEqual(3);
      for (const other of palette.slice(k + 1))
        expect(difference(colour, other), `${colour} vs ${other}`).toBeGreaterThan(15);
    }
  });

  it('makes more colours past them, each readable and none repeated', () => {
    const extra = Array.from({ length: 20 }, (_, k) => extraColour(12 + k, isDark));
    expect(new Set(extra).size).toBe(extra.length);
    for (const colour of extra) expect(contrast(colour, background), colour).toBeGreaterThanOrEqual(3);
  });
});
