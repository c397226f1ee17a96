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
