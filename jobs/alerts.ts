import type { Queue } from 'bullmq';
import type { RedisClient } from '../src/redis-client.js';
import { sendDigest } from '../src/alerts/digest.js';
import { evaluateAlerts, type Evaluation, type VersionNotice } from '../src/alerts/evaluate.js';
import { RUN_KINDS, TIMED_KINDS, type AlertKind } from '../src/alerts/conditions.js';
import type { Config } from '../src/config/schema.js';
import type { Logger } from '../src/log.js';
import { destinationsOf, type ConnectorRegistry } from '../src/sync/prepare.js';
import type { AdminJob } from './queues.js';

/** Destinations whose platform API version has expired or soon will, as their connectors say (Meta's Graph API). */
export function versionNotices(config: Config, connectors: ConnectorRegistry, now: Date): VersionNotice[] {
  return destinationsOf(config, connectors).flatMap(({ name, connector, config: settings }) => {
    const notice = connector.apiVersionNotice?.(settings, now);
    return notice ? [{ destination: name, ...notice }] : [];
  });
}

/**
 * Which kinds an evaluation decides: after a run (its failure only once its retries are over: `final`),
 * after a stats read, or on the alerts schedule.
 */
export function kindsAfter(after: 'run' | 'retry' | 'stats' | 'schedule'): readonly AlertKind[] {
  switch (after) {
    case 'run':
      return RUN_KINDS;
    case 'retry':
      return RUN_KINDS.filter((k) => k !== 'run_failed');
    case 'stats':
      return ['divergent', 'flagged'];
    case 'schedule':
      return TIMED_KINDS;
  }
}

export async function evaluateAfter(
  redis: RedisClient,
  config: Config,
  connectors: ConnectorRegistry,
  after: 'run' | 'retry' | 'stats' | 'schedule',
  log: Logger,
  destination?: string,
  now?: Date,
): Promise<Evaluation> {
  return evaluateAlerts(redis, config, {
    kinds: kindsAfter(after),
    ...(destination !== undefined ? { destinations: [destination] } : {}),
    log,
    versionNotices: (c, at) => versionNotices(c, connectors, at),
    ...(now ? { now } : {}),
  });
}

export async function runDigest(
  redis: RedisClient,
  config: Config,
  log: Logger,
): Promise<{ sent: string[] }> {
  const { sent } = await sendDigest(redis, config);
  log.info({ channels: sent }, `weekly digest sent through ${sent.join(', ')}`);
  return { sent };
}

/** An evaluation or a digest: one attempt (the next evaluation retries what a channel refused), kept a day. */
export const ALERTS_JOB_OPTIONS = {
  attempts: 1,
  removeOnComplete: { age: 86_400, count: 100 },
  removeOnFail: { age: 7 * 86_400 },
};

export const ALERTS_CHECK_ID = 'alerts-check';
export const DIGEST_ID = 'alerts-digest';

/** `alerts.check_minutes` as a cron pattern (a divisor of an hour). */
export function checkPattern(minutes: number): string {
  return minutes >= 60 ? '0 * * * *' : `*/${minutes} * * * *`;
}

/**
 * The admin queue's alert schedulers as the config asks: the periodic check while any channel is set,
 * and the digest while `alerts.digest.cron` is set (and an email channel can carry it). Ids are fixed, so
 * workers reconciling at once upsert the same two schedulers.
 */
export async function reconcileAlertSchedules(
  config: Config,
  admin: Queue,
): Promise<{ set: string[]; removed: string[] }> {
  const out = { set: [] as string[], removed: [] as string[] };
  const existing = new Map(
    (await admin.getJobSchedulers(0, -1))
      .filter((s) => s.key === ALERTS_CHECK_ID || s.key === DIGEST_ID)
      .map((s) => [s.key, `${s.pattern ?? ''} ${s.tz ?? ''}`]),
  );
  const wanted = new Map<string, { pattern: string; tz: string; data: AdminJob; name: string }>();
  if (config.alerts.channels.length > 0)
    wanted.set(ALERTS_CHECK_ID, {
      pattern: checkPattern(config.alerts.check_minutes),
      tz: 'UTC',
      name: 'alerts',
      data: { action: 'alerts', after: 'schedule' },
    });
  const cron = config.alerts.digest.cron;
  if (cron && config.alerts.channels.some((c) => c.type === 'email'))
    wanted.set(DIGEST_ID, {
      pattern: cron,
      tz: config.alerts.digest.tz,
      name: 'digest',
      data: { action: 'digest' },
    });
  for (const [id, w] of wanted) {
    if (existing.get(id) === `${w.pattern} ${w.tz}`) continue;
    await admin.upsertJobScheduler(
      id,
      { pattern: w.pattern, tz: w.tz },
      { name: w.name, data: w.data, opts: ALERTS_JOB_OPTIONS },
    );
    out.set.push(id);
  }
  for (const id of existing.keys())
    if (!wanted.has(id)) {
      await admin.removeJobScheduler(id);
      out.removed.push(id);
    }
  return out;
}
