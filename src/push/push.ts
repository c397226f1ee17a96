import type {
  BatchOutcome,
  ConnectorClient,
  Member,
  PlatformReport,
  PollOutcome,
  RemoteAudience,
} from '../connector.js';
import type { Logger } from '../log.js';
import { Status, type RecordToWrite } from '../record/records.js';
import type { AudienceState } from '../record/store.js';
import type { AudienceResult } from '../sync/run.js';

/** What pushing members counts (an audience's result, or an erasure's own tally). */
export type PushTally = Pick<
  AudienceResult,
  'added' | 'removed' | 'skipped' | 'leftOut' | 'rejected' | 'rejectedReasons' | 'platform'
>;

/**
 * Sends members in batches, up to `concurrency` at once, and records each batch the platform
 * acknowledged: final results become confirmed (or gone, for removals); pending ones wait on their
 * upload, polled in a later run. After a failed batch no new one starts; those in flight finish and are
 * recorded, and the first failure is thrown.
 */
export async function push(
  state: AudienceState,
  op: 'add' | 'remove' | 'replace',
  members: { length: number; slice(from: number, to: number): readonly Member[] },
  batchSize: number,
  send: (batch: readonly Member[]) => ReturnType<ConnectorClient['add']>,
  result: PushTally,
  replaced: readonly Member[] = [],
  concurrency = 1,
): Promise<BatchOutcome['status'] | undefined> {
  if (op === 'replace') return sendOne(members.slice(0, members.length));
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  for (let at = 0; at < members.length && !failure; at += batchSize) {
    const sending = sendOne(members.slice(at, at + batchSize)).then(
      () => undefined,
      (error: unknown) => {
        failure ??= { error };
      },
    );
    inFlight.add(sending);
    void sending.finally(() => inFlight.delete(sending));
    if (inFlight.size >= concurrency) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure) throw failure.error;
  return undefined;

  async function sendOne(batch: readonly Member[]): Promise<BatchOutcome['status']> {
    const outcome = await send(batch);
    // Left out by choice or refused, the member is not re-sent until it changes; only refusals count as such.
    const notTaken = new Map((outcome.rejected ?? []).map((r) => [r.index, r]));
    const rejected = new Map(
      (outcome.rejected ?? []).filter((r) => !r.skipped).map((r) => [r.index, r.reason]),
    );
    const upload = outcome.status === 'pending' ? await state.nextUploadId() : 0;
    // The member's slots as it holds them: its row where it has one (its list is then never made).
    const list = (m: Member) => (m.row ? undefined : m.slots);
    const records: RecordToWrite[] = batch.map((m, i) => {
      if (op === 'remove')
        return upload
          ? { key: m.key, status: Status.removePending, upload, row: m.row, slots: list(m) }
          : { key: m.key, status: Status.deleted, upload: 0, slots: [] };
      if (notTaken.has(i))
        return { key: m.key, status: Status.rejected, upload: 0, row: m.row, slots: list(m) };
      const status = upload ? Status.addPending : Status.confirmed;
      return { key: m.key, status, upload, row: m.row, slots: list(m) };
    });
    // A replace drops every member it did not name.
    for (const m of replaced) records.unshift({ key: m.key, status: Status.deleted, upload: 0, slots: [] });
    await state.append(
      records,
      outcome.status === 'pending'
        ? { id: upload, token: outcome.token, op, count: batch.length, at: new Date().toISOString() }
        : undefined,
    );
    result.rejected += rejected.size;
    for (const reason of rejected.values())
      result.rejectedReasons[reason] = (result.rejectedReasons[reason] ?? 0) + 1;
    const leftOut = notTaken.size - rejected.size;
    if (leftOut > 0) result.leftOut = (result.leftOut ?? 0) + leftOut;
    for (const r of notTaken.values())
      if (r.skipped) result.skipped[r.reason] = (result.skipped[r.reason] ?? 0) + 1;
    if (outcome.report) result.platform = addReports(result.platform, outcome.report);
    if (op === 'remove') result.removed += batch.length - notTaken.size;
    else result.added += batch.length - notTaken.size;
    if (op === 'replace') result.removed += replaced.length;
    return outcome.status;
  }
}

function addReports(a: PlatformReport | undefined, b: PlatformReport): PlatformReport {
  const out: PlatformReport = {
    received: (a?.received ?? 0) + (b.received ?? 0),
    invalid: (a?.invalid ?? 0) + (b.invalid ?? 0),
  };
  const samples = [...(a?.invalidSamples ?? []), ...(b.invalidSamples ?? [])];
  if (samples.length > 0) out.invalidSamples = [...new Set(samples)].slice(0, 20);
  return out;
}

/** Polls the platform for pending uploads and settles their members in the state. */
export async function settle(
  state: AudienceState,
  client: ConnectorClient,
  remote: RemoteAudience,
  final: boolean,
  log: Logger,
  call: <T>(what: string, fn: () => Promise<T>) => Promise<T>,
): Promise<void> {
  const uploads = await state.uploads();
  if (uploads.size === 0 || final || !client.poll) {
    await state.checkpoint();
    return;
  }
  const outcomes = new Map<number, PollOutcome>();
  for (const [id, upload] of uploads) {
    const outcome = await call(`poll upload ${id}`, () => client.poll!(remote, upload.token));
    outcomes.set(id, outcome);
    if (outcome.status === 'failed')
      log.warn(
        { audience: remote.name, upload: id, op: upload.op, count: upload.count },
        `upload ${id} failed on the platform (${outcome.reason}); its members will be sent again`,
      );
  }
  await state.checkpoint((r) => {
    const outcome = r.upload ? outcomes.get(r.upload) : undefined;
    if (!outcome || outcome.status === 'processing') return r;
    if (r.status === Status.addPending)
      return outcome.status === 'done' ? { ...r, status: Status.confirmed, upload: 0 } : undefined;
    if (r.status === Status.removePending)
      return outcome.status === 'done' ? undefined : { ...r, status: Status.confirmed, upload: 0 };
    return r;
  });
  await state.forgetUploads([...outcomes].filter(([, o]) => o.status !== 'processing').map(([id]) => id));
  // A replace (or the emptying before one) the platform finished: the audience is ours again.
  for (const [id, outcome] of outcomes) {
    const op = uploads.get(id)!.op;
    if ((op === 'replace' || op === 'removeAll') && outcome.status === 'done') await state.replaced();
  }
}
