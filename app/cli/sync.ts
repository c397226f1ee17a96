import path from 'node:path';
import { Cluster } from 'ioredis';
import { connectors, identifyThread } from '../../connectors/index.js';
import { FileClient, fileConfigSchema } from '../../connectors/file/index.js';
import { describeHolder, leaseKeysOf, takeLeases } from '../../jobs/lease.js';
import { queuePrefix } from '../../jobs/queues.js';
import { recordFailedRun, recordRun, runRecordsOf, type RunMeta } from '../../jobs/history.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { ConfigError, describeError, ExitCode, UserError } from '../../src/errors.js';
import { isConsentReason } from '../../src/identify/consent.js';
import type { Logger } from '../../src/log.js';
import { redisConfigProblem, redisWhere, unreachableHint } from '../../src/redis-url.js';
import { createRedis, type RedisClient } from '../../src/redis-client.js';
import { logReadReport, readSummary } from '../../src/source/report.js';
import { StateStore } from '../../src/record/store.js';
import type { PolicyFinding } from '../../src/connector.js';
import type { AudiencePlan } from '../../src/diff/plan.js';
import { checkPolicy, DEFAULT_CHECKS } from '../../src/diff/policy.js';
import {
  checksOf,
  rejectionOf,
  plansOf,
  syncDestination,
  type AudienceResult,
  type Destination,
} from '../../src/sync/run.js';
import {
  heldByRemovals,
  heldByShrink,
  recordSourceSize,
  removalBrake,
  sourceSizeOf,
} from '../../src/diff/brakes.js';
import {
  destinationsOf as sharedDestinationsOf,
  prepareSync,
  type Prepared,
} from '../../src/sync/prepare.js';
import { progressBar, table, thousands } from './output.js';
import { KeyFollower } from '../../src/history/follow.js';
import { logSnapshot, recordScoring } from '../../src/history/snapshots.js';
import { recordRunReadings } from '../../src/health/audience.js';
import { evaluateAfter } from '../../jobs/alerts.js';

export interface SyncCommandOptions {
  config?: string | undefined;
  destination?: string;
  audience?: string;
  full?: boolean;
  dryRun?: boolean;
  json?: boolean;
  /** Audiences the removal brake lets through in this run (`*`: all). */
  allowRemovals?: string[];
  /** Go ahead although the source shrank more than its max_shrink_share. */
  allowShrink?: boolean;
  /** Wait for another run of the same audiences to finish (default), or fail at once. */
  wait?: boolean;
}

export function destinationsOf(config: Config, only?: string): Destination[] {
  return sharedDestinationsOf(config, connectors, only);
}

export function redisFor(): RedisClient {
  const redis = createRedis({
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
    retryStrategy: () => null,
  });
  redis.on('error', (error: Error) => (lastError.set(redis, error), undefined));
  return redis;
}

const lastError = new WeakMap<RedisClient, Error>();

/** None of a Cluster's masters answers at the address the Cluster announces for it. */
class AnnouncedUnreachable extends Error {}

/** Connects or fails fast with a message that says what to do (CLI commands never wait for Redis). */
export async function connect(redis: RedisClient): Promise<void> {
  try {
    await redis.connect();
    // A Cluster is connected once a node told where the slots are. When none of the masters serving them
    // answers, they announce addresses this process cannot reach (NAT, containers); some not answering is
    // a failover under way, which the client rides out.
    if (redis instanceof Cluster) {
      const serving = new Set(redis.slots.map((nodes) => nodes[0]));
      const masters = redis.nodes('master').filter((n) => serving.has(`${n.options.host}:${n.options.port}`));
      const answers = await Promise.allSettled(masters.map((node) => node.ping()));
      const first = answers.find((a) => a.status === 'rejected');
      if (masters.length > 0 && answers.every((a) => a.status === 'rejected'))
        throw new AnnouncedUnreachable(
          `none of the Cluster's masters answers at the addresses the Cluster announces (${masters
            .map((n) => `${n.options.host}:${n.options.port}`)
            .join(', ')}: ${String((first?.reason as Error | undefined)?.message)})`,
        );
    }
  } catch (error) {
    redis.disconnect();
    const cause = lastError.get(redis) ?? (error as Error);
    const problem = redisConfigProblem(cause);
    if (problem) throw new ConfigError(problem);
    const announced = error instanceof AnnouncedUnreachable;
    throw new UserError(
      `cannot reach Redis at ${redisWhere()}: ${announced ? (error as Error).message : cause.message}`,
      ExitCode.failed,
      announced
        ? 'where the nodes announce addresses this process cannot reach (NAT, containers), map them: REDIS_CLUSTER_NAT=announced-host:port=reachable-host:port,…'
        : unreachableHint(cause),
    );
  }
}

async function prepare(options: SyncCommandOptions, keys?: KeyFollower): Promise<Prepared> {
  if (!options.config)
    throw new ConfigError('this command needs a config: pass --config FILE or create ./audience-sync.yaml');
  const bar = progressBar('reading');
  try {
    return await prepareSync(options.config, connectors, {
      destination: options.destination,
      audience: options.audience,
      onProgress: (p) => bar.update(p.done, p.total, p.rows),
      ...(keys ? { onCustomers: keys.follow } : {}),
    });
  } finally {
    bar.stop();
  }
}

export async function runPlan(options: SyncCommandOptions, log: Logger): Promise<ExitCode> {
  const p = await prepare(options);
  logReadReport(p.segmented.report, log);
  const redis = redisFor();
  await connect(redis);
  try {
    const store = new StateStore(redis, p.config.sync.redis_prefix);
    const brake = removalBrake(p.config.sync, options.allowRemovals);
    // Each plan is told (its counts, what the brake and the checks before every upload would do) as it
    // is made, and let go: a plan holds its audience's table, and a source of millions has many audiences.
    const plans: PlanRow[] = [];
    for (const destination of p.destinations)
      for await (const plan of plansOf(destination, {
        segmented: p.segmented,
        audiences: p.audiences,
        store,
        threads: identifyThread,
        ...(options.full ? { full: true } : {}),
        ...(options.audience !== undefined ? { audience: options.audience } : {}),
      })) {
        const spec = p.audiences.find((a) => a.name === plan.audience);
        const rules = destination.connector.sizeRules?.(destination.config);
        plans.push({
          summary: planSummary(plan),
          current: plan.current,
          held: heldByRemovals(plan, brake),
          policy: checkPolicy(plan, rules, spec?.sync ?? DEFAULT_CHECKS).findings,
        });
      }
    const shrink = options.allowShrink
      ? undefined
      : await heldByShrink(redis, p.config.sync.redis_prefix, sourceSizeOf(p.segmented), p.config);
    if (options.json)
      process.stdout.write(
        JSON.stringify({
          source: readSummary(p.segmented.report),
          plans: plans.map((plan) => ({
            ...plan.summary,
            held: plan.held ?? null,
            policy: plan.policy,
          })),
          held: shrink ?? null,
        }) + '\n',
      );
    else process.stdout.write(planTable(plans));
    for (const { summary, held } of plans)
      if (held)
        log.error(
          `${summary.destination} / ${summary.audience}: ${held.replace('nothing was sent', 'a sync would send nothing')}`,
        );
    if (shrink) log.error(shrink.replace('Nothing was sent', 'A sync would send nothing'));
    log.debug({ audiences: plans.length }, 'plan done');
    return shrink || plans.some((plan) => plan.held) ? ExitCode.failed : ExitCode.ok;
  } finally {
    redis.disconnect();
  }
}

export async function runSync(options: SyncCommandOptions, log: Logger): Promise<ExitCode> {
  const started = new Date();
  // A sync from a terminal or cron is a run like a worker's: the history and `status` show it.
  const meta: RunMeta = {
    run: `cli-${started.getTime()}-${process.pid}`,
    at: started.toISOString(),
    full: options.full ?? false,
    reason: 'cli',
  };
  let p: Prepared;
  // The snapshot's keys, made on a thread while the source is read (ended by recordScoring, or here).
  const keys = KeyFollower.start();
  try {
    p = await prepare(options, keys);
  } catch (error) {
    keys?.stop();
    await recordUnprepared(options, meta, error);
    throw error;
  }
  logReadReport(p.segmented.report, log);
  const redis = redisFor();
  await connect(redis);
  const results: AudienceResult[] = [];
  let unflushed: { error: unknown } | undefined;
  try {
    const statePrefix = statePrefixOf(p.config, options.dryRun);
    const store = new StateStore(redis, statePrefix);
    const history = queuePrefix(statePrefix);
    const failed = (destination: string, error: unknown) =>
      recordFailedRun(redis, history, p.config, { destination, audience: options.audience }, meta, error);

    const size = sourceSizeOf(p.segmented);
    const shrink = options.allowShrink
      ? undefined
      : await heldByShrink(redis, p.config.sync.redis_prefix, size, p.config);
    if (shrink) {
      for (const d of p.destinations) await failed(d.name, new Error(shrink));
      if (options.json) process.stdout.write(JSON.stringify({ results: [], held: shrink }) + '\n');
      log.error(shrink);
      return ExitCode.failed;
    }
    if (!options.dryRun) await recordSourceSize(redis, p.config.sync.redis_prefix, size);
    logSnapshot(await recordScoring(redis, history, p.config, p.segmented, 'sync', keys), log);
    for (const destination of p.destinations) {
      // One run per audience, whoever starts it: the leases workers take.
      const leases = await takeLeases(
        redis,
        leaseKeysOf(p.config, connectors, queuePrefix(statePrefix), destination.name, options.audience),
        {
          ttlMs: p.config.sync.lease_seconds * 1000,
          holder: describeHolder('audience-sync sync'),
          wait: options.wait !== false,
          onWait: (holder) => log.warn(`${destination.name}: waiting for another run to finish: ${holder}`),
        },
      );
      const abort = new AbortController();
      for (const lease of leases) lease.keep(() => abort.abort(new Error('lost the audience lease')));
      const client = options.dryRun
        ? new FileClient(
            fileConfigSchema.parse({
              type: 'file',
              path: path.join('.audience-sync', 'dry-run', destination.name),
            }),
            // Beside the config, or in the data folder where the config's folder is read-only (the image).
            process.env.AUDIENCE_SYNC_DATA ?? p.baseDir,
          )
        : destination.connector.create(destination.config, {
            destination: destination.name,
            baseDir: p.baseDir,
            log,
          });
      try {
        const done = await syncDestination(destination, client, {
          segmented: p.segmented,
          audiences: p.audiences,
          store,
          log,
          threads: identifyThread,
          removals: removalBrake(p.config.sync, options.allowRemovals),
          signal: abort.signal,
          ...(options.full ? { full: true } : {}),
          ...(options.audience !== undefined ? { audience: options.audience } : {}),
          onPlan: (plan) => {
            if (!options.json)
              log.debug(
                `${plan.destination} / ${plan.audience}: ${plan.add.length} to add, ${plan.remove.length} to remove, ${plan.unchanged} unchanged`,
              );
          },
        });
        results.push(...done);
        const run = await runRecordsOf(client, done, meta);
        await recordRun(redis, history, run.records, p.config.sync.history_runs);
        // Health readings are a view of the run: one not written is a warning, never a failed run.
        await recordRunReadings(redis, history, p.config, store, destination, run).catch((error: unknown) =>
          log.warn(`audience health not recorded: ${describeError(error)}`),
        );
      } catch (error) {
        await failed(destination.name, error);
        throw error;
      } finally {
        try {
          await client.close?.();
        } catch (error) {
          unflushed ??= { error };
        } finally {
          await Promise.all(leases.map((l) => l.release()));
        }
      }
    }
  } finally {
    keys?.stop();
    if (!options.dryRun)
      await evaluateAfter(redis, p.config, connectors, 'run', log, options.destination)
        .then((e) => (e.sent.length > 0 ? log.info(`${e.sent.length} alert message(s) sent`) : undefined))
        .catch((error: unknown) => log.warn(`alerts not evaluated: ${describeError(error)}`));
    redis.disconnect();
  }
  if (options.json)
    process.stdout.write(JSON.stringify({ source: readSummary(p.segmented.report), results }) + '\n');
  else process.stdout.write(resultTable(results));
  const code = exitCodeOf(results, p.config, log);
  // A client that could not flush (a member file the disk refused) fails the run, after its results.
  if (unflushed) throw unflushed.error;
  return code;
}

/** A dry run syncs to a `file` destination beside the config, with its own state: nothing real moves. */
function statePrefixOf(config: Config, dryRun: boolean | undefined): string {
  return dryRun ? `${config.sync.redis_prefix}:dry-run` : config.sync.redis_prefix;
}

/** A sync that failed before it could start (the source unreadable, too many bad rows): recorded as failed. */
async function recordUnprepared(options: SyncCommandOptions, meta: RunMeta, error: unknown): Promise<void> {
  if (!options.config || error instanceof ConfigError) return;
  let config: Config;
  try {
    config = loadConfig(options.config).config;
  } catch {
    return;
  }
  const redis = redisFor();
  try {
    await connect(redis);
    const prefix = queuePrefix(statePrefixOf(config, options.dryRun));
    for (const destination of Object.keys(config.destinations))
      if (options.destination === undefined || destination === options.destination)
        await recordFailedRun(
          redis,
          prefix,
          config,
          { destination, audience: options.audience },
          meta,
          error,
        );
  } catch {
    // Redis is out of reach too: the error the user sees says what failed first.
  } finally {
    redis.disconnect();
  }
}

/** Runs each destination's `check`: credentials, permissions, reachability; no side effects. */
export async function runCheck(options: SyncCommandOptions, log: Logger): Promise<ExitCode> {
  if (!options.config)
    throw new ConfigError('check needs a config: pass --config FILE or create ./audience-sync.yaml');
  const { config, dir } = loadConfig(options.config);
  const rows: { destination: string; name: string; ok: boolean; detail: string }[] = [];
  for (const destination of destinationsOf(config, options.destination)) {
    const client = destination.connector.create(destination.config, {
      destination: destination.name,
      baseDir: dir,
      log,
    });
    try {
      for (const c of await checksOf(destination, client)) rows.push({ destination: destination.name, ...c });
    } catch (error) {
      rows.push({
        destination: destination.name,
        name: 'check',
        ok: false,
        detail: (error as Error).message,
      });
    } finally {
      await client.close?.();
    }
  }
  if (options.json) process.stdout.write(JSON.stringify({ checks: rows }) + '\n');
  else
    process.stdout.write(
      table(
        ['destination', 'check', 'ok', 'detail'],
        rows.map((r) => [r.destination, r.name, r.ok ? 'yes' : 'NO', r.detail]),
      ),
    );
  return rows.every((r) => r.ok) ? ExitCode.ok : ExitCode.failed;
}

/** The exit code of a sync: 1 when an audience failed, 3 when a share of customers or members went over its limit. */
export function exitCodeOf(results: AudienceResult[], config: Config, log: Logger): ExitCode {
  const failed = results.filter((r) => r.error);
  for (const r of failed)
    log.error(
      { destination: r.destination, audience: r.audience },
      `${r.destination} / ${r.audience}: ${r.error}`,
    );
  if (failed.length > 0) return ExitCode.failed;
  let partial = false;
  for (const r of results) {
    // Kept out by choice (opted out, suppressed, without consent, or by the destination's settings): in no share.
    let chosen = 0;
    let unusable = 0;
    for (const [reason, n] of Object.entries(r.skipped))
      if (reason === 'opted out' || reason === 'suppressed' || isConsentReason(reason)) chosen += n;
      else unusable += n;
    const skipped = unusable - (r.leftOut ?? 0);
    const eligible = r.segmentSize - chosen;
    const maxSkipped = config.sync.max_skipped_share;
    if (eligible > 0 && skipped / eligible > maxSkipped) {
      partial = true;
      const [share, max] = shares(skipped / eligible, maxSkipped);
      log.warn(
        `${r.destination} / ${r.audience}: ${skipped} of ${eligible} customers have no usable identifier (${share}, more than ${max})`,
      );
    }
    const rejection = rejectionOf(r);
    const maxRejected = config.sync.max_rejected_share;
    if (rejection && rejection.share > maxRejected) {
      partial = true;
      const [share, max] = shares(rejection.share, maxRejected);
      log.warn(
        `${r.destination} / ${r.audience}: the platform rejected ${r.rejected} of ${rejection.sent} members (${share}, more than ${max}: ${skippedText(r.rejectedReasons)})`,
      );
    }
  }
  return partial ? ExitCode.partial : ExitCode.ok;
}

/** A share and the limit it went over, as percentages with the decimals it takes to tell them apart. */
function shares(share: number, max: number): [string, string] {
  const at = (digits: number) =>
    [share, max].map((v) => `${(v * 100).toFixed(digits)} %`) as [string, string];
  for (let digits = 1; digits < 6; digits++) {
    const printed = at(digits);
    if (printed[0] !== printed[1]) return printed;
  }
  return at(6);
}

function skippedText(skipped: Record<string, number>): string {
  return Object.entries(skipped)
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => `${thousands(n)} ${reason}`)
    .join(', ');
}

export function planSummary(plan: AudiencePlan) {
  return {
    destination: plan.destination,
    audience: plan.audience,
    segment_size: plan.segmentSize,
    members: plan.members,
    to_add: plan.add.length,
    to_remove: plan.remove.length,
    kept: plan.kept,
    unchanged: plan.unchanged,
    waiting: plan.waiting,
    pending: plan.pending,
    rejected_earlier: plan.rejectedEarlier,
    skipped: plan.skipped,
    full: plan.full,
  };
}

/** The checks before every upload, for a table: `min_size`, `additive_only (held)`, … (messages in --json and the log). */
function checksText(findings: readonly PolicyFinding[] | undefined): string {
  return (findings ?? []).map((f) => (f.blocked ? `${f.check} (held)` : f.check)).join(', ');
}

/** One plan as `plan` tells it: its counts, and what the removal brake and the checks would do. */
interface PlanRow {
  summary: ReturnType<typeof planSummary>;
  /** Members in our state now (the removal brake's baseline). */
  current: number;
  held: string | undefined;
  policy: PolicyFinding[];
}

function planTable(plans: PlanRow[]): string {
  return table(
    [
      'destination',
      'audience',
      'segment',
      'members',
      'to add',
      'to remove',
      'unchanged',
      'waiting',
      'skipped',
      'checks',
      'brake',
    ],
    plans.map(({ summary: s, current, held, policy }) => [
      s.destination,
      s.audience,
      thousands(s.segment_size),
      thousands(s.members),
      thousands(s.to_add),
      thousands(s.to_remove),
      thousands(s.unchanged),
      thousands(s.waiting + s.pending),
      skippedText(s.skipped),
      checksText(policy),
      held ? `HELD: ${thousands(s.to_remove)} of ${thousands(current)} would go` : '',
    ]),
  );
}

function resultTable(results: AudienceResult[]): string {
  return table(
    [
      'destination',
      'audience',
      'members',
      'added',
      'removed',
      'unchanged',
      'rejected',
      'waiting',
      'skipped',
      'seconds',
      'checks',
      'error',
    ],
    results.map((r) => [
      r.destination,
      r.audience,
      thousands(r.members),
      thousands(r.added),
      thousands(r.removed),
      thousands(r.unchanged),
      thousands(r.rejected),
      thousands(r.waiting + r.pending),
      skippedText(r.skipped),
      (r.durationMs / 1000).toFixed(1),
      checksText(r.policy),
      r.held ? 'held (see below)' : (r.error ?? ''),
    ]),
  );
}
