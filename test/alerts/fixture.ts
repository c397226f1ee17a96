import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { queuePrefix } from '../../jobs/queues.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { recordScoring } from '../../src/history/snapshots.js';
import { createLogger } from '../../src/log.js';
import { segmentCustomers } from '../../src/score/pipeline.js';
import { tempDir } from '../helpers.js';

/** Credentials of the test's channels: none of them may show up in an alert, a log line or Redis. */
export const SECRETS = {
  ALERT_WEBHOOK_SECRET: 'whsec-7c1d0e9a5b3f4a2e',
  SLACK_PATH: '/services/T0TEST/B0TEST/xoxbSlackTok3nValue42',
  SMTP_USER: 'alerts-bot',
  SMTP_PASSWORD: 'smtp-Pa55-0f9e8d7c',
  META_TOKEN: 'EAABtestmetatoken1234567890abcdef',
};

/**
 * Customers as a scores file (segments given), each with an email and a phone: c<i>, buyer<i>@example.com,
 * +44 20 7946 0<i padded>. `segments` maps customer number to segment.
 */
export function scoresCsv(segments: Record<number, string>): string {
  const rows = ['customer_id,segment,email,phone'];
  for (const [i, segment] of Object.entries(segments))
    rows.push(`c${i},${segment},buyer${i}@example.com,+44 20 7946 0${String(i).padStart(3, '0')}`);
  return rows.join('\n') + '\n';
}

/** Every email and phone the fixture can hold (customers 1 to 30). */
export const FIXTURE_PII = Array.from({ length: 30 }, (_, k) => [
  `buyer${k + 1}@example.com`,
  `+44 20 7946 0${String(k + 1).padStart(3, '0')}`,
  `7946 0${String(k + 1).padStart(3, '0')}`,
]).flat();

/** Segment sizes by hand: week 1 (2026-11-23) and week 2 (2026-11-30); c10 leaves, c11 arrives, c3 and c4 slip. */
export const WEEK1: Record<number, string> = {
  1: 'Champions',
  2: 'Champions',
  3: 'Champions',
  4: 'Champions',
  5: 'At Risk',
  6: 'At Risk',
  7: 'At Risk',
  8: 'Lost',
  9: 'Lost',
  10: 'Lost',
  12: 'Lost',
  13: 'Lost',
  14: 'Lost',
};
export const WEEK2: Record<number, string> = {
  1: 'Champions',
  2: 'Champions',
  11: 'Champions',
  3: 'At Risk',
  4: 'At Risk',
  5: 'At Risk',
  6: 'At Risk',
  7: 'At Risk',
  8: 'Lost',
  9: 'Lost',
  12: 'Lost',
  13: 'Lost',
  14: 'Lost',
};

export interface Setup {
  dir: string;
  prefix: string;
  config: Config;
  /** Re-reads the config with other alert or destination settings. */
  reload(more?: { apiVersion?: string; alerts?: string; segments?: string }): Config;
  /** Scores `segments` as of `date` and records the snapshot, as `audience-sync score` does. */
  score(segments: Record<number, string>, date: string): Promise<void>;
}

/** A config with a file and a Meta destination, alert channels pointing at local sinks, and a prefix of its own. */
export function setup(
  redis: Redis,
  sinks: { webhook?: string; slack?: string; smtpPort?: number },
  options: { apiVersion?: string; alerts?: string; segments?: string } = {},
): Setup {
  const dir = tempDir('audience-sync-alerts-');
  const prefix = `alerts-${path.basename(dir)}`;
  const env = {
    ...process.env,
    ALERT_WEBHOOK_SECRET: SECRETS.ALERT_WEBHOOK_SECRET,
    SLACK_WEBHOOK_URL: `${sinks.slack ?? 'http://127.0.0.1:9'}${SECRETS.SLACK_PATH}`,
    SMTP_USER: SECRETS.SMTP_USER,
    SMTP_PASSWORD: SECRETS.SMTP_PASSWORD,
    META_TOKEN: SECRETS.META_TOKEN,
  };
  const channels = [
    ...(sinks.webhook
      ? [
          `    - { type: webhook, name: hook, url: "${sinks.webhook}/hook", secret: "\${ALERT_WEBHOOK_SECRET}" }`,
        ]
      : []),
    ...(sinks.slack ? ['    - { type: slack, url: "${SLACK_WEBHOOK_URL}" }'] : []),
    ...(sinks.smtpPort
      ? [
          `    - { type: email, host: 127.0.0.1, port: ${sinks.smtpPort}, user: "\${SMTP_USER}", password: "\${SMTP_PASSWORD}", from: alerts@shop.test, to: [marketing@shop.test] }`,
        ]
      : []),
  ];
  const text = (more: typeof options) => `source: { type: csv, path: scores.csv, shape: scores }
audiences:
  per_segment: false
  list:
    - { name: Champions, segments: [Champions] }
    - { name: Slipping, segments: ["At Risk"] }
${more.segments ?? ''}
destinations:
  local: { type: file, path: out }
  fb: { type: meta, ad_account_id: "1234567890", access_token: "\${META_TOKEN}", api_version: ${more.apiVersion ?? 'v25.0'} }
sync: { redis_prefix: ${prefix} }
alerts:
  remind_hours: 24
  channels:
${channels.join('\n')}
${more.alerts ?? ''}
`;
  const file = path.join(dir, 'audience-sync.yaml');
  const load = (more: typeof options) => {
    writeFileSync(file, text(more));
    return parseConfig(text(more), file, env);
  };
  const s: Setup = {
    dir,
    prefix,
    config: load(options),
    reload(more = {}) {
      s.config = load({ ...options, ...more });
      return s.config;
    },
    async score(segments, date) {
      writeFileSync(path.join(dir, 'scores.csv'), scoresCsv(segments));
      const config = { ...s.config, scoring: { ...s.config.scoring, analysis_date: date } };
      const segmented = await segmentCustomers(config, { baseDir: dir });
      const outcome = await recordScoring(redis, queuePrefix(prefix), config, segmented, 'score');
      if (outcome.status !== 'recorded')
        throw new Error(`snapshot of ${date} not recorded: ${JSON.stringify(outcome)}`);
    },
  };
  return s;
}

/** A logger whose JSON lines the test keeps, to grep them. */
export function keptLogger() {
  const lines: string[] = [];
  const log = createLogger({
    level: 'debug',
    json: true,
    stream: { write: (s: string) => void lines.push(s) },
  });
  return { log, lines };
}
