import type { AudienceSpec } from '../audience/audiences.js';
import type {
  Check,
  ConnectorClient,
  ConnectorDefinition,
  Member,
  PlatformReport,
  PolicyFinding,
  RemoteAudience,
  ErrorKind,
} from '../connector.js';
import { ConnectorError } from '../connector.js';
import type { Logger } from '../log.js';
import { Suppression } from '../privacy/suppression.js';
import type { Segmented } from '../score/pipeline.js';
import { Status } from '../record/records.js';
import type { AudienceState, StateStore } from '../record/store.js';
import { DEFAULT_REMOVAL_BRAKE, heldByRemovals, heldByReplace, type RemovalBrake } from '../diff/brakes.js';
import { Identifier } from '../identify/table.js';
import type { MemoryBudget } from '../identify/budget.js';
import { leftRecords, mergeAudience, planAudience, type AudiencePlan } from '../diff/plan.js';
import { membershipOf, type Membership } from '../audience/audiences.js';
import { checkPolicy, DEFAULT_CHECKS } from '../diff/policy.js';
import { withRetry, type RetryPolicy } from '../push/retry.js';
import { push, settle } from '../push/push.js';

/** A configured destination with its connector and validated settings. */
export interface Destination {
  name: string;
  connector: ConnectorDefinition<{ type: string }>;
  config: { type: string };
}

/** Members sent to the platform in a run, and the share of them it rejected; none when nothing was sent. */
export function rejectionOf(
  r: Pick<AudienceResult, 'added' | 'removed' | 'rejected'>,
): { sent: number; share: number } | undefined {
  const sent = r.added + r.removed + r.rejected;
  return sent > 0 ? { sent, share: r.rejected / sent } : undefined;
}

/** A result before the run did anything: every count 0. */
export function emptyResult(destination: string, audience: string): AudienceResult {
  return {
    destination,
    audience,
    segmentSize: 0,
    members: 0,
    plannedAdds: 0,
    plannedRemoves: 0,
    added: 0,
    removed: 0,
    unchanged: 0,
    waiting: 0,
    pending: 0,
    skipped: {},
    rejected: 0,
    rejectedReasons: {},
    failed: 0,
    inFlight: 0,
    durationMs: 0,
  };
}

/** A destination's `check`: its consent settings first (where it has any), then the client's own rows. */
export async function checksOf(destination: Destination, client: ConnectorClient): Promise<Check[]> {
  const consent = destination.connector.consent?.(destination.config, destination.name);
  return [...(consent ? [consent.check] : []), ...(await client.check())];
}

/** What one run did to one audience: enough to chart sizes and changes over time. */
export interface AudienceResult {
  destination: string;
  audience: string;
  remoteId?: string;
  segmentSize: number;
  members: number;
  plannedAdds: number;
  plannedRemoves: number;
  added: number;
  removed: number;
  unchanged: number;
  waiting: number;
  pending: number;
  skipped: Record<string, number>;
  /** Of `skipped`, members the destination's settings left out when sent: the user's choice, in no share. */
  leftOut?: number;
  rejected: number;
  /** Rejected members by the platform's reason. */
  rejectedReasons: Record<string, number>;
  /** What the platform said it received, in total, where it says (Meta's `num_received`, …). */
  platform?: PlatformReport;
  /** Members of batches the platform did not take (the run stopped on an error). */
  failed: number;
  /** Uploads the platform is still processing after this run (a later run or poll settles them). */
  inFlight: number;
  durationMs: number;
  error?: string;
  /** Why a brake left the audience untouched (also the error). */
  held?: string;
  /** Why the audience was (or is being) replaced whole: its state was lost, or another state wrote it. */
  replaced?: string;
  /** What the platform's rules found before sending (see `PolicyFinding`). */
  policy?: PolicyFinding[];
  /** The platform's kind of error (`permanent`: a retry cannot fix it); none for other errors. */
  errorKind?: ErrorKind;
}

export interface SyncOptions {
  segmented: Segmented;
  audiences: readonly AudienceSpec[];
  store: StateStore;
  log: Logger;
  /** Re-send everything (or replace, where the platform can). */
  full?: boolean;
  /** Only this audience. */
  audience?: string;
  retry?: RetryPolicy;
  /** Audiences that would lose too many members are left untouched (default: the config's defaults). */
  removals?: RemovalBrake;
  signal?: AbortSignal;
  onPlan?: (plan: AudiencePlan) => void;
  /** What the process's runs may hold in identity tables at once (a worker's; none: no limit). */
  budget?: MemoryBudget;
  /**
   * Identify in worker threads running this script (`identifyThread`), which loads the connector's
   * `identifiers` module; inline without it, or for a connector without one.
   */
  threads?: URL | undefined;
}

/**
 * Plans every audience of a destination without touching the platform or the state, one at a time: each
 * plan holds its audience's identity table until the caller lets it go.
 */
export async function* plansOf(
  destination: Destination,
  options: Omit<SyncOptions, 'log'>,
): AsyncGenerator<AudiencePlan> {
  const identifier = identifierFor(destination, options.segmented, options.threads);
  const specs = audiencesOn(destination, options);
  for (const [k, spec] of specs.entries()) {
    if (k === specs.length - 1) identifier.lastAudience();
    const state = options.store.audience(destination.name, spec.name);
    yield await planOn(destination, spec, identifier, state, options);
  }
}

/** Every plan of `plansOf`, kept together (their tables too: for small sources and tests). */
export async function planDestination(
  destination: Destination,
  options: Omit<SyncOptions, 'log'>,
): Promise<AudiencePlan[]> {
  const plans: AudiencePlan[] = [];
  for await (const plan of plansOf(destination, options)) plans.push(plan);
  return plans;
}

/** Syncs every audience of a destination, one after another, and returns what happened to each. */
export async function syncDestination(
  destination: Destination,
  client: ConnectorClient,
  options: SyncOptions,
): Promise<AudienceResult[]> {
  const identifier = identifierFor(destination, options.segmented, options.threads);
  const results: AudienceResult[] = [];
  const specs = audiencesOn(destination, options);
  // The audiences after this one whose identification was asked for ahead, by index: their members, and
  // what their tables took of the process's budget (`sync.table_memory_mb`), which each one's run holds as
  // its own.
  const later = new Map<number, { membership: Membership; budget?: () => void }>();
  // Audiences before this index have had their identification asked for ahead.
  let asked = 0;
  try {
    for (const [k, spec] of specs.entries()) {
      const current = later.get(k);
      later.delete(k);
      if (k === specs.length - 1) identifier.lastAudience();
      // Once this audience is planned, the next ones' identification starts on the worker threads, which
      // would otherwise wait while this one is sent and journalled: as many as `Identifier.ahead` takes, in
      // order, topped up after each audience, and, with a budget, as far as its memory is free now.
      const ahead = () => {
        for (asked = Math.max(asked, k + 1); asked < specs.length; asked++) {
          let next = later.get(asked);
          if (!next)
            later.set(asked, (next = { membership: membershipOf(specs[asked]!, options.segmented) }));
          const { members } = next.membership;
          const budget = options.budget?.tryTake(identifier.runBytes(members.length));
          if (options.budget && !budget) break;
          if (!identifier.ahead(members)) {
            budget?.();
            break;
          }
          if (budget) next.budget = budget;
        }
      };
      results.push(
        await syncAudience(
          destination,
          client,
          spec,
          identifier,
          options,
          current?.membership,
          ahead,
          current?.budget,
        ),
      );
      options.signal?.throwIfAborted();
    }
  } finally {
    // A run stopped before the audiences identified ahead had theirs.
    for (const { budget } of later.values()) budget?.();
  }
  return results;
}

/** One audience through the stages up to its plan: audience → identify → diff (the state merged) → identify (those leaving) → diff (removals). */
async function planOn(
  destination: Destination,
  spec: AudienceSpec,
  identifier: Identifier,
  state: AudienceState,
  options: Pick<SyncOptions, 'segmented' | 'full' | 'store'>,
  membership = membershipOf(spec, options.segmented),
): Promise<AudiencePlan> {
  const final = destination.connector.final(destination.config);
  // Read per audience, under its lease: an erasure recorded while a run goes on holds for what it has left.
  const suppressed = await Suppression.load(options.store.redis, options.store.prefix);
  const checks = spec.sync ?? DEFAULT_CHECKS;
  // A block may hold removals: those privacy requires must be told apart, to go regardless.
  const classify =
    !checks.removals || (checks.minSize === 'block' && destination.connector.sizeRules !== undefined);
  const { table, byKey } = await identifier.identify(membership.members, suppressed);
  const merged = await mergeAudience(table, byKey, state, {
    destination: destination.name,
    name: spec.name,
    segmentSize: membership.segmentSize,
    optedOut: membership.optedOut,
    full: options.full ?? false,
  });
  const leavers = await identifier.leavers(leftRecords(merged), suppressed, { withdrawn: classify });
  return planAudience(merged, leavers, final, { suppressed, removals: checks.removals, classify });
}

function identifierFor(destination: Destination, segmented: Segmented, threads?: URL): Identifier {
  const { connector, config } = destination;
  return new Identifier(segmented, {
    identify: (person) => connector.identify(person, config),
    slotCount: connector.slots(config).length,
    groups: connector.identifierGroups?.(config),
    plaintext: connector.plaintext ?? false,
    reasons: connector.skipReasons,
    threaded:
      threads && connector.identifiers
        ? { script: threads, rules: connector.identifiers, config }
        : undefined,
  });
}

function audiencesOn(
  destination: Destination,
  options: Pick<SyncOptions, 'audiences' | 'audience'>,
): AudienceSpec[] {
  return options.audiences.filter(
    (a) =>
      a.destinations.includes(destination.name) &&
      (options.audience === undefined || a.name === options.audience),
  );
}

async function syncAudience(
  destination: Destination,
  client: ConnectorClient,
  spec: AudienceSpec,
  identifier: Identifier,
  options: SyncOptions,
  /** The audience's members, when they were found ahead (`membershipOf`). */
  membership?: Membership,
  /** Called once the plan is made: starts the next audiences' identifications (`Identifier.ahead`). */
  ahead?: () => void,
  /** What this audience's table took of `options.budget` when it was identified ahead: the run's to give back. */
  budget?: () => void,
): Promise<AudienceResult> {
  const started = performance.now();
  const { log, store } = options;
  const state = store.audience(destination.name, spec.name);
  const result = emptyResult(destination.name, spec.name);
  // Every platform call is a point where a shutdown may stop the run: the state is saved per batch.
  const call = <T>(what: string, fn: () => Promise<T>) => {
    options.signal?.throwIfAborted();
    return withRetry(what, fn, log, options.retry, options.signal);
  };
  /** Marks the platform's audience with the state's epoch, where the platform can carry one. */
  const stamp = async (remote: RemoteAudience, epoch: string) => {
    if (client.stamp) await call(`mark '${spec.name}'`, () => client.stamp!(remote, epoch));
  };
  let plan: AudiencePlan | undefined;
  /** Gives back what the run took of the budget for its table (once it has ended). */
  let release = budget;
  // What this run sends, once the checks have held back what they hold.
  let planned = { adds: 0, removes: 0 };
  const checks = spec.sync ?? DEFAULT_CHECKS;
  // An additive-only audience is never emptied: a full resync or a lost state re-sends additions only.
  const additive = !checks.removals;
  try {
    // Consent settings that forbid uploading (an EEA account that left them unset) stop the run before
    // the platform is called at all.
    const consent = destination.connector.consent?.(destination.config, destination.name);
    if (consent && !consent.check.ok) throw new ConnectorError(consent.check.detail, 'permanent');
    const known = await state.remoteId();
    // Named before the platform is asked, so that a run it refuses (a flagged audience) is read after all.
    if (known !== undefined) result.remoteId = known;
    const epoch = await state.epoch();
    const remote = await call(`ensure audience '${spec.name}'`, () =>
      client.ensureAudience(spec.name, known, epoch),
    );
    const lost = await lostState(state, known, remote, epoch);
    if (remote.id !== known) await state.setRemoteId(remote.id);
    // A new audience where one was known (deleted on the platform and created again): nothing our
    // state says is on the platform is there, so this run sends everyone.
    const recreated = known !== undefined && remote.id !== known;
    if (recreated)
      log.warn(
        { destination: destination.name, audience: spec.name },
        `audience '${spec.name}' on ${destination.name} is new (the one we knew is gone): sending every member`,
      );
    result.remoteId = remote.id;
    if (remote.created)
      log.info(
        { destination: destination.name, audience: spec.name },
        `created audience '${spec.name}' on ${destination.name}`,
      );
    if (lost) {
      log.warn(
        { destination: destination.name, audience: spec.name },
        `'${spec.name}' on ${destination.name}: ${lost}; replacing the audience with its segment`,
      );
      await state.startReplace(lost);
    }

    await settle(state, client, remote, destination.connector.final(destination.config), log, call);
    const replace = await state.replacing();
    if (replace) {
      result.replaced = replace;
      const uploads = [...(await state.uploads()).values()];
      // The platform is still replacing (or emptying) it: nothing else goes until it is done.
      if (uploads.some((u) => u.op === 'replace' || u.op === 'removeAll')) return result;
      if (!client.replace && !client.removeAll && !additive)
        throw new ConnectorError(
          `'${spec.name}' must be replaced (${replace}), and ${destination.connector.type} can neither replace nor empty an audience`,
          'permanent',
        );
      // Whatever the state held of an unfinished replace is void: it starts again from nothing.
      await state.startReplace(replace);
    }

    const audience = membership ?? membershipOf(spec, options.segmented);
    if (options.budget && !release) {
      const bytes = identifier.runBytes(audience.members.length);
      const mb = (b: number) => `${Math.ceil(b / 2 ** 20).toLocaleString('en-US')} MB`;
      release = await options.budget.take(bytes, options.signal, (held) =>
        log.info(
          { destination: destination.name, audience: spec.name, bytes, held },
          `'${spec.name}' on ${destination.name} waits for memory: its identity table needs about ${mb(bytes)}, and other runs hold ${mb(held)} of sync.table_memory_mb (${mb(options.budget!.limit)})`,
        ),
      );
    }
    plan = await planOn(
      destination,
      spec,
      identifier,
      state,
      recreated || replace ? { ...options, full: true } : options,
      audience,
    );
    ahead?.();
    options.onPlan?.(plan);
    Object.assign(result, {
      segmentSize: plan.segmentSize,
      members: plan.members,
      plannedAdds: plan.add.length,
      plannedRemoves: plan.remove.length,
      unchanged: plan.unchanged,
      waiting: plan.waiting,
      pending: plan.pending,
      skipped: { ...plan.skipped },
    });
    const brake = options.removals ?? DEFAULT_REMOVAL_BRAKE;
    const held =
      heldByRemovals(plan, brake) ??
      (replace && !additive
        ? await heldByReplace(
            () => client.stats(remote),
            plan,
            brake,
            () => plan!.add.distinctIdentifiers(),
          )
        : undefined);
    if (held) {
      result.held = held;
      result.error = held;
      return result;
    }
    const policy = checkPolicy(plan, destination.connector.sizeRules?.(destination.config), checks);
    if (policy.findings.length > 0) result.policy = policy.findings;
    for (const f of policy.findings)
      log[f.check === 'additive_only' ? 'info' : 'warn'](
        { destination: destination.name, audience: spec.name, check: f.check, blocked: f.blocked },
        `'${spec.name}' on ${destination.name}: ${f.message}`,
      );
    if (additive && plan.full)
      log.info(
        { destination: destination.name, audience: spec.name },
        `'${spec.name}' on ${destination.name} is additive only (sync.removals: false): the full resync re-sends every member as additions, without emptying the audience`,
      );
    const size = destination.connector.batchSize(destination.config);
    const concurrency = Math.max(1, destination.connector.concurrency?.(destination.config) ?? 1);
    const removeBatches = (members: Member[]) =>
      push(
        state,
        'remove',
        members,
        size,
        (batch) => call('remove', () => client.remove(remote, batch)),
        result,
        [],
        concurrency,
      );
    if (policy.held) {
      // Like a brake, but removals privacy requires still go: the state keeps everything else as it was.
      planned = { adds: 0, removes: plan.required };
      await removeBatches(plan.remove.slice(0, plan.required));
      result.held = policy.held;
      result.error = policy.held;
      return result;
    }
    const removals =
      policy.hold === 'left' ? plan.remove.slice(0, plan.remove.length - plan.left) : plan.remove;
    planned = { adds: plan.add.length, removes: removals.length };
    if (replace && !client.replace && !additive) {
      const outcome = await call('remove all', () => client.removeAll!(remote));
      if (outcome.status === 'pending') {
        const id = await state.nextUploadId();
        const at = new Date().toISOString();
        await state.append([], { id, token: outcome.token, op: 'removeAll', count: 0, at });
      } else await state.replaced();
      await stamp(remote, epoch);
      // Members go once the platform says the audience is empty: a later run, or now when it said so.
      if (outcome.status === 'pending') {
        result.waiting += plan.add.length;
        return result;
      }
    }
    if (plan.forget.length > 0)
      await state.append(plan.forget.map((key) => ({ key, status: Status.deleted, upload: 0, slots: [] })));

    const adds = plan.add;
    // A replace with nobody to add would empty the audience through an empty upload: removals say it
    // plainly, unless the audience must be replaced because nobody knows what it holds. Nor does a
    // replace go where it would drop members a check keeps (additive only, a removal floor).
    if (client.replace && !additive && !policy.hold && (replace || (plan.full && plan.add.length > 0))) {
      const outcome = await push(
        state,
        'replace',
        adds,
        plan.add.length,
        (batch) => call('replace', () => client.replace!(remote, batch)),
        result,
        plan.remove,
      );
      // A replace the platform processes later is done when its upload settles (see settle()).
      if (replace && outcome === 'confirmed') await state.replaced();
      if (replace) await stamp(remote, epoch);
    } else {
      await removeBatches(removals);
      await push(
        state,
        'add',
        adds,
        size,
        (batch) => call('add', () => client.add(remote, batch)),
        result,
        [],
        concurrency,
      );
      // An additive-only audience whose state was lost holds what it held and everything sent now.
      if (replace && additive) {
        await state.replaced();
        await stamp(remote, epoch);
      }
    }
    // An audience made before audiences carried the epoch gets it now.
    if (!replace && remote.epoch === undefined && !remote.created) await stamp(remote, epoch);
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
    if (error instanceof ConnectorError) result.errorKind = error.kind;
    if (plan)
      result.failed =
        planned.adds +
        planned.removes -
        result.added -
        result.removed -
        result.rejected -
        (result.leftOut ?? 0);
    if (!(error instanceof ConnectorError)) log.error({ err: error }, `sync of '${spec.name}' failed`);
  } finally {
    try {
      await state.checkpoint();
      result.inFlight = (await state.uploads()).size;
    } finally {
      release?.();
    }
    result.durationMs = Math.round(performance.now() - started);
  }
  return result;
}

/**
 * Why the platform's audience holds what this state cannot account for, or undefined. The platform had
 * the audience before this state knew it (and it is not one this state made: a crash between creating
 * and recording it); it carries another state's epoch; the state's records are gone; or the state is in a record
 * format this version does not read.
 */
async function lostState(
  state: AudienceState,
  known: string | undefined,
  remote: { id: string; created: boolean; epoch?: string | undefined },
  epoch: string,
): Promise<string | undefined> {
  const outdated = await state.outdated();
  if (outdated) return outdated;
  if (known === undefined && !remote.created && remote.epoch !== epoch)
    return 'the platform already has this audience and our state has no record of it (the state was lost, or another setup made it)';
  if (remote.epoch !== undefined && remote.epoch !== epoch)
    return `the audience carries the epoch of another state (${remote.epoch}; ours is ${epoch}): another setup, or a state since lost, wrote it`;
  if (await state.lost())
    return 'our state of this audience lost its records (evicted, or a partial restore)';
  return undefined;
}
