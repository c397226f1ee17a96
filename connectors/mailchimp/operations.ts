import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { ConnectorError } from '../../src/connector.js';
import {
  answer,
  problemOf,
  scrub,
  callFailure,
  parse,
  type Answer,
  type Context,
  type Gate,
  type Sdk,
  type WireOperation,
} from './api.js';
import { requestBytes } from '../http.js';
import { readTarGz } from './tar.js';

/** One request about members; sent on its own, or as one operation of a `/batches` job. */
export type Operation =
  /** Bulk tag or untag by email: `POST /lists/{list}/segments/{segment}`. */
  | { kind: 'segment'; segmentId: string; add?: string[]; remove?: string[] }
  /** Create the contact if missing, never touching an existing contact's status. */
  | { kind: 'upsert'; hash: string; email: string }
  /** Whether the contact exists. */
  | { kind: 'lookup'; hash: string }
  /** Take the tag off by subscriber hash alone (the email is not at hand). */
  | { kind: 'untag'; hash: string; tag: string };

/** What each operation is called in errors and logs: the endpoint, never an identifier. */
export const DESCRIBE: Record<Operation['kind'], string> = {
  segment: 'POST /lists/{list}/segments/{tag}',
  upsert: 'PUT /lists/{list}/members/{hash}',
  lookup: 'GET /lists/{list}/members/{hash}',
  untag: 'POST /lists/{list}/members/{hash}/tags',
};

export interface ExecutorOptions {
  listId: string;
  statusIfNew: string;
  /** Operations about more members than this go through `/batches`. */
  threshold: number;
  pollMs: number;
  timeoutMs: number;
  /** How long the download of a job's results may take. */
  resultsTimeoutMs: number;
}

const startedSchema = z.looseObject({ id: z.string() });
const batchSchema = z.looseObject({
  id: z.string(),
  status: z.string(),
  total_operations: z.number().optional(),
  finished_operations: z.number().optional(),
  errored_operations: z.number().optional(),
  response_body_url: z.string().optional(),
});
const resultsSchema = z.array(
  z.looseObject({
    status_code: z.number(),
    operation_id: z.string().nullable().optional(),
    response: z.string().optional(),
  }),
);

/** Runs operations directly (at most `max_connections` at once) or as one `/batches` job. */
export class Executor {
  /** Jobs sent and not yet finished, by the fingerprint of their operations: a retried call follows its job. */
  private readonly jobs = new Map<string, string>();

  constructor(
    private readonly sdk: Sdk,
    private readonly gate: Gate,
    private readonly ctx: Context,
    private readonly options: ExecutorOptions,
  ) {}

  /** The answer to each operation, in order; `members` (how many people they concern) picks the route. */
  async run(operations: readonly Operation[], members: number): Promise<Answer[]> {
    if (operations.length === 0) return [];
    return members > this.options.threshold ? this.viaBatches(operations) : this.direct(operations);
  }

  private async direct(operations: readonly Operation[]): Promise<Answer[]> {
    let failed: unknown;
    return Promise.all(
      operations.map((op) =>
        this.gate.run(async () => {
          // Once one request failed the call is retried whole: the rest need not be sent.
          if (failed !== undefined) throw failed;
          try {
            return await answer(() => this.send(op), DESCRIBE[op.kind], this.ctx);
          } catch (error) {
            failed ??= error;
            throw error;
          }
        }),
      ),
    );
  }

  private send(op: Operation): Promise<unknown> {
    const { lists } = this.sdk;
    const list = this.options.listId;
    switch (op.kind) {
      case 'segment':
        return lists.batchSegmentMembers(segmentBody(op), list, op.segmentId);
      case 'upsert':
        return lists.setListMember(list, op.hash, upsertBody(op, this.options.statusIfNew));
      case 'lookup':
        return lists.getListMember(list, op.hash, { fields: ['status'] });
      case 'untag':
        return lists.updateListMemberTags(list, op.hash, untagBody(op));
    }
  }

  private wire(op: Operation, index: number): WireOperation {
    const list = encodeURIComponent(this.options.listId);
    const operation_id = String(index);
    switch (op.kind) {
      case 'segment':
        return {
          method: 'POST',
          path: `/lists/${list}/segments/${encodeURIComponent(op.segmentId)}`,
          operation_id,
          body: JSON.stringify(segmentBody(op)),
        };
      case 'upsert':
        return {
          method: 'PUT',
          path: `/lists/${list}/members/${op.hash}`,
          operation_id,
          body: JSON.stringify(upsertBody(op, this.options.statusIfNew)),
        };
      case 'lookup':
        return {
          method: 'GET',
          path: `/lists/${list}/members/${op.hash}`,
          operation_id,
          params: { fields: 'status' },
        };
      case 'untag':
        return {
          method: 'POST',
          path: `/lists/${list}/members/${op.hash}/tags`,
          operation_id,
          body: JSON.stringify(untagBody(op)),
        };
    }
  }

  /** One `/batches` job: sent (or followed, when a retried call sent it already), waited for, read back. */
  private async viaBatches(operations: readonly Operation[]): Promise<Answer[]> {
    const wire = operations.map((op, i) => this.wire(op, i));
    const fingerprint = createHash('sha256').update(JSON.stringify(wire)).digest('hex');
    let id = this.jobs.get(fingerprint);
    if (id === undefined) {
      const started = await this.gate.run(() =>
        answer(() => this.sdk.batches.start({ operations: wire }), 'POST /batches', this.ctx),
      );
      this.failIfRejected(started, 'POST /batches');
      id = parse(startedSchema, started.body, 'POST /batches').id;
      this.jobs.set(fingerprint, id);
    }
    let job: z.infer<typeof batchSchema>;
    try {
      job = await this.waitFor(id);
    } catch (error) {
      // A job Mailchimp no longer knows is sent again on the retry.
      if (error instanceof ConnectorError && error.options.hint === 'batch gone')
        this.jobs.delete(fingerprint);
      throw error;
    }
    const results = await this.results(job.id, job.response_body_url);
    this.jobs.delete(fingerprint);
    return operations.map((op, i) => {
      const result = results.get(String(i));
      if (!result)
        throw new ConnectorError(
          `Mailchimp batch ${job.id} has no result for operation ${i} of ${operations.length}: the call is sent again`,
          'retryable',
        );
      const what = `${DESCRIBE[op.kind]} in batch ${job.id}`;
      const failure = callFailure(result, what, this.ctx);
      if (failure) throw failure;
      return result;
    });
  }

  private async waitFor(id: string): Promise<z.infer<typeof batchSchema>> {
    const deadline = Date.now() + this.options.timeoutMs;
    for (;;) {
      const got = await this.gate.run(() =>
        answer(() => this.sdk.batches.status(id), 'GET /batches/{id}', this.ctx),
      );
      if (got.status === 404)
        throw new ConnectorError(`Mailchimp no longer knows batch ${id}: it is sent again`, 'retryable', {
          hint: 'batch gone',
        });
      this.failIfRejected(got, 'GET /batches/{id}');
      const job = parse(batchSchema, got.body, 'GET /batches/{id}');
      if (job.status === 'finished') return job;
      if (Date.now() + this.options.pollMs > deadline)
        throw new ConnectorError(
          `Mailchimp batch ${id} is still ${job.status} after ${Math.round(this.options.timeoutMs / 1000)} s ` +
            `(${job.finished_operations ?? 0}/${job.total_operations ?? '?'} operations): the call is retried ` +
            'and follows the same batch (raise batch_timeout_seconds for larger runs)',
          'retryable',
        );
      await sleep(this.options.pollMs);
    }
  }

  /** The per-operation results of a finished job: a tar.gz of JSON arrays, at a pre-signed URL (no credentials). */
  private async results(id: string, url: string | undefined): Promise<Map<string, Answer>> {
    if (!url)
      throw new ConnectorError(`Mailchimp batch ${id} finished without a response_body_url`, 'retryable');
    const got = await requestBytes(url, { timeoutMs: this.options.resultsTimeoutMs });
    if (!got.answered || !got.ok)
      throw new ConnectorError(
        `cannot download the results of Mailchimp batch ${id} (${got.answered ? `HTTP ${got.status}` : got.reason})`,
        'retryable',
      );
    const archive = got.body;
    const out = new Map<string, Answer>();
    let files: { name: string; data: Buffer }[];
    try {
      files = readTarGz(archive);
    } catch (error) {
      throw new ConnectorError(
        `the results of Mailchimp batch ${id} are not a readable tar.gz (${error instanceof Error ? error.message : 'failed'})`,
        'retryable',
      );
    }
    for (const file of files) {
      if (!file.name.endsWith('.json')) continue;
      let json: unknown;
      try {
        json = JSON.parse(file.data.toString('utf8'));
      } catch {
        throw new ConnectorError(`a result file of Mailchimp batch ${id} is not JSON`, 'retryable');
      }
      for (const r of parse(resultsSchema, json, `the results of batch ${id}`)) {
        if (r.operation_id == null) continue;
        out.set(r.operation_id, { status: r.status_code, body: jsonOrUndefined(r.response) });
      }
    }
    return out;
  }

  private failIfRejected(got: Answer, what: string): void {
    if (got.status >= 300)
      throw new ConnectorError(
        `Mailchimp refused ${what} (${got.status} ${scrub(describe(got.body))})`,
        'permanent',
      );
  }
}

function segmentBody(op: Extract<Operation, { kind: 'segment' }>) {
  return {
    ...(op.add?.length ? { members_to_add: op.add } : {}),
    ...(op.remove?.length ? { members_to_remove: op.remove } : {}),
  };
}

/** `status_if_new` only: `status` would change the subscription of a contact who exists. */
function upsertBody(op: Extract<Operation, { kind: 'upsert' }>, statusIfNew: string) {
  return { email_address: op.email, status_if_new: statusIfNew };
}

/** The `{tags: […]}` wrapper matters: a bare array also gets a 204 and changes nothing. */
function untagBody(op: Extract<Operation, { kind: 'untag' }>) {
  return { tags: [{ name: op.tag, status: 'inactive' as const }], is_syncing: true };
}

function describe(body: unknown): string {
  const { title, detail } = problemOf(body);
  return [title, detail].filter(Boolean).join(': ');
}

function jsonOrUndefined(text: string | undefined): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
