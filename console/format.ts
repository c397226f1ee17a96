/** Numbers in the browser's locale. */
const whole = new Intl.NumberFormat();
const percent = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 });
const signed = new Intl.NumberFormat(undefined, { signDisplay: 'exceptZero' });

export const count = (n: number | null | undefined): string =>
  n === null || n === undefined ? '–' : whole.format(n);
export const share = (n: number | null | undefined): string =>
  n === null || n === undefined ? '–' : percent.format(n);
export const change = (n: number | null | undefined): string =>
  n === null || n === undefined ? '–' : signed.format(n);

/** The formats of moments in a time zone: in full, the zone named, and short for a chart's axis. */
const timesIn = (timeZone: string) => ({
  instant: new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'long', timeZone }),
  short: new Intl.DateTimeFormat(undefined, {
    month: 'short',
    day: 'numeric',
    hour: 'numeric',
    minute: '2-digit',
    timeZone,
  }),
});
let { instant, short } = timesIn('UTC');

/** Shows times in this zone from now on (the config's console.time_zone, as the session reports it). */
export function showTimesIn(timeZone: string): void {
  ({ instant, short } = timesIn(timeZone));
}

/** A moment (ISO 8601) in the configured time zone, the zone named: Jan 5, 2026, 3:04:05 PM GMT+1. */
export const dateTime = (iso: string | null | undefined): string =>
  iso === null || iso === undefined ? '–' : instant.format(new Date(iso));

/** A moment (milliseconds) on a chart's time axis, in the configured time zone: Jan 5, 3:04 PM. */
export const axisTime = (ms: number): string => short.format(new Date(ms));
