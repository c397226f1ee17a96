import type { Queue } from 'bullmq';
import type { RedisClient } from '../src/redis-client.js';
import { loadConfig } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { recordAudit } from '../src/privacy/audit.js';
import type { ConnectorClient, ContactDeletion, Member, RemoteAudience } from '../src/connector.js';
import { describeError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import {
  erasureRequest,
  newReceipt,
  receiptsOf,
  recordErasure,
  saveReceipt,
  type ErasureRequest,
  type Receipt,
} from '../src/privacy/erasure.js';
import { erasureDigests, standaloneSlots, type ErasureSubject } from '../src/privacy/identifiers.js';
import { extendSuppression, suppressionEntry } from '../src/privacy/suppression.js';
import { KEY_BYTES, Status, type StateRecord } from '../src/record/records.js';
import type { AudienceState, StateStore } from '../src/record/store.js';
import { destinationsOf, type ConnectorRegistry } from '../src/sync/prepare.js';
import { withRetry, type RetryPolicy } from '../src/push/retry.js';
import { push, settle, type PushTally } from '../src/push/push.js';
import type { Destination } from '../src/sync/run.js';
import { describeHolder, Lease, leaseKeysOf } from './lease.js';
import { ADMIN_QUEUE, ERASURE_JOB_OPTIONS, type AdminJob } from './queues.js';

/** What a worker needs to carry out an erasure. */
export interface ErasureContext {
  redis: RedisClient;
  store: StateStore;
  /** The queues' prefix (`{sync.redis_prefix}`), which the audience leases live under. */
  prefix: string;
  configFile: string;
  /** The connectors the process was built with (the registry the composition root chose). */
  connectors: ConnectorRegistry;
  log: Logger;
  retry?: RetryPolicy;
}

/** How an attempt ended: the receipts, and when to try again if not every destination is done. */
export interface ErasureOutcome {
  erasure: string;
  done: boolean;
  receipts: Receipt[];
  /** Seconds until the next attempt: removals the platform processes later, a failure, or a busy audience. */
  retryInSeconds?: number;
}

/**
 * Removes the person of an erasure request from every audience of every destination the request named,
 * through each connector's own remove, from what our state holds of them (the source is not read: it may
 * no longer know them). Each destination's receipt says how it went; a destination done stays done.
 */
export async function carryOutErasure(context: ErasureContext, id: string): Promise<ErasureOutcome> {
  const { redis, store, log } = context;
  const { config, dir } = loadConfig(context.configFile);
  const p = config.sync.redis_prefix;
  const request = await erasureRequest(redis, p, id);
  if (!request) throw new Error(`no erasure request '${id}' in Redis (flushed, or another redis_prefix)`);
  const entry = await suppressionEntry(redis, p, id);
  const receipts = new Map((await receiptsOf(redis, p, id)).map((r) => [r.destination, r]));
  const configured = new Map(destinationsOf(config, context.connectors).map((d) => [d.name, d]));
  if (!entry) {
    // Lifted before it was done: without its digests there is nothing to look for, and no point retrying.
    for (const r of receipts.values())
      if (r.status !== 'removed')
        await saveReceipt(redis, p, id, {
          ...r,
          status: 'failed',
          failed_at: new Date().toISOString(),
          reason: 'its suppression was lifted before the removal was done; request the erasure again',
        });
    return { erasure: id, done: false, receipts: await receiptsOf(redis, p, id) };
  }
  const keys = new Set(entry.keys);
  const hashes = new Set(entry.hashes);

  // What the state holds under the customer's key tells its identifiers, for the suppression too.
  const learned = new Set<string>();
  for (const d of keys.size > 0 ? configured.values() : []) {
    const alone = standaloneSlots(d);
    for (const audience of await store.audiencesOf(d.name))
      for await (const records of store.audience(d.name, audience).scan())
        for (const r of records)
          if (keys.has(r.key.toString('hex')))
            r.slots.forEach((s, i) => {
              if (s && alone.has(i) && !hashes.has(s.toString('hex'))) learned.add(s.toString('hex'));
            });
  }
  for (const h of learned) hashes.add(h);
  if (learned.size > 0) await extendSuppression(redis, p, id, { keys: [], hashes: learned });

  let busy = false;
  let sent = false;
  let failed = 0;
  for (const name of request.destinations) {
    const receipt = receipts.get(name) ?? newReceipt(name, request.requested_at);
    if (receipt.status === 'removed') continue;
    receipt.attempts++;
    const destination = configured.get(name);
    try {
      if (!destination)
        throw new Error(
          `destination '${name}' is no longer in the config: put it back to finish the removal`,
        );
      const alone = standaloneSlots(destination);
      const client = destination.connector.create(destination.config, {
        destination: name,
        baseDir: dir,
        log,
      });
      let left = 0;
      let waitingHere = false;
      try {
        for (const audience of await store.audiencesOf(name)) {
          const leases = await Lease.acquireAll(
            redis,
            leaseKeysOf(config, context.connectors, context.prefix, name, audience),
            config.sync.lease_seconds * 1000,
            describeHolder(`erasure ${id}`),
          );
          if (!leases) {
            busy = true;
            left++;
            continue;
          }
          try {
            const done = await removeFrom(context, destination, client, store.audience(name, audience), (r) =>
              isTheirs(r, keys, hashes, alone),
            );
            if (done.removed > 0) {
              receipt.audiences++;
              receipt.members += done.removed;
            }
            left += done.waiting;
            if (done.waiting > 0) waitingHere = sent = true;
          } finally {
            await Promise.all(leases.map((l) => l.release()));
          }
        }
        // The contact itself goes only once it is out of every audience (and not in one being changed).
        if (left === 0 && request.mailchimp_delete && client.forgetContact)
          receipt.contact = await forgetContacts(
            context,
            destination,
            client,
            hashes,
            request.mailchimp_delete,
          );
      } finally {
        await client.close?.();
      }
      const now = new Date().toISOString();
      if (left === 0) Object.assign(receipt, { status: 'removed', removed_at: now, reason: undefined });
      else if (waitingHere) Object.assign(receipt, { status: 'sent', sent_at: receipt.sent_at ?? now });
    } catch (error) {
      failed++;
      Object.assign(receipt, {
        status: 'failed',
        failed_at: new Date().toISOString(),
        reason: describeError(error),
      });
      log.warn(
        { erasure: id, destination: name, attempts: receipt.attempts },
        `erasure ${id} on ${name} failed; it will be retried`,
      );
    }
    await saveReceipt(redis, p, id, receipt);
  }
  const final = await receiptsOf(redis, p, id);
  const done = final.every((r) => r.status === 'removed');
  if (done) log.info({ erasure: id }, `erasure ${id} done on every destination`);
  const attempts = Math.max(0, ...final.map((r) => r.attempts));
  const retryInSeconds = done
    ? undefined
    : failed > 0
      ? Math.min(3600, config.privacy.erasure_retry_seconds * 2 ** Math.max(0, attempts - 1))
      : busy
        ? Math.max(1, config.sync.lease_seconds / 2)
        : sent
          ? config.sync.poll_seconds
          : config.privacy.erasure_retry_seconds;
  return { erasure: id, done, receipts: final, ...(retryInSeconds !== undefined ? { retryInSeconds } : {}) };
}

/**
 * Deletes the person's contact on a platform that keeps contacts, by each of their digests (a platform
 * ignores digests that are not its own): what was done goes on the receipt.
 */
async function forgetContacts(
  context: ErasureContext,
  destination: Destination,
  client: ConnectorClient,
  hashes: ReadonlySet<string>,
  mode: ContactDeletion,
): Promise<NonNullable<Receipt['contact']>> {
  const count = destination.connector.slots(destination.config).length;
  const done = { mode, deleted: 0, absent: 0, at: '' };
  for (const hex of hashes)
    for (const s of standaloneSlots(destination)) {
      const slots: (Buffer | undefined)[] = Array.from({ length: count }, () => undefined);
      slots[s] = Buffer.from(hex, 'hex');
      const member: Member = { key: Buffer.alloc(KEY_BYTES), slots };
      const answer = await withRetry(
        `delete a contact on ${destination.name}`,
        () => client.forgetContact!(member, mode),
        context.log,
        context.retry,
      );
      if (answer === 'deleted') done.deleted++;
      else if (answer === 'absent') done.absent++;
    }
  return { ...done, at: new Date().toISOString() };
}

/** The record is this person's: their customer key, or an identifier that stands alone and is theirs. */
function isTheirs(r: StateRecord, keys: Set<string>, hashes: Set<string>, alone: Set<number>): boolean {
  if (keys.has(r.key.toString('hex'))) return true;
  return r.slots.some((s, i) => s !== undefined && alone.has(i) && hashes.has(s.toString('hex')));
}

/**
 * Takes the person's records out of one audience: pending uploads settled first, then their members
 * removed through the connector, recorded as any run records a removal (gone, or pending on the platform).
 */
async function removeFrom(
  context: ErasureContext,
  destination: Destination,
  client: ConnectorClient,
  state: AudienceState,
  theirs: (r: StateRecord) => boolean,
): Promise<{ removed: number; waiting: number }> {
  const { log } = context;
  const remoteId = await state.remoteId();
  const call = <T>(what: string, fn: () => Promise<T>) => withRetry(what, fn, log, context.retry);
  const final = destination.connector.final(destination.config);
  if (remoteId === undefined) return { removed: 0, waiting: 0 };
  const remote: RemoteAudience = { id: remoteId, name: state.name };
  await settle(state, client, remote, final, log, call);
  const members: Member[] = [];
  const gone: StateRecord[] = [];
  let waiting = 0;
  for await (const records of state.scan())
    for (const r of records) {
      if (!theirs(r)) continue;
      const key = Buffer.from(r.key);
      if (r.status === Status.removePending) waiting++;
      // Named invalid by the platform: never on it, only in our state.
      else if (r.status === Status.rejected) gone.push({ key, status: Status.deleted, upload: 0, slots: [] });
      else members.push({ key, slots: r.slots.map((s) => (s ? Buffer.from(s) : undefined)) });
    }
  if (gone.length > 0) await state.append(gone);
  // Removed as a run removes: the same batches, and the same records of what the platform took.
  const tally: PushTally = { added: 0, removed: 0, skipped: {}, rejected: 0, rejectedReasons: {} };
  await push(
    state,
    'remove',
    members,
    destination.connector.batchSize(destination.config),
    async (batch) => {
      const outcome = await call(`remove from '${state.name}'`, () => client.remove(remote, batch));
      if (outcome.status === 'pending') waiting += batch.length;
      return outcome;
    },
    tally,
  );
  await state.checkpoint();
  if (members.length > 0)
    log.info(
      { destination: destination.name, audience: state.name, members: members.length },
      `erasure: removed ${members.length} member(s) from '${state.name}' on ${destination.name}`,
    );
  return { removed: members.length, waiting };
}

/**
 * An operator's erasure request, from the CLI or the API: the person's digests computed for every
 * configured destination, the request, receipts and suppression recorded, the removal put on the admin
 * queue for the workers, and the action written to the audit log.
 */
export async function requestErasure(
  redis: RedisClient,
  queue: Queue,
  config: Config,
  connectors: ConnectorRegistry,
  subject: ErasureSubject,
  by: { user: string; via: string },
  options: { mailchimpDelete?: ContactDeletion | undefined } = {},
): Promise<{ request: ErasureRequest; job: string }> {
  const destinations = destinationsOf(config, connectors);
  const digests = erasureDigests(subject, destinations);
  const p = config.sync.redis_prefix;
  const request = await recordErasure(
    redis,
    p,
    digests,
    destinations.map((d) => d.name),
    by,
    options,
  );
  const added = await queue.add('forget', { action: 'forget', erasure: request.id } satisfies AdminJob, {
    ...ERASURE_JOB_OPTIONS,
    jobId: `forget-${request.id}`,
  });
  const job = `${ADMIN_QUEUE}:${String(added.id)}`;
  await recordAudit(redis, p, config.privacy.audit_keep_days, {
    user: by.user,
    via: by.via,
    action: 'forget',
    detail: {
      erasure: request.id,
      given: request.given.join(', '),
      job,
      ...(request.mailchimp_delete ? { mailchimp_delete: request.mailchimp_delete } : {}),
    },
  });
  return { request, job };
}

/** After an attempt that left work: the next one, delayed (a job id per attempt, so none is lost to a duplicate). */
export async function scheduleErasureRetry(queue: Queue, outcome: ErasureOutcome): Promise<void> {
  if (outcome.retryInSeconds === undefined) return;
  await queue.add('forget', { action: 'forget', erasure: outcome.erasure } satisfies AdminJob, {
    ...ERASURE_JOB_OPTIONS,
    delay: outcome.retryInSeconds * 1000,
    jobId: `forget-${outcome.erasure}-${Date.now()}`,
  });
}
