import { z } from 'zod';
import type {
  AudienceStats,
  BatchOutcome,
  Check,
  ConnectorClient,
  ConnectorContext,
  ContactDeletion,
  Member,
  RemoteAudience,
} from '../../src/connector.js';
import { ConnectorError } from '../../src/connector.js';
import {
  answer,
  createSdk,
  Gate,
  parse,
  problemOf,
  scrub,
  type Answer,
  type Context,
  type Sdk,
} from './api.js';
import { baseUrl, dataCentre, RESULTS_TIMEOUT_MS, type MailchimpConfig } from './config.js';
import { emailSlot, isEmailSlot, subscriberHash } from './identifiers.js';
import { Executor, type Operation } from './operations.js';

/** Rejection reasons, in the words the run record shows. */
export const REASONS = {
  missing: 'not in the Mailchimp audience',
  compliance: 'mailchimp: compliance state',
  forgotten: 'mailchimp: forgotten (permanently deleted)',
  archived: 'mailchimp: archived',
  unsubscribed: 'mailchimp: unsubscribed',
  cleaned: 'mailchimp: cleaned',
  noEmail: 'no email at hand',
  noHash: 'no subscriber hash',
} as const;

/**
 * Reasons Mailchimp gives for a contact it will not (re)subscribe or tag: the person is left out and
 * counted under the reason (skipped, not refused), and not sent again until they change.
 */
const COMPLIANCE: ReadonlySet<string> = new Set([
  REASONS.compliance,
  REASONS.forgotten,
  REASONS.archived,
  REASONS.unsubscribed,
  REASONS.cleaned,
]);

/** Mailchimp's "skip this person" answers: the contact may not be (re)added, which is not a failed run. */
function knownReason(text: string): string | undefined {
  if (/compliance/i.test(text)) return REASONS.compliance;
  if (/forgotten|permanently deleted/i.test(text)) return REASONS.forgotten;
  return undefined;
}

/** A contact's status that keeps it out of a tag when Mailchimp did not tag it (archived: always). */
function statusReason(status: unknown): string | undefined {
  if (status === 'archived') return REASONS.archived;
  if (status === 'unsubscribed') return REASONS.unsubscribed;
  if (status === 'cleaned') return REASONS.cleaned;
  return undefined;
}

const memberStatusSchema = z.looseObject({ status: z.string().optional() });
const statusOf = (body: unknown) => memberStatusSchema.safeParse(body).data?.status;

const segmentSchema = z.looseObject({
  id: z.union([z.number(), z.string()]).transform(String),
  name: z.string(),
  type: z.string().optional(),
  member_count: z.number().optional(),
});
const segmentsPageSchema = z.looseObject({
  segments: z.array(segmentSchema).default([]),
  total_items: z.number().optional(),
});
const emailsSchema = z.array(z.looseObject({ email_address: z.string() })).default([]);
/** The segment endpoint's 200: partial failure arrives inside it. */
const segmentAnswerSchema = z.looseObject({
  members_added: emailsSchema,
  members_removed: emailsSchema,
  errors: z
    .array(z.looseObject({ email_addresses: z.array(z.string()).default([]), error: z.string().default('') }))
    .default([]),
  error_count: z.number().optional(),
});
const segmentMembersPageSchema = z.looseObject({
  members: z.array(z.looseObject({ email_address: z.string() })).default([]),
  total_items: z.number().optional(),
});
const listSchema = z.looseObject({
  id: z.string(),
  name: z.string(),
  stats: z.looseObject({ member_count: z.number().optional() }).optional(),
});

type SegmentResult = { state: 'done' } | { state: 'silent' } | { state: 'error'; error: string };

export class MailchimpClient implements ConnectorClient {
  private readonly sdk: Sdk;
  private readonly gate: Gate;
  private readonly ctx: Context;
  private readonly executor: Executor;
  /** Static segments (tags) of the audience by name, read once per client. */
  private tags: Map<string, RemoteAudience> | undefined;

  constructor(
    private readonly config: MailchimpConfig,
    private readonly context: Pick<ConnectorContext, 'log'>,
    { resultsTimeoutMs = RESULTS_TIMEOUT_MS } = {},
  ) {
    const url = baseUrl(config);
    this.sdk = createSdk(config.api_key, url);
    this.gate = new Gate(config.max_connections);
    this.ctx = {
      listId: config.list_id,
      baseUrl: url,
      dataCentre: dataCentre(config.api_key),
    };
    this.executor = new Executor(this.sdk, this.gate, this.ctx, {
      listId: config.list_id,
      statusIfNew: config.status_if_new,
      threshold: config.batch_operations_threshold,
      pollMs: config.batch_poll_seconds * 1000,
      timeoutMs: config.batch_timeout_seconds * 1000,
      resultsTimeoutMs,
    });
  }

  async check(): Promise<Check[]> {
    const { dataCentre: dc, baseUrl: url } = this.ctx;
    try {
      const got = await this.answer(() => this.sdk.ping.get(), 'GET /ping');
      if (got.status >= 300) throw this.unexpected(got, 'GET /ping', `is ${url} Mailchimp's API?`);
    } catch (error) {
      const message = this.message(error);
      const unreachable = /does not resolve|cannot reach/.test(message);
      return [
        { name: 'data centre', ok: !unreachable, detail: unreachable ? message : `${dc} answers at ${url}` },
        {
          name: 'api key',
          ok: false,
          detail: unreachable ? 'not checked: Mailchimp is out of reach' : message,
        },
        { name: 'audience', ok: false, detail: 'not checked: the API key must work first' },
      ];
    }
    const checks: Check[] = [
      { name: 'data centre', ok: true, detail: `${dc} answers at ${url}` },
      { name: 'api key', ok: true, detail: 'Mailchimp accepted the API key' },
    ];
    try {
      const what = 'GET /lists/{list}';
      const fields = ['id', 'name', 'stats.member_count'];
      const body = await this.call(() => this.sdk.lists.getList(this.config.list_id, { fields }), what);
      const list = parse(listSchema, body, what);
      const count = list.stats?.member_count;
      checks.push({
        name: 'audience',
        ok: true,
        detail: `audience '${list.name}' (${list.id})${count === undefined ? '' : `, ${count} subscribed contacts`}`,
      });
    } catch (error) {
      checks.push({ name: 'audience', ok: false, detail: this.message(error) });
    }
    return checks;
  }

  async ensureAudience(name: string, knownId?: string): Promise<RemoteAudience & { created: boolean }> {
    return this.guard(async () => {
      if (knownId) {
        const got = await this.answer(
          () => this.sdk.lists.getSegment(this.config.list_id, knownId),
          'GET /lists/{list}/segments/{tag}',
        );
        if (got.status < 300) {
          const tag = parse(segmentSchema, got.body, 'GET /lists/{list}/segments/{tag}');
          if (tag.name !== name)
            this.context.log.warn(
              { audience: name, tag: tag.id },
              `the Mailchimp tag of audience '${name}' is named '${tag.name}' now: the sync keeps using it`,
            );
          return { id: tag.id, name: tag.name, created: false };
        }
        if (got.status !== 404) throw this.unexpected(got, 'GET /lists/{list}/segments/{tag}');
      }
      const tags = await this.staticSegments();
      const found =
        tags.get(name) ?? [...tags.values()].find((t) => t.name.toLowerCase() === name.toLowerCase());
      if (found) return { ...found, created: false };
      const created = await this.answer(
        () => this.sdk.lists.createSegment(this.config.list_id, { name, static_segment: [] }),
        'POST /lists/{list}/segments',
      );
      if (created.status >= 300) throw this.unexpected(created, `creating the tag '${name}'`);
      const tag = parse(segmentSchema, created.body, 'POST /lists/{list}/segments');
      tags.set(tag.name, { id: tag.id, name: tag.name });
      return { id: tag.id, name: tag.name, created: true };
    });
  }

  async add(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.guard(async () => {
      const rejected = new Map<number, string>();
      const byEmail = this.byEmail(members, rejected);
      const reject = (email: string, reason: string) => {
        for (const i of byEmail.get(email)?.indexes ?? []) rejected.set(i, reason);
      };
      const first = await this.segment(audience, [...byEmail.keys()], 'add');
      // Not tagged and not a known refusal: not a contact yet, or tagged already; the contact decides.
      const unresolved: string[] = [];
      for (const [email, result] of first) {
        if (result.state === 'done') continue;
        const known = result.state === 'error' ? knownReason(result.error) : undefined;
        if (known) reject(email, known);
        else unresolved.push(email);
      }
      if (unresolved.length > 0) {
        if (this.config.missing_members === 'skip') {
          const answers = await this.executor.run(
            unresolved.map((email) => ({ kind: 'lookup', hash: byEmail.get(email)!.hash })),
            unresolved.length,
          );
          unresolved.forEach((email, k) => {
            const got = answers[k]!;
            const said = first.get(email);
            // Not a contact, and the setting says not to make one: left out, not refused.
            if (got.status === 404) reject(email, REASONS.missing);
            else if (got.status >= 300) reject(email, this.reasonOf(got));
            else {
              const status = statusOf(got.body);
              const kept =
                status === 'archived' || said?.state === 'error' ? statusReason(status) : undefined;
              if (kept) reject(email, kept);
              else if (said?.state === 'error') reject(email, scrub(said.error));
            }
          });
        } else {
          const answers = await this.executor.run(
            unresolved.map((email) => ({ kind: 'upsert', hash: byEmail.get(email)!.hash, email })),
            unresolved.length,
          );
          const contacts: string[] = [];
          const statuses = new Map<string, string | undefined>();
          unresolved.forEach((email, k) => {
            const got = answers[k]!;
            const status = statusOf(got.body);
            // `status_if_new` leaves an archived contact archived: it cannot hold the tag.
            if (got.status >= 300) reject(email, this.reasonOf(got));
            else if (status === 'archived') reject(email, REASONS.archived);
            else {
              contacts.push(email);
              statuses.set(email, status);
            }
          });
          for (const [email, result] of await this.segment(audience, contacts, 'add'))
            if (result.state === 'error')
              reject(
                email,
                knownReason(result.error) ?? statusReason(statuses.get(email)) ?? scrub(result.error),
              );
        }
      }
      return outcome(rejected);
    });
  }

  async remove(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.guard(async () => {
      const rejected = new Map<number, string>();
      const indexes = new Map<string, number[]>();
      const hashOf = new Map<string, string>();
      const hashOnly = new Set<string>();
      members.forEach((m, i) => {
        const slot = m.slots[0];
        if (!slot) return rejected.set(i, REASONS.noHash);
        const hash = subscriberHash(slot);
        indexes.set(hash, [...(indexes.get(hash) ?? []), i]);
        const email = m.plain?.email.toLowerCase();
        if (email) hashOf.set(email, hash);
        else hashOnly.add(hash);
      });
      // Customers who vanished from the source (or changed email): the hash is all there is.
      const untag = (hashes: readonly string[]): Operation[] =>
        hashes.map((hash) => ({ kind: 'untag', hash, tag: audience.name }));
      const emails = [...hashOf.keys()];
      const segmentOps = this.segmentOps(audience, emails, 'remove');
      const answers = await this.executor.run([...segmentOps, ...untag([...hashOnly])], members.length);
      const results = this.segmentResults(audience, emails, segmentOps, answers.slice(0, segmentOps.length));
      const untagged = new Map([...hashOnly].map((hash, k) => [hash, answers[segmentOps.length + k]!]));
      // An email the segment endpoint refused is untagged by hash, which answers definitely.
      const retry = emails
        .filter((email) => results.get(email)?.state === 'error')
        .map((e) => hashOf.get(e)!);
      const retried = await this.executor.run(untag(retry), retry.length);
      retry.forEach((hash, k) => untagged.set(hash, retried[k]!));
      for (const [hash, got] of untagged) {
        // 404: not a contact of the audience, so not tagged either.
        if (got.status < 300 || got.status === 404) continue;
        for (const i of indexes.get(hash) ?? []) rejected.set(i, this.reasonOf(got));
      }
      return outcome(rejected);
    });
  }

  /**
   * The tag becomes exactly these members, whatever it held (after a lost state, or a full resync): its
   * members are listed, those not among these are untagged, then those of these not tagged yet are tagged
   * as `add` does. The emails read from Mailchimp stay in memory, in this call.
   */
  async replace(audience: RemoteAudience, members: readonly Member[]): Promise<BatchOutcome> {
    return this.guard(async () => {
      const keep = new Set(members.flatMap((m) => (m.slots[0] ? [subscriberHash(m.slots[0])] : [])));
      const tagged = new Set<string>();
      const untag: Member[] = [];
      for (const email of await this.taggedEmails(audience)) {
        // A contact's subscriber hash is the MD5 of its lowercased email, as Mailchimp defines it.
        const slot = emailSlot(email.trim().toLowerCase());
        const hash = subscriberHash(slot);
        tagged.add(hash);
        if (!keep.has(hash)) untag.push({ key: Buffer.alloc(8), slots: [slot], plain: { email } });
      }
      const untagged = await this.remove(audience, untag);
      if (untagged.rejected?.length)
        throw new ConnectorError(
          `Mailchimp: ${untagged.rejected.length} of ${untag.length} contacts outside the segment could not be ` +
            `untagged from '${audience.name}' (${[...new Set(untagged.rejected.map((r) => r.reason))].join('; ')}); ` +
            'the replace is tried again on the next run',
          'retryable',
        );
      const missing = members.flatMap((m, i) =>
        m.slots[0] && tagged.has(subscriberHash(m.slots[0])) ? [] : [i],
      );
      const added = await this.add(
        audience,
        missing.map((i) => members[i]!),
      );
      const refused = added.rejected ?? [];
      return outcome(new Map(refused.map((r) => [missing[r.index]!, r.reason])));
    });
  }

  async stats(audience: RemoteAudience): Promise<AudienceStats> {
    return this.guard(async () => {
      const got = await this.answer(
        () => this.sdk.lists.getSegment(this.config.list_id, audience.id),
        'GET /lists/{list}/segments/{tag}',
      );
      if (got.status >= 300) throw this.unexpected(got, `reading the tag '${audience.name}'`);
      const tag = parse(segmentSchema, got.body, 'GET /lists/{list}/segments/{tag}');
      return { size: tag.member_count, warnings: [] };
    });
  }

  /**
   * Deletes the member's contact from the audience (an erasure): `archive` is `DELETE …/members/{hash}`,
   * `permanent` is `POST …/members/{hash}/actions/delete-permanent`, after which Mailchimp refuses to
   * import the address again. A 404 means already gone.
   */
  async forgetContact(member: Member, mode: ContactDeletion): Promise<'deleted' | 'absent' | 'ignored'> {
    const slot = member.slots[0];
    if (!slot || !isEmailSlot(slot)) return 'ignored';
    const hash = subscriberHash(slot);
    return this.guard(async () => {
      const list = this.config.list_id;
      const what =
        mode === 'permanent'
          ? 'POST /lists/{list}/members/{hash}/actions/delete-permanent'
          : 'DELETE /lists/{list}/members/{hash}';
      const got = await this.answer(
        () =>
          mode === 'permanent'
            ? this.sdk.lists.deleteListMemberPermanent(list, hash)
            : this.sdk.lists.deleteListMember(list, hash),
        what,
      );
      if (got.status === 404) return 'absent';
      if (got.status >= 300)
        throw this.unexpected(got, `${mode === 'permanent' ? 'deleting' : 'archiving'} a contact (${what})`);
      return 'deleted';
    });
  }

  /** Emails (lowercased) of members to add, with their subscriber hash and their indexes in the batch. */
  private byEmail(members: readonly Member[], rejected: Map<number, string>) {
    const out = new Map<string, { hash: string; indexes: number[] }>();
    members.forEach((m, i) => {
      const email = m.plain?.email.toLowerCase();
      const slot = m.slots[0];
      if (!email) return rejected.set(i, REASONS.noEmail);
      if (!slot) return rejected.set(i, REASONS.noHash);
      const entry = out.get(email) ?? { hash: subscriberHash(slot), indexes: [] };
      entry.indexes.push(i);
      out.set(email, entry);
    });
    return out;
  }

  private segmentOps(audience: RemoteAudience, emails: readonly string[], op: 'add' | 'remove'): Operation[] {
    const ops: Operation[] = [];
    for (let at = 0; at < emails.length; at += this.config.batch_size) {
      const chunk = emails.slice(at, at + this.config.batch_size);
      ops.push({
        kind: 'segment',
        segmentId: audience.id,
        ...(op === 'add' ? { add: chunk } : { remove: chunk }),
      });
    }
    return ops;
  }

  /** Tags or untags emails through the segment endpoint; what became of each. */
  private async segment(
    audience: RemoteAudience,
    emails: readonly string[],
    op: 'add' | 'remove',
  ): Promise<Map<string, SegmentResult>> {
    const ops = this.segmentOps(audience, emails, op);
    return this.segmentResults(audience, emails, ops, await this.executor.run(ops, emails.length));
  }

  private segmentResults(
    audience: RemoteAudience,
    emails: readonly string[],
    ops: readonly Operation[],
    answers: readonly Answer[],
  ): Map<string, SegmentResult> {
    const results = new Map<string, SegmentResult>(emails.map((e) => [e, { state: 'silent' }]));
    answers.forEach((got, k) => {
      if (got.status >= 300)
        throw this.unexpected(
          got,
          `${ops[k]?.kind === 'segment' && ops[k].add ? 'adding members to' : 'removing members from'} the tag '${audience.name}'`,
          got.status === 404
            ? 'the tag is gone from Mailchimp; the next run creates it again, and a full resync (--full) refills it'
            : undefined,
        );
      const body = parse(segmentAnswerSchema, got.body, 'POST /lists/{list}/segments/{tag}');
      // Only the emails asked about: an answer naming others changes nothing.
      const set = (email: string, result: SegmentResult) => {
        const key = email.toLowerCase();
        if (results.has(key)) results.set(key, result);
      };
      for (const m of [...body.members_added, ...body.members_removed])
        set(m.email_address, { state: 'done' });
      for (const e of body.errors)
        for (const email of e.email_addresses) set(email, { state: 'error', error: e.error });
    });
    return results;
  }

  /** The emails of every contact holding the tag, whatever their status, page by page (up to 1,000 each). */
  private async taggedEmails(audience: RemoteAudience): Promise<string[]> {
    const what = 'GET /lists/{list}/segments/{tag}/members';
    const emails: string[] = [];
    for (let offset = 0; ;) {
      const got = await this.answer(
        () =>
          this.sdk.lists.getSegmentMembersList(this.config.list_id, audience.id, {
            count: 1000,
            ...(offset ? { offset } : {}),
            fields: ['members.email_address', 'total_items'],
            // Without these Mailchimp leaves out unsubscribed, cleaned and transactional contacts.
            include_cleaned: true,
            include_transactional: true,
            include_unsubscribed: true,
          }),
        what,
      );
      if (got.status >= 300)
        throw this.unexpected(
          got,
          `listing the members of the tag '${audience.name}'`,
          got.status === 404 ? 'the tag is gone from Mailchimp; the next run creates it again' : undefined,
        );
      const page = parse(segmentMembersPageSchema, got.body, what);
      for (const m of page.members) emails.push(m.email_address);
      offset += page.members.length;
      if (page.members.length === 0 || offset >= (page.total_items ?? 0)) break;
    }
    return emails;
  }

  /** The audience's static segments by name, following pages of 1,000. */
  private async staticSegments(): Promise<Map<string, RemoteAudience>> {
    if (this.tags) return this.tags;
    const tags = new Map<string, RemoteAudience>();
    for (let offset = 0; ;) {
      const got = await this.answer(
        () =>
          this.sdk.lists.listSegments(this.config.list_id, {
            type: 'static',
            count: 1000,
            ...(offset ? { offset } : {}),
            fields: ['segments.id', 'segments.name', 'segments.type', 'total_items'],
          }),
        'GET /lists/{list}/segments',
      );
      if (got.status === 404) throw this.unknownList();
      if (got.status >= 300) throw this.unexpected(got, 'listing the tags of the audience');
      const page = parse(segmentsPageSchema, got.body, 'GET /lists/{list}/segments');
      for (const s of page.segments) if (!tags.has(s.name)) tags.set(s.name, { id: s.id, name: s.name });
      offset += 1000;
      if (page.segments.length === 0 || offset >= (page.total_items ?? 0)) break;
    }
    this.tags = tags;
    return tags;
  }

  private answer(call: () => Promise<unknown>, what: string): Promise<Answer> {
    return this.gate.run(() => answer(call, what, this.ctx));
  }

  /** A call whose every failure is the run's: a 404 on the audience names list_id. */
  private async call(call: () => Promise<unknown>, what: string): Promise<unknown> {
    const got = await this.answer(call, what);
    if (got.status === 404) throw this.unknownList();
    if (got.status >= 300) throw this.unexpected(got, what);
    return got.body;
  }

  private unknownList(): ConnectorError {
    return new ConnectorError(
      `Mailchimp has no audience '${this.config.list_id}' for this API key: check list_id (Audience → Settings → ` +
        'Audience name and defaults → Audience ID) and that the key belongs to the account that owns it',
      'permanent',
    );
  }

  private reasonOf(got: Answer): string {
    const { title, detail } = problemOf(got.body);
    const text = [title, detail].filter(Boolean).join(': ');
    return knownReason(text) ?? (text ? scrub(text) : `HTTP ${got.status}`);
  }

  private unexpected(got: Answer, what: string, hint?: string): ConnectorError {
    return new ConnectorError(
      `Mailchimp refused ${what} (${got.status} ${this.reasonOf(got)})${hint ? `: ${hint}` : ''}`,
      'permanent',
    );
  }

  private message(error: unknown): string {
    return error instanceof ConnectorError ? error.message : scrub(String(error));
  }

  /** Only `ConnectorError`s leave the client, with scrubbed text: never the SDK's error and its request. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      if (error instanceof ConnectorError) throw error;
      throw new ConnectorError(
        `Mailchimp connector failed: ${scrub(error instanceof Error ? error.message : String(error))}`,
        'permanent',
      );
    }
  }
}

/**
 * Members not taken, by index: refused, or left out (`skipped`) because the settings or the contact's own
 * state in Mailchimp keep them out.
 */
function outcome(rejected: Map<number, string>): BatchOutcome {
  if (rejected.size === 0) return { status: 'confirmed' };
  return {
    status: 'confirmed',
    rejected: [...rejected]
      .sort(([a], [b]) => a - b)
      .map(([index, reason]) => ({
        index,
        reason,
        ...(reason === REASONS.missing || COMPLIANCE.has(reason) ? { skipped: true } : {}),
      })),
  };
}
