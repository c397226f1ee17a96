import type { Logger } from '../log.js';
import { pct, type ReadReport } from './read.js';

/** Sample rows shown on screen and in logs (JSON has all `read` kept). */
const SHOWN = 5;

/**
 * What a run could not use of its source, as `score`, `plan` and `sync` report it: the bad rows (count,
 * reasons, the first rows) and the rows dated after the analysis date, in JSON.
 */
export function readSummary(report: ReadReport) {
  const { source, future, profiles } = report;
  return {
    rows: source.rows,
    bad_rows: source.bad,
    bad_row_reasons: source.byReason,
    bad_row_samples: source.samples,
    future_rows: future.count,
    future_row_samples: future.rows,
    ...(profiles
      ? {
          profiles: {
            rows: profiles.rows,
            bad_rows: profiles.bad,
            bad_row_reasons: profiles.byReason,
            bad_row_samples: profiles.samples,
            unmatched: profiles.unmatched,
            missing: profiles.missing,
          },
        }
      : {}),
  };
}

/** The same for a person: lines to warn with, none when every row was used. */
export function readReportLines(report: ReadReport): string[] {
  const lines: string[] = [];
  const bad = (label: string, log: ReadReport['source']) => {
    if (log.bad === 0) return;
    const reasons = Object.entries(log.byReason)
      .sort((a, b) => b[1] - a[1])
      .map(([reason, n]) => `${n} × ${reason}`)
      .join(', ');
    lines.push(`${label}${log.bad} of ${log.rows} rows skipped (${pct(log.bad / log.rows)}): ${reasons}`);
    for (const s of log.samples.slice(0, SHOWN)) lines.push(`  row ${s.row}: ${s.reason}`);
  };
  bad('', report.source);
  const { future } = report;
  if (future.count > 0) {
    const one = future.count === 1;
    const what =
      future.what === 'orders'
        ? `${future.count} ${one ? 'order' : 'orders'} after the analysis date ${future.after}`
        : `${future.count} ${one ? 'customer' : 'customers'} whose last order is after the analysis date ${future.after}`;
    const rows = future.rows.slice(0, SHOWN);
    const more = future.count > rows.length ? ', …' : '';
    lines.push(`${what} left out (${rows.length === 1 ? 'row' : 'rows'} ${rows.join(', ')}${more})`);
  }
  if (report.profiles) bad('profiles: ', report.profiles);
  return lines;
}

/** Logs `readReportLines`, the first line with the counts as fields for log tools. */
export function logReadReport(report: ReadReport, log: Logger): void {
  const [first, ...rest] = readReportLines(report);
  if (first === undefined) return;
  log.warn(
    {
      bad_rows: report.source.bad,
      ...(report.source.bad > 0
        ? { first_bad_rows: report.source.samples.slice(0, SHOWN).map((s) => s.row) }
        : {}),
      future_rows: report.future.count,
      ...(report.profiles ? { profiles_bad_rows: report.profiles.bad } : {}),
    },
    first,
  );
  for (const line of rest) log.warn(line);
}
