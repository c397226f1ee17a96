import type { z } from 'zod';
import type { Logger } from './log.js';
import type { Identified, Person } from './identify/types.js';
import { redact, redactValue } from './redact.js';
import type { SlotRow } from './record/records.js';

/**
 * The connector interface: the core owns audiences, identity, state and the diff; a connector owns
 * the wire. A new platform is one folder under connectors/ exporting one `ConnectorDefinition`.
 */

/** One person as a platform receives them: identifier slots aligned with the connector's `slots`. */
export interface Member {
  /** Our stable key for the customer (8 bytes from its id: src/record/keys.ts). */
  readonly key: Buffer;
  /** Each exactly 32 bytes (a hash, or a value packed by the connector), or undefined. */
  readonly slots: readonly (Buffer | undefined)[];
  /**
   * The same slots where they lie in the identity table, for a member made from one: reading them here
   * costs no Buffer per slot (a member's `slots` are then made on first use).
   */
  readonly row?: SlotRow | undefined;
  /** Plaintext the platform needs to add someone (Mailchimp's email): in memory only, never stored. */
  readonly plain?: { email: string } | undefined;
}

/** An audience as it exists on the platform. */
export interface RemoteAudience {
  readonly id: string;
  readonly name: string;
}

/** A member the platform named invalid, by its index in the batch. */
export interface Rejection {
  index: number;
  reason: string;
  /** Left out by the destination's own setting (Mailchimp's non-contacts with `missing_members: skip`), not refused. */
  skipped?: boolean;
}

/**
 * The platform's own accounting of a batch, for the run record, where it reports members it counted as
 * invalid without saying which (Meta's `num_received` / `num_invalid_entries`). Samples are reasons only:
 * never identifiers.
 */
export interface PlatformReport {
  received?: number;
  invalid?: number;
  invalidSamples?: string[];
}

/**
 * What became of one batch. `pending`: accepted, processed later; follow it with `poll(token)`.
 * `rejected` members (by index in the batch) are recorded as such and not re-sent until they change.
 */
export type BatchOutcome =
  | { status: 'confirmed'; rejected?: Rejection[]; report?: PlatformReport }
  | { status: 'pending'; token: string; rejected?: Rejection[]; report?: PlatformReport };

export type PollOutcome =
  { status: 'processing' } | { status: 'done' } | { status: 'failed'; reason: string };

/** How an erasure deletes a contact where the platform keeps contacts (Mailchimp). */
export type ContactDeletion = 'archive' | 'permanent';

export interface AudienceStats {
  /** Members the platform counts (it may lag, and round). */
  size?: number | undefined;
  /**
   * What `size` counts when it is not people: `identifiers` where the destination holds identifiers and
   * cannot tell which belong to one person (the file destination).
   */
  counts?: 'identifiers' | undefined;
  /** Share of uploaded members the platform matched to its users, 0..1. */
  matchRate?: number | undefined;
  warnings: string[];
  /**
   * Why the platform will not serve the audience as it stands (Meta: flagged for a restricted category,
   * an operation or delivery status that is not normal), in the platform's words: a failed health check.
   */
  problems?: string[] | undefined;
}

/**
 * One check of a platform's rules the core applied before sending (a minimum size, a removal floor, an
 * additive-only audience): what it found and whether it stopped the upload. Never personal data.
 */
export interface PolicyFinding {
  /** Which rule: `min_size`, `removal_floor`, `additive_only`, `restricted_name`, `compliance`, … */
  check: string;
  /** What was found and what to do, naming the setting. */
  message: string;
  /** The rule kept the upload (or part of it) from being sent. */
  blocked: boolean;
}

/** A destination's consent settings, as its connector declares them (`ConnectorDefinition.consent`). */
export interface ConsentSettingsCheck {
  /** A row of `check`; not ok while the settings forbid uploading, which also fails every run before it sends. */
  check: Check;
  /** The source attribute columns the settings read per customer, by setting (`destinations.<name>.consent.ads`). */
  columns: { setting: string; column: string }[];
}

/** Sizes below which a platform will not use an audience (see `ConnectorDefinition.sizeRules`). */
export interface SizeRules {
  /** Members the audience needs before the platform serves it (`min_size`). */
  minMembers?: number;
  /** Removals must not take an audience from this many members to fewer (`removal_floor`). */
  removalFloor?: number;
  /** What the rule is, in the platform's words, for the finding: "Google serves a Customer Match list from 100 members". */
  why: string;
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface ConnectorClient {
  /** Credentials, permissions and reachability, without side effects. */
  check(): Promise<Check[]>;
  /**
   * Finds the audience by name (or the id remembered from an earlier run), creating it if missing;
   * idempotent. A new audience carries `epoch` (the state's mark; see `stamp`); `epoch` in the answer is
   * the mark the audience carried when found, where the platform can carry one.
   */
  ensureAudience(
    name: string,
    knownId?: string,
    epoch?: string,
  ): Promise<RemoteAudience & { created: boolean; epoch?: string | undefined }>;
  add(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome>;
  remove(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome>;
  /**
   * Makes the audience exactly these members (none: empty), whatever it held, where the platform can:
   * a full resync, and the recovery of a lost state.
   */
  replace?(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome>;
  /**
   * Empties the audience, for a platform without `replace`: the core adds the members once the platform
   * says it is done (a pending outcome is polled like any upload).
   */
  removeAll?(audience: RemoteAudience): Promise<BatchOutcome>;
  /**
   * Marks the audience on the platform with the state's epoch (a description, a header), so a later run
   * can tell whether the state that filled it is the one it has. Only where the platform can carry it.
   */
  stamp?(audience: RemoteAudience, epoch: string): Promise<void>;
  /** The outcome of a pending batch. */
  poll?(audience: RemoteAudience, token: string): Promise<PollOutcome>;
  /**
   * Deletes the person's contact itself, for an erasure that asks for it (`forget --mailchimp-delete`),
   * once their memberships are removed: `archive`, or `permanent` (the platform then refuses to import them
   * again). `absent`: already gone, which is done too; `ignored`: the member holds no identifier of this
   * platform (erasures pass every digest of the person, some of them other destinations').
   */
  forgetContact?(member: Member, mode: ContactDeletion): Promise<'deleted' | 'absent' | 'ignored'>;
  stats(audience: RemoteAudience): Promise<AudienceStats>;
  /** Flushes and releases what the client holds. */
  close?(): Promise<void>;
}

export interface ConnectorContext {
  /** The destination's name in the config. */
  destination: string;
  /** Folder of the config file, for relative paths. */
  baseDir: string;
  log: Logger;
}

export interface ConnectorDefinition<Config extends { type: string } = { type: string }> {
  readonly type: string;
  /** Validates `destinations.<name>` for this type. */
  readonly configSchema: z.ZodType<Config>;
  /** Members per add/remove request (the platform's limit, or less when configured). */
  batchSize(config: Config): number;
  /** True when add/remove results are final when they return (no processing later, no poll). */
  final(config: Config): boolean;
  /**
   * Add or remove requests of one audience the platform takes at once (default 1). With more, the next
   * batch is built and sent while earlier ones wait for their answer; every batch is still recorded only
   * once acknowledged, and removals all finish before additions start.
   */
  concurrency?(config: Config): number;
  /**
   * Minutes the platform takes after accepting an upload before the size it reports shows it: audience
   * health flags a size outside the expected band only once it has stayed there longer (default 0).
   */
  processingMinutes?(config: Config): number;
  /**
   * The destination's consent settings, where it has any: the core lists them first in `check`, refuses
   * every run while they forbid uploading (an EEA account that left them unset), and refuses a config
   * whose consent columns are not among the source's attributes (a misspelt one would withdraw everyone).
   */
  consent?(config: Config, destination: string): ConsentSettingsCheck | undefined;
  /**
   * Where the platform's API versions expire on published dates (Meta's Graph API): a notice when the
   * version this destination uses has expired or soon will, with the fix in `text`; else undefined. The
   * alerts' `version_expiry` raises it.
   */
  apiVersionNotice?(
    config: Config,
    now: Date,
  ): { version: string; expired: boolean; text: string } | undefined;
  /** The platform's size rules, which the core checks before every upload (none: no minimum). */
  sizeRules?(config: Config): SizeRules;
  /** Identifier slot names, in the order `identify` fills them. */
  slots(config: Config): readonly string[];
  /**
   * Slots that only identify someone together (Google's first name + last name + address): the core
   * treats each group as one identifier when it decides what a removal may take away. Other slots
   * stand alone.
   */
  identifierGroups?(config: Config): readonly (readonly number[])[];
  /**
   * The platform needs plaintext (`Member.plain`) to add members and, when it is at hand, to remove them:
   * the core then attaches it to removals of customers still in the source under the same identifiers.
   */
  readonly plaintext?: boolean;
  /**
   * `destination`: the connector keeps state shared by the destination's audiences (one folder, one log),
   * so runs of any of its audiences never overlap. Default: one run per audience at a time.
   */
  readonly exclusive?: 'destination';
  /**
   * The module of `identify`, relative to the connectors folder (`google-ads/identify.js`), which identify
   * threads load: it must export that very function and import no SDK. None: the connector's customers are
   * identified on the main thread (a connector that needs plaintext does not need threads).
   */
  readonly identifiers?: string;
  /**
   * Reasons of its own that `identify` gives (beyond the core's SKIP_REASONS), in the words run records
   * show: listed, they are counted by code wherever a customer is identified.
   */
  readonly skipReasons?: readonly string[];
  /** Normalises and hashes one person's identifiers per the platform's rules. */
  identify(person: Person, config: Config): Identified;
  create(config: Config, context: ConnectorContext): ConnectorClient;
}

export type ErrorKind = 'retryable' | 'rate_limited' | 'permanent';

/**
 * A platform error, classified so the core knows whether to retry, wait, or stop. Its message, hint and
 * cause are redacted here, where platform text enters our errors (and so the stack, written from the
 * message): what a platform echoed of our credentials never reaches a log, Redis or the screen.
 */
export class ConnectorError extends Error {
  readonly options: { retryAfterMs?: number; hint?: string; cause?: unknown };

  constructor(
    message: string,
    readonly kind: ErrorKind,
    options: { retryAfterMs?: number; hint?: string; cause?: unknown } = {},
  ) {
    const cause = options.cause === undefined ? undefined : redactValue(options.cause);
    super(redact(message), cause !== undefined ? { cause } : undefined);
    this.name = 'ConnectorError';
    this.options = {
      ...options,
      ...(options.hint !== undefined ? { hint: redact(options.hint) } : {}),
      ...(cause !== undefined ? { cause } : {}),
    };
  }
}
