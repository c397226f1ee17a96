import { setTimeout as sleep } from 'node:timers/promises';
import type { RedisClient } from '../redis-client.js';
import { lastRuns } from '../../jobs/history.js';
import { describeHolder, Lease } from '../../jobs/lease.js';
import { queuePrefix } from '../../jobs/queues.js';
import { audienceNamesOf } from '../audience/audiences.js';
import type { Config } from '../config/schema.js';
import { destinationHealth } from '../health/audience.js';
import { listSnapshots, sourceIdOf, type Snapshot } from '../history/snapshots.js';
import type { Logger } from '../log.js';
import { erasures } from '../privacy/erasure.js';
import { scrub } from '../redact.js';
import { createChannel, type Alert, type Channel } from './channels.js';
import {
  belowMinimum,
  conditionKey,
  divergent,
  erasuresOverdue,
  flagged,
  rejectedShare,
  runFailed,
  segmentChanges,
  versionExpiry,
  type AlertKind,
  type Condition,
} from './conditions.js';

/** A platform API version that expires soon, as the destination's connector reports it. */
export interface VersionNotice {
  destination: string;
  version: string;
  expired: boolean;
  text: string;
}

export interface EvaluateOptions {
  /** The kinds this evaluation decides: only their alerts start, repeat or clear. */
  kinds: readonly AlertKind[];
  /** Only these destinations' conditions (segment conditions belong to every destination); all when absent. */
  destinations?: readonly string[] | undefined;
  log: Logger;
  now?: Date;
  /** Channels to send through (default: the config's). */
  channels?: readonly Channel[];
  /** The platforms' version notices (the composition root asks the connectors). */
  versionNotices?: (config: Config, now: Date) => VersionNotice[];
}

export interface Evaluation {
  /** Conditions holding now, among the kinds evaluated. */
  holding: Condition[];
  sent: { channel: string; key: string; status: Alert['status'] }[];
  failed: { channel: string; key: string; status: Alert['status']; error: string }[];
}

/** What an alert's state keeps per channel and condition: when it started, when it was last sent, what it said. */
interface Sent {
  since: string;
  sent: string;
  condition: Condition;
}

export const alertKeys = {
  /** Hash: JSON [channel, condition key] → `Sent`. */
  state: (redisPrefix: string) => `${queuePrefix(redisPrefix)}:alerts:state`,
  lock: (redisPrefix: string) => `${queuePrefix(redisPrefix)}:alerts:lock`,
};

export function channelsOf(config: Config): Channel[] {
  return config.alerts.channels.map((c) => createChannel(c));
}

/**
 * Finds which conditions of `kinds` hold, and sends each channel what it has not been told: a new
 * condition once, a reminder after `alerts.remind_hours`, and "resolved" when one it was told about
 * clears. A channel that fails keeps its state as it was, so the next evaluation tries it again; a
 * failure is logged and returned, never thrown.
 */
export async function evaluateAlerts(
  redis: RedisClient,
  config: Config,
  options: EvaluateOptions,
): Promise<Evaluation> {
  const now = options.now ?? new Date();
  const channels = options.channels ?? channelsOf(config);
  const result: Evaluation = { holding: [], sent: [], failed: [] };
  try {
    if (channels.length === 0) return result;
    const { holding, undecided } = await conditionsOf(redis, config, options, now);
    result.holding = holding;
    const lease = await lockOf(redis, alertKeys.lock(config.sync.redis_prefix));
    try {
      await notify(redis, config, channels, holding, undecided, options, now, result);
    } finally {
      await lease.release();
    }
    return result;
  } finally {
    if (!options.channels) for (const c of channels) c.close?.();
  }
}

async function lockOf(redis: RedisClient, key: string): Promise<Lease> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const lease = await Lease.acquire(redis, key, 60_000, describeHolder('alerts'));
    if (lease) return lease;
    if (Date.now() > deadline)
      throw new Error(`another process has held the alerts lock (${key}) for two minutes`);
    await sleep(200);
  }
}

function inScope(destination: string, scope: readonly string[] | undefined): boolean {
  return scope === undefined || destination === '*' || scope.includes(destination);
}

/**
 * The conditions that hold, and the keys this evaluation cannot decide (an audience whose latest run failed
 * says nothing about its rejections), which keep whatever state they had.
 */
async function conditionsOf(
  redis: RedisClient,
  config: Config,
  options: EvaluateOptions,
  now: Date,
): Promise<{ holding: Condition[]; undecided: Set<string> }> {
  const kinds = new Set(options.kinds);
  const prefix = queuePrefix(config.sync.redis_prefix);
  const destinations = Object.keys(config.destinations).filter((d) => inScope(d, options.destinations));
  const holding: Condition[] = [];
  const undecided = new Set<string>();

  if (kinds.has('run_failed') || kinds.has('rejected_share') || kinds.has('below_minimum'))
    for (const destination of destinations)
      for (const audience of audienceNamesOf(config, destination)) {
        const [latest] = await lastRuns(redis, prefix, destination, audience, 1);
        if (kinds.has('run_failed')) holding.push(...runFailed(latest));
        if (latest?.outcome !== 'completed')
          for (const kind of ['rejected_share', 'below_minimum'] as const)
            undecided.add(conditionKey(kind, destination, audience));
        if (kinds.has('rejected_share'))
          holding.push(
            ...rejectedShare(latest, config.alerts.rejected_share ?? config.sync.max_rejected_share),
          );
        if (kinds.has('below_minimum')) holding.push(...belowMinimum(latest));
      }

  if ((kinds.has('divergent') || kinds.has('flagged')) && destinations.length > 0)
    for (const destination of destinations) {
      const healths = await destinationHealth(redis, prefix, config, { destination, now });
      for (const health of healths) {
        if (kinds.has('divergent')) holding.push(...divergent(health));
        if (kinds.has('flagged')) holding.push(...flagged(health));
      }
    }

  if (kinds.has('segment_change')) {
    const [previous, latest] = await lastTwoSnapshots(redis, prefix, sourceIdOf(config.source));
    if (latest && previous)
      holding.push(...segmentChanges(latest, previous, config.alerts.segment_change_share));
    else undecided.add('segment_change:*');
  }

  if (kinds.has('erasure_overdue')) {
    const requests = await erasures(redis, config.sync.redis_prefix);
    holding.push(
      ...erasuresOverdue(requests, config.alerts.erasure_deadline_hours, now).filter((c) =>
        inScope(c.destination, options.destinations),
      ),
    );
  }

  if (kinds.has('version_expiry') && options.versionNotices)
    holding.push(
      ...versionExpiry(
        options.versionNotices(config, now).filter((n) => inScope(n.destination, options.destinations)),
      ),
    );
  else if (kinds.has('version_expiry')) undecided.add('version_expiry:*');

  return { holding: holding.map(scrubbed), undecided };
}

/** The latest snapshot and the one before it (either undefined when there are fewer). */
async function lastTwoSnapshots(
  redis: RedisClient,
  prefix: string,
  source: string,
): Promise<[Snapshot | undefined, Snapshot | undefined]> {
  const { snapshots } = await listSnapshots(redis, prefix, source, { limit: 100_000 });
  return [snapshots.at(-2), snapshots.at(-1)];
}

/** A condition as alerts keep and send it: its text scrubbed of anything shaped like a credential, email or number. */
function scrubbed(c: Condition): Condition {
  return {
    ...c,
    title: scrub(c.title),
    subject: scrub(c.subject),
    key: scrub(c.key),
    numbers: Object.fromEntries(
      Object.entries(c.numbers).map(([k, v]) => [k, typeof v === 'string' ? scrub(v) : v]),
    ),
  };
}

function isUndecided(key: string, kind: string, undecided: Set<string>): boolean {
  return undecided.has(key) || undecided.has(`${kind}:*`);
}

async function notify(
  redis: RedisClient,
  config: Config,
  channels: readonly Channel[],
  holding: readonly Condition[],
  undecided: Set<string>,
  options: EvaluateOptions,
  now: Date,
  result: Evaluation,
): Promise<void> {
  const stateKey = alertKeys.state(config.sync.redis_prefix);
  const stored = await redis.hgetall(stateKey);
  const state = new Map<string, Sent>();
  for (const [field, value] of Object.entries(stored)) state.set(field, JSON.parse(value) as Sent);
  const remindMs = config.alerts.remind_hours * 3_600_000;
  const at = now.toISOString();
  const kinds = new Set<string>(options.kinds);

  const deliver = async (channel: Channel, alert: Alert, field: string, after: Sent | undefined) => {
    try {
      await channel.send(alert);
      if (after) await redis.hset(stateKey, field, JSON.stringify(after));
      else await redis.hdel(stateKey, field);
      result.sent.push({ channel: channel.name, key: alert.condition.key, status: alert.status });
    } catch (error) {
      const message = scrub(error instanceof Error ? error.message : String(error));
      result.failed.push({
        channel: channel.name,
        key: alert.condition.key,
        status: alert.status,
        error: message,
      });
      options.log.warn(
        { channel: channel.name, alert: alert.condition.key, status: alert.status },
        `alert not sent (tried again at the next evaluation): ${message}`,
      );
    }
  };

  for (const channel of channels) {
    const holdingKeys = new Set<string>();
    for (const condition of holding) {
      const field = JSON.stringify([channel.name, condition.key]);
      holdingKeys.add(field);
      const before = state.get(field);
      if (!before)
        await deliver(channel, { status: 'firing', condition, since: at, at }, field, {
          since: at,
          sent: at,
          condition,
        });
      else if (now.getTime() - Date.parse(before.sent) >= remindMs)
        await deliver(channel, { status: 'reminder', condition, since: before.since, at }, field, {
          since: before.since,
          sent: at,
          condition,
        });
    }
    for (const [field, before] of state) {
      const [name] = JSON.parse(field) as [string, string];
      const c = before.condition;
      if (name !== channel.name || holdingKeys.has(field)) continue;
      if (!kinds.has(c.kind) || !inScope(c.destination, options.destinations)) continue;
      if (isUndecided(c.key, c.kind, undecided)) continue;
      await deliver(channel, { status: 'resolved', condition: c, since: before.since, at }, field, undefined);
    }
  }
}

/** A test alert through every channel: what each said back. */
export async function sendTestAlert(
  config: Config,
  now = new Date(),
): Promise<{ channel: string; ok: boolean; error?: string }[]> {
  const channels = channelsOf(config);
  const condition: Condition = {
    kind: 'run_failed',
    key: 'test:*:test',
    destination: '*',
    subject: 'test',
    title: 'a test alert from `audience-sync alerts test`: this channel works',
    numbers: { channels: channels.length },
    action: 'nothing: this is a test',
  };
  const out = [];
  for (const channel of channels) {
    try {
      await channel.send({ status: 'test', condition, since: now.toISOString(), at: now.toISOString() });
      out.push({ channel: channel.name, ok: true });
    } catch (error) {
      out.push({ channel: channel.name, ok: false, error: scrub((error as Error).message) });
    } finally {
      channel.close?.();
    }
  }
  return out;
}
