/**
 * Segment colours: one per segment in the segment map's order (the order of GET /api/v1/segments), so that
 * a segment has the same colour on every chart. The first twelve are style.css's --seg-0 … --seg-11 (a set for
 * the light theme, one for the dark); further segments get hues a golden angle apart (chart.tsx reads them).
 */

/** The colour of the k-th segment past style.css's twelve: dark enough on white, light enough on the dark theme. */
export function extraColour(k: number, dark: boolean): string {
  return `hsl(${Math.round((k * 137.508) % 360)} 65% ${dark ? 68 : 32}%)`;
}

/** The segment names of a page: the segment map's, then any that only the history still has. */
export function namesInOrder(map: readonly string[], seen: Iterable<string>): string[] {
  return [...new Set([...map, ...seen])];
}
