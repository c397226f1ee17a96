import type { RedisClient } from '../redis-client.js';
import { queuePrefix } from '../../jobs/queues.js';
import type { Config } from '../config/schema.js';
import { destinationHealth } from '../health/audience.js';
import type { AudienceHealth } from '../health/schema.js';
import { listSnapshots, sourceIdOf, type Snapshot } from '../history/snapshots.js';
import { scrub } from '../redact.js';
import { buildSegmentMap } from '../segment/maps.js';
import { channelsOf } from './evaluate.js';
import type { Channel, Mail } from './channels.js';
import { html, type Html } from './html.js';

/** The numbers of a weekly digest: segments now and a week before, the latest movement, audience health. */
export interface Digest {
  /** The latest snapshot's analysis date, and the one compared with (none: a single snapshot). */
  date: string | null;
  since: string | null;
  segments: {
    segment: string;
    customers: number;
    before: number | null;
    change: number | null;
    action: string | null;
  }[];
  /** The latest snapshot's movement from the one before it, largest first, staying customers left out. */
  movement: { from: string; to: string; customers: number }[];
  movementFrom: string | null;
  audiences: {
    destination: string;
    audience: string;
    expected: number | null;
    platformSize: number | null;
    state: string;
    lastRun: string;
    problems: string[];
  }[];
}

const DAY_MS = 86_400_000;
const TOP_MOVES = 8;

/** The digest as of the latest snapshot, compared with the newest one at least a week older (else the oldest). */
export async function digestOf(redis: RedisClient, config: Config, now = new Date()): Promise<Digest> {
  const prefix = queuePrefix(config.sync.redis_prefix);
  const { snapshots } = await listSnapshots(redis, prefix, sourceIdOf(config.source), { limit: 100_000 });
  const latest = snapshots.at(-1);
  const weekBefore = latest ? Date.parse(`${latest.date}T00:00:00Z`) - 7 * DAY_MS : 0;
  const earlier = snapshots.slice(0, -1);
  const baseline: Snapshot | undefined =
    earlier.filter((s) => Date.parse(`${s.date}T00:00:00Z`) <= weekBefore).at(-1) ?? earlier[0];
  let actions: Readonly<Record<string, string>> = {};
  try {
    actions = buildSegmentMap(config.segments).actions;
  } catch {
    // a bad segment map is reported where it is built; the digest goes without actions
  }
  const before = new Map(baseline?.segments.map((s) => [s.segment, s.customers]));
  const segments = (latest?.segments ?? []).map((s) => {
    const was = baseline ? (before.get(s.segment) ?? 0) : null;
    return {
      segment: s.segment,
      customers: s.customers,
      before: was,
      change: was === null ? null : s.customers - was,
      action: actions[s.segment] ?? null,
    };
  });
  const movement = (latest?.movement.cells ?? [])
    .filter((c) => c.from !== c.to)
    .sort((a, b) => b.customers - a.customers || a.from.localeCompare(b.from) || a.to.localeCompare(b.to))
    .slice(0, TOP_MOVES)
    .map((c) => ({ from: c.from, to: c.to, customers: c.customers }));
  const health = await destinationHealth(redis, prefix, config, { now });
  return {
    date: latest?.date ?? null,
    since: baseline?.date ?? null,
    segments,
    movement,
    movementFrom: latest?.movement.from ?? null,
    audiences: health.map(audienceLine),
  };
}

function audienceLine(h: AudienceHealth): Digest['audiences'][number] {
  const state =
    (h.platform?.problems ?? []).length > 0
      ? 'flagged'
      : h.divergence.divergent
        ? 'divergent'
        : h.divergence.state === 'unknown'
          ? 'no size yet'
          : 'ok';
  return {
    destination: h.destination,
    audience: h.audience,
    expected: h.expected,
    platformSize: h.platform?.size ?? null,
    state,
    lastRun: h.lastRun ? `${h.lastRun.outcome} ${h.lastRun.at.slice(0, 16).replace('T', ' ')} UTC` : 'never',
    problems: (h.platform?.problems ?? []).map(scrub),
  };
}

const n = (v: number | null) => (v === null ? '–' : v.toLocaleString('en-US'));
const signed = (v: number | null) => (v === null ? '–' : v > 0 ? `+${n(v)}` : v < 0 ? `−${n(-v)}` : '0');

/** Suggested actions: each segment's own (segments.actions), then audiences the platform will not serve. */
function suggestions(d: Digest): string[] {
  const moved = d.segments.filter((s) => s.action && s.customers > 0);
  return [
    ...moved.map((s) => `${s.segment} (${n(s.customers)}): ${s.action!}`),
    ...d.audiences
      .filter((a) => a.state === 'flagged' || a.state === 'divergent')
      .map((a) =>
        a.state === 'flagged'
          ? `${a.destination} / ${a.audience} is flagged by the platform: ${a.problems.join('; ')}`
          : `${a.destination} / ${a.audience}: the platform's size stays away from what was sent; run a full resync`,
      ),
  ];
}

export function digestSubject(d: Digest): string {
  return `[audience-sync] weekly digest${d.date ? ` for ${d.date}` : ''}`;
}

/** The digest as plain text (the e-mail's text part, and the CLI's preview). */
export function digestText(d: Digest): string {
  const lines = [digestSubject(d), ''];
  if (!d.date) lines.push('No segment snapshot yet: the first sync or score records one.');
  else {
    lines.push(`Segments on ${d.date}${d.since ? `, compared with ${d.since}` : ''}:`);
    for (const s of d.segments)
      lines.push(
        `  ${s.segment}: ${n(s.customers)} (${d.since ? `${signed(s.change)} from ${n(s.before)}` : 'first snapshot'})`,
      );
    lines.push('');
    lines.push(
      d.movementFrom ? `Top movements since ${d.movementFrom}:` : 'Top movements: none counted yet.',
    );
    for (const m of d.movement) lines.push(`  ${m.from} -> ${m.to}: ${n(m.customers)}`);
  }
  lines.push('', 'Audiences:');
  if (d.audiences.length === 0) lines.push('  none configured');
  for (const a of d.audiences)
    lines.push(
      `  ${a.destination} / ${a.audience}: ${a.state}; expected ${n(a.expected)}, platform ${n(a.platformSize)}; last run ${a.lastRun}`,
    );
  const todo = suggestions(d);
  if (todo.length > 0) lines.push('', 'Suggested actions:', ...todo.map((t) => `  - ${t}`));
  return lines.join('\n') + '\n';
}

const cell = 'padding:6px 10px;border-bottom:1px solid #e2e5ea;font-size:14px;';
const num = `${cell}text-align:right;font-variant-numeric:tabular-nums;`;
const head = 'padding:6px 10px;border-bottom:2px solid #c8ccd2;font-size:13px;text-align:left;color:#4a5160;';
const table = 'border-collapse:collapse;width:100%;max-width:640px;margin:0 0 20px 0;';

/** The digest as HTML for mail clients: tables and inline styles, no scripts, no images, every value escaped. */
export function digestHtml(d: Digest): string {
  const section = (title: string, body: Html | Html[]) =>
    html`<h2 style="font-size:17px;margin:24px 0 8px 0;color:#1d2330;">${title}</h2>
      ${body}`;
  const segments = d.date
    ? html`<table role="presentation" style="${table}" cellpadding="0" cellspacing="0">
        <tr>
          <th style="${head}">Segment</th>
          <th style="${head}text-align:right;">Customers</th>
          <th style="${head}text-align:right;">${d.since ? `Change since ${d.since}` : 'Change'}</th>
          <th style="${head}">Suggested action</th>
        </tr>
        ${d.segments.map(
          (s) =>
            html`<tr>
              <td style="${cell}">${s.segment}</td>
              <td style="${num}">${n(s.customers)}</td>
              <td style="${num}color:${(s.change ?? 0) < 0 ? '#b3261e' : '#1d6b35'};">${signed(s.change)}</td>
              <td style="${cell}color:#4a5160;">${s.action ?? ''}</td>
            </tr> `,
        )}
      </table>`
    : html`<p style="font-size:14px;">No segment snapshot yet: the first sync or score records one.</p>`;
  const movement =
    d.movement.length > 0
      ? html`<table role="presentation" style="${table}" cellpadding="0" cellspacing="0">
          <tr>
            <th style="${head}">From</th>
            <th style="${head}">To</th>
            <th style="${head}text-align:right;">Customers</th>
          </tr>
          ${d.movement.map(
            (m) =>
              html`<tr>
                <td style="${cell}">${m.from}</td>
                <td style="${cell}">${m.to}</td>
                <td style="${num}">${n(m.customers)}</td>
              </tr> `,
          )}
        </table>`
      : html`<p style="font-size:14px;">No movement counted yet.</p>`;
  const audiences =
    d.audiences.length > 0
      ? html`<table role="presentation" style="${table}" cellpadding="0" cellspacing="0">
          <tr>
            <th style="${head}">Audience</th>
            <th style="${head}text-align:right;">Expected</th>
            <th style="${head}text-align:right;">On the platform</th>
            <th style="${head}">Health</th>
            <th style="${head}">Last run</th>
          </tr>
          ${d.audiences.map(
            (a) =>
              html`<tr>
                <td style="${cell}">${a.destination} / ${a.audience}</td>
                <td style="${num}">${n(a.expected)}</td>
                <td style="${num}">${n(a.platformSize)}</td>
                <td style="${cell}color:${a.state === 'ok' ? '#1d6b35' : '#b3261e'};">
                  ${a.state}${a.problems.length ? `: ${a.problems.join('; ')}` : ''}
                </td>
                <td style="${cell}">${a.lastRun}</td>
              </tr> `,
          )}
        </table>`
      : html`<p style="font-size:14px;">No audiences configured.</p>`;
  const todo = suggestions(d);
  const body = html`<!DOCTYPE html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width" />
        <title>${digestSubject(d)}</title>
      </head>
      <body
        style="margin:0;padding:16px;background:#ffffff;font-family:Arial,Helvetica,sans-serif;color:#1d2330;"
      >
        <h1 style="font-size:20px;margin:0 0 4px 0;">Weekly audience digest</h1>
        <p style="font-size:14px;margin:0 0 8px 0;color:#4a5160;">
          ${d.date ? `Segments scored on ${d.date}` : 'No scoring yet'}
        </p>
        ${section('Segments', segments)}
        ${section(d.movementFrom ? `Top movements since ${d.movementFrom}` : 'Top movements', movement)}
        ${section('Audience health', audiences)}
        ${
          todo.length > 0
            ? section(
                'Suggested actions',
                html`<ul style="font-size:14px;padding-left:20px;">
                  ${todo.map((t) => html`<li style="margin:0 0 4px 0;">${t}</li>`)}
                </ul>`,
              )
            : ''
        }
      </body>
    </html> `;
  return body.text;
}

/** Sends the digest through every email channel (to `alerts.digest.to`, else the channel's own recipients). */
export async function sendDigest(
  redis: RedisClient,
  config: Config,
  options: { now?: Date; channels?: readonly Channel[] } = {},
): Promise<{ digest: Digest; sent: string[] }> {
  const digest = await digestOf(redis, config, options.now);
  const channels = options.channels ?? channelsOf(config);
  const mailers = channels.filter((c) => c.mail);
  if (mailers.length === 0)
    throw new Error(
      'the digest goes by e-mail: add an email channel to alerts.channels (see "Alerts" in README.md)',
    );
  const mail: Mail = {
    subject: digestSubject(digest),
    text: digestText(digest),
    html: digestHtml(digest),
    ...(config.alerts.digest.to ? { to: config.alerts.digest.to } : {}),
  };
  const sent: string[] = [];
  try {
    for (const c of mailers) {
      await c.mail!(mail);
      sent.push(c.name);
    }
  } finally {
    if (!options.channels) for (const c of channels) c.close?.();
  }
  return { digest, sent };
}
