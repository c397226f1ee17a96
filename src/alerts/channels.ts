import { createHmac } from 'node:crypto';
import nodemailer from 'nodemailer';
import type { AlertChannelConfig } from '../config/schema.js';
import { registerSecret, scrub } from '../redact.js';
import type { Condition } from './conditions.js';

/** What an alert says: the condition, and whether it starts, still holds, or has cleared. */
export interface Alert {
  status: 'firing' | 'reminder' | 'resolved' | 'test';
  condition: Condition;
  /** When the condition was first seen (this evaluation, for a new one). */
  since: string;
  at: string;
}

/** An e-mail: subject, plain text and HTML (the digest), or an alert rendered by the channel. */
export interface Mail {
  subject: string;
  text: string;
  html?: string;
  to?: readonly string[];
}

export interface Channel {
  readonly name: string;
  readonly type: AlertChannelConfig['type'];
  send(alert: Alert): Promise<void>;
  /** Email channels only: a message of our own (the digest). */
  mail?(mail: Mail): Promise<void>;
  close?(): void;
}

export const SIGNATURE_HEADER = 'X-Audience-Sync-Signature';
export const TIMESTAMP_HEADER = 'X-Audience-Sync-Timestamp';
const TIMEOUT_MS = 10_000;

/** The alert's text, scrubbed once here: every channel sends names, counts and reasons only. */
export function alertText(alert: Alert): { subject: string; lines: string[] } {
  const c = alert.condition;
  const label = { firing: 'ALERT', reminder: 'STILL', resolved: 'RESOLVED', test: 'TEST' }[alert.status];
  const subject = scrub(`[audience-sync] ${label}: ${c.title}`);
  const lines =
    alert.status === 'resolved'
      ? [`Resolved: ${c.title}`, `It held from ${alert.since} until ${alert.at}.`]
      : [
          c.title,
          ...Object.entries(c.numbers).map(([k, v]) => `${k}: ${v}`),
          `What to do: ${c.action}`,
          `Since: ${alert.since}`,
        ];
  return { subject, lines: lines.map(scrub) };
}

/** The JSON body a webhook receives (also what the signature covers, with its timestamp inside). */
export function webhookBody(alert: Alert, timestamp: number): string {
  const c = alert.condition;
  return JSON.stringify({
    status: alert.status,
    kind: c.kind,
    key: scrub(c.key),
    destination: c.destination,
    subject: scrub(c.subject),
    title: scrub(c.title),
    numbers: Object.fromEntries(
      Object.entries(c.numbers).map(([k, v]) => [k, typeof v === 'string' ? scrub(v) : v]),
    ),
    action: c.action,
    since: alert.since,
    at: alert.at,
    timestamp,
  });
}

/** `sha256=<hex>` of the body under the secret: what receivers recompute to trust a webhook. */
export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

async function post(url: string, body: string, headers: Record<string, string>, what: string): Promise<void> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body,
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (error) {
    throw new Error(scrub(`${what}: cannot reach the URL: ${(error as Error).message}`), {
      cause: error,
    });
  }
  if (!response.ok) {
    const text = await response.text().catch(() => '');
    throw new Error(scrub(`${what}: HTTP ${response.status} ${text.slice(0, 200)}`));
  }
}

/** Slack's mrkdwn treats &, < and > as markup. */
const slackEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function createChannel(config: AlertChannelConfig, now = () => Date.now()): Channel {
  const name = config.name ?? config.type;
  switch (config.type) {
    case 'webhook':
      registerSecret(config.secret);
      return {
        name,
        type: 'webhook',
        async send(alert) {
          const timestamp = Math.floor(now() / 1000);
          const body = webhookBody(alert, timestamp);
          await post(
            config.url,
            body,
            { [SIGNATURE_HEADER]: signature(config.secret, body), [TIMESTAMP_HEADER]: String(timestamp) },
            `alert channel '${name}' (webhook)`,
          );
        },
      };
    case 'slack':
      // The URL is the credential: keep it out of every log line and error.
      registerSecret(config.url);
      return {
        name,
        type: 'slack',
        async send(alert) {
          const { subject, lines } = alertText(alert);
          const [first, ...rest] = lines.map(slackEscape);
          const body = JSON.stringify({
            text: subject,
            blocks: [
              { type: 'section', text: { type: 'mrkdwn', text: `*${first}*` } },
              ...(rest.length ? [{ type: 'section', text: { type: 'mrkdwn', text: rest.join('\n') } }] : []),
            ],
          });
          await post(config.url, body, {}, `alert channel '${name}' (slack)`);
        },
      };
    case 'email': {
      const transport = nodemailer.createTransport({
        host: config.host,
        port: config.port,
        secure: config.secure,
        ...(config.user ? { auth: { user: config.user, pass: config.password ?? '' } } : {}),
        connectionTimeout: TIMEOUT_MS,
        greetingTimeout: TIMEOUT_MS,
        socketTimeout: TIMEOUT_MS,
      });
      const mail = async (m: Mail) => {
        try {
          await transport.sendMail({
            from: config.from,
            to: [...(m.to ?? config.to)],
            subject: m.subject,
            text: m.text,
            ...(m.html !== undefined ? { html: m.html } : {}),
          });
        } catch (error) {
          throw new Error(
            scrub(`alert channel '${name}' (email via ${config.host}): ${(error as Error).message}`),
            { cause: error },
          );
        }
      };
      return {
        name,
        type: 'email',
        async send(alert) {
          const { subject, lines } = alertText(alert);
          await mail({ subject, text: lines.join('\n') + '\n' });
        },
        mail,
        close: () => transport.close(),
      };
    }
  }
}
