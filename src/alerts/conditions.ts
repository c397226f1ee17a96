import type { RunRecord } from '../../jobs/history.js';
import type { Receipt, ErasureRequest } from '../privacy/erasure.js';
import type { Snapshot } from '../history/snapshots.js';
import type { AudienceHealth } from '../health/schema.js';
import { rejectionOf } from '../sync/run.js';

/** The kinds of condition an alert is about, each with the setting that tunes it. */
export const ALERT_KINDS = [
  'run_failed',
  'rejected_share',
  'segment_change',
  'divergent',
  'flagged',
  'below_minimum',
  'erasure_overdue',
  'version_expiry',
] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

/** Kinds a run's end decides (a run's own records), and kinds that come with time or with stats reads. */
export const RUN_KINDS: readonly AlertKind[] = [
  'run_failed',
  'rejected_share',
  'below_minimum',
  'flagged',
  'divergent',
  'segment_change',
];
export const TIMED_KINDS: readonly AlertKind[] = [
  'erasure_overdue',
  'version_expiry',
  'divergent',
  'flagged',
];

/**
 * One condition that holds now: its stable key (kind, destination, subject), the numbers behind it and
 * what to do. Names and counts only: never a member, an identifier or a platform's raw text unscrubbed.
 */
export interface Condition {
  kind: AlertKind;
  /** `kind:destination:subject`: the same condition keeps its key from one evaluation to the next. */
  key: string;
  destination: string;
  /** The audience, segment, erasure or version the condition is about. */
  subject: string;
  /** One line: what is wrong. */
  title: string;
  numbers: Record<string, number | string>;
  /** What to do, naming the command or setting. */
  action: string;
}

export function conditionKey(kind: AlertKind, destination: string, subject: string): string {
  return `${kind}:${destination}:${subject}`;
}

function condition(c: Omit<Condition, 'key'>): Condition {
  return { ...c, key: conditionKey(c.kind, c.destination, c.subject) };
}

const percent = (share: number) => `${(share * 100).toFixed(1)} %`;

/** The latest run of an audience failed (the caller evaluates this only once the run's retries are over). */
export function runFailed(latest: RunRecord | undefined): Condition[] {
  if (latest?.outcome !== 'failed') return [];
  return [
    condition({
      kind: 'run_failed',
      destination: latest.destination,
      subject: latest.audience,
      title: `the sync of ${latest.destination} / ${latest.audience} failed: ${latest.error}`,
      numbers: { run: latest.run, at: latest.at, failed_members: latest.failed, added: latest.added },
      action:
        latest.errorKind === 'permanent'
          ? 'fix what the error names (a token, a permission, a setting), then `audience-sync resync`'
          : 'the next scheduled run tries again; `audience-sync status` shows the history, `audience-sync resync` runs it now',
    }),
  ];
}

/** The latest completed run had the platform reject more than `threshold` of what it was sent. */
export function rejectedShare(latest: RunRecord | undefined, threshold: number): Condition[] {
  if (latest?.outcome !== 'completed') return [];
  const rejection = rejectionOf(latest);
  if (!rejection || rejection.share <= threshold) return [];
  const { sent } = rejection;
  const reasons = Object.entries(latest.rejectedReasons)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([reason, n]) => `${reason}: ${n}`)
    .join('; ');
  return [
    condition({
      kind: 'rejected_share',
      destination: latest.destination,
      subject: latest.audience,
      title: `${latest.destination} / ${latest.audience}: the platform rejected ${latest.rejected} of ${sent} members (${percent(rejection.share)}, more than ${percent(threshold)})`,
      numbers: {
        rejected: latest.rejected,
        sent,
        share: rejection.share,
        threshold,
        ...(reasons ? { reasons } : {}),
      },
      action:
        "check the identifier columns (formats, country codes) against the platform's reasons; the threshold is alerts.rejected_share (else sync.max_rejected_share)",
    }),
  ];
}

/** The latest completed run found the audience below its platform's minimum (`min_size`, `removal_floor`). */
export function belowMinimum(latest: RunRecord | undefined): Condition[] {
  if (latest?.outcome !== 'completed') return [];
  const findings = (latest.policy ?? []).filter((f) => f.check === 'min_size' || f.check === 'removal_floor');
  if (findings.length === 0) return [];
  return [
    condition({
      kind: 'below_minimum',
      destination: latest.destination,
      subject: latest.audience,
      title: `${latest.destination} / ${latest.audience} is below the platform's minimum size (${latest.members} members)`,
      numbers: {
        members: latest.members,
        checks: findings.map((f) => f.check).join(', '),
        blocked: findings.some((f) => f.blocked) ? 'yes' : 'no',
        findings: findings.map((f) => f.message).join(' | '),
      },
      action:
        'widen the audience (more segments, a looser filter) or accept that the platform will not serve it yet',
    }),
  ];
}

/** The platform says it will not serve the audience (flagged, unusable): the latest reading's `problems`. */
export function flagged(health: AudienceHealth): Condition[] {
  const problems = health.platform?.problems ?? [];
  if (problems.length === 0) return [];
  return [
    condition({
      kind: 'flagged',
      destination: health.destination,
      subject: health.audience,
      title: `${health.destination} / ${health.audience} is flagged or unusable on the platform: ${problems.join('; ')}`,
      numbers: { problems: problems.length, read_at: health.platform!.at },
      action:
        "read the platform's reason in its ads manager; rename the audience or change what it targets, then resync",
    }),
  ];
}

/** The platform's size has stayed outside the expected band for longer than it takes to process uploads. */
export function divergent(health: AudienceHealth): Condition[] {
  const d = health.divergence;
  if (!d.divergent) return [];
  return [
    condition({
      kind: 'divergent',
      destination: health.destination,
      subject: health.audience,
      title: `${health.destination} / ${health.audience}: the platform counts ${d.platformSize ?? 'unknown'} where ${d.band ? `${Math.round(d.band.low)} to ${Math.round(d.band.high)}` : 'a different size'} was expected`,
      numbers: {
        platform_size: d.platformSize ?? 'unknown',
        sent: d.sent ?? 'unknown',
        expected: d.expected ?? 'unknown',
        since: d.since ?? 'unknown',
      },
      action:
        'run `audience-sync resync --full` for the audience; if it stays apart, compare the platform audience with `audience-sync status` (band: health.band)',
    }),
  ];
}

/**
 * Segments whose size changed by more than `share` between the latest snapshot and the one before it.
 * A segment absent from one side counts 0 there; a segment new from 0 always counts as changed.
 */
export function segmentChanges(
  latest: Snapshot | undefined,
  previous: Snapshot | undefined,
  share: number,
): Condition[] {
  if (!latest || !previous) return [];
  const before = new Map(previous.segments.map((s) => [s.segment, s.customers]));
  const after = new Map(latest.segments.map((s) => [s.segment, s.customers]));
  const names = [...new Set([...before.keys(), ...after.keys()])];
  return names.flatMap((segment) => {
    const was = before.get(segment) ?? 0;
    const now = after.get(segment) ?? 0;
    const change = was === 0 ? (now === 0 ? 0 : Infinity) : Math.abs(now - was) / was;
    if (change <= share) return [];
    return [
      condition({
        kind: 'segment_change',
        destination: '*',
        subject: segment,
        title: `segment ${segment} went from ${was} to ${now} customers between ${previous.date} and ${latest.date}${Number.isFinite(change) ? ` (${now >= was ? '+' : '-'}${percent(change)})` : ''}`,
        numbers: { before: was, after: now, from: previous.date, to: latest.date, threshold: share },
        action:
          'check that the source export is complete and the scoring settings unchanged; if the change is real, review the campaigns using this segment (threshold: alerts.segment_change_share)',
      }),
    ];
  });
}

/** Receipts not `removed` later than `deadlineHours` after the request. */
export function erasuresOverdue(
  requests: readonly (ErasureRequest & { receipts: Receipt[] })[],
  deadlineHours: number,
  now: Date,
): Condition[] {
  return requests.flatMap((r) =>
    r.receipts.flatMap((receipt) => {
      if (receipt.status === 'removed') return [];
      const hours = (now.getTime() - Date.parse(receipt.requested_at)) / 3_600_000;
      if (hours <= deadlineHours) return [];
      return [
        condition({
          kind: 'erasure_overdue',
          destination: receipt.destination,
          subject: r.id,
          title: `erasure ${r.id} is not done on ${receipt.destination} after ${Math.floor(hours)} hours (${receipt.status}${receipt.reason ? `: ${receipt.reason}` : ''})`,
          numbers: {
            erasure: r.id,
            status: receipt.status,
            requested_at: receipt.requested_at,
            attempts: receipt.attempts,
            hours: Math.floor(hours),
            deadline_hours: deadlineHours,
          },
          action:
            '`audience-sync erasures` shows the receipt and its reason; fix the destination (credentials, permissions) and the worker retries it',
        }),
      ];
    }),
  );
}

/** A destination's platform API version expires soon (or has), as its connector's table says. */
export function versionExpiry(
  notices: readonly { destination: string; version: string; expired: boolean; text: string }[],
): Condition[] {
  return notices.map((n) =>
    condition({
      kind: 'version_expiry',
      destination: n.destination,
      subject: n.version,
      title: `${n.destination}: ${n.text}`,
      numbers: { version: n.version, expired: n.expired ? 'yes' : 'no' },
      action: `update destinations.${n.destination}.api_version in the config`,
    }),
  );
}
