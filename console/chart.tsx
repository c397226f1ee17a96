import { HeatmapChart, LineChart } from 'echarts/charts';
import {
  AriaComponent,
  GridComponent,
  LegendComponent,
  TooltipComponent,
  VisualMapComponent,
} from 'echarts/components';
import * as echarts from 'echarts/core';
import { CanvasRenderer } from 'echarts/renderers';
import { useEffect, useRef } from 'preact/hooks';
import { extraColour } from './colours.js';

// Only the parts used here, so the bundle carries nothing else of ECharts.
echarts.use([
  LineChart,
  HeatmapChart,
  AriaComponent,
  GridComponent,
  LegendComponent,
  TooltipComponent,
  VisualMapComponent,
  CanvasRenderer,
]);

export type ChartOption = echarts.EChartsCoreOption;
export const escapeHtml = (text: string): string => echarts.format.encodeHTML(text);

export const dark = () => window.matchMedia('(prefers-color-scheme: dark)').matches;

/** Each segment's colour in this theme, the segments named in the segment map's order (see colours.ts). */
export function segmentColours(names: readonly string[]): Map<string, string> {
  const style = getComputedStyle(document.documentElement);
  return new Map(
    names.map((name, k) => [name, style.getPropertyValue(`--seg-${k}`).trim() || extraColour(k, dark())]),
  );
}

/**
 * One ECharts chart on a canvas. Tooltips are confined to the chart and written without style attributes:
 * the Content-Security-Policy refuses inline styles in markup (ECharts' own element styles are set through
 * the DOM, which it allows).
 */
export function Chart(props: {
  option: ChartOption;
  label: string;
  class: string;
  /** Called with the clicked item's value (a cell of a heatmap, a point of a line). */
  onClick?: (value: unknown) => void;
}) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = ref.current!;
    const chart = echarts.init(el, dark() ? 'dark' : undefined, { renderer: 'canvas' });
    chart.setOption({
      backgroundColor: 'transparent',
      animation: !window.matchMedia('(prefers-reduced-motion: reduce)').matches,
      aria: { enabled: true, label: { description: props.label } },
      ...props.option,
    });
    if (props.onClick) chart.on('click', (p) => props.onClick!((p as { value: unknown }).value));
    const resize = new ResizeObserver(() => chart.resize());
    resize.observe(el);
    return () => {
      resize.disconnect();
      chart.dispose();
    };
  }, [props.option, props.label]);
  // A picture to a screen reader, named by its label; its numbers are in the table that follows it.
  return (
    <div
      ref={ref}
      class={`chart ${props.class}`}
      data-chart={props.label}
      role="img"
      aria-label={props.label}
    />
  );
}

/** A segment's colour beside its name (the key to the charts); set through the DOM, as the CSP wants. */
export function Swatch(props: { colour: string | undefined }) {
  return (
    <span
      class="swatch"
      aria-hidden="true"
      ref={(el) => {
        if (el && props.colour) el.style.setProperty('background-color', props.colour);
      }}
    />
  );
}
