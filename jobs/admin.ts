import type { Job, Queue } from 'bullmq';
import { audienceNamesOf } from '../src/audience/audiences.js';
import { closest } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { ConfigError } from '../src/errors.js';
import type { AdminJob } from './queues.js';

/** What an operator asks of the workers, by the admin queue (the CLI's resync/pause/resume/check, the API's actions). */
export interface AdminRequest {
  destination: string;
  audience?: string | undefined;
  full?: boolean | undefined;
  allowRemovals?: string[] | undefined;
  allowShrink?: boolean | undefined;
}

/** A destination or audience the config does not have: names it and what there is. */
export class UnknownName extends ConfigError {
  constructor(
    readonly what: 'destination' | 'audience' | 'segment',
    readonly given: string,
    readonly known: readonly string[],
    where = '',
  ) {
    const near = closest(given, known);
    super(
      `no ${what} named '${given}'${where}`,
      near ? `did you mean '${near}'? (${what}s: ${known.join(', ')})` : `${what}s are: ${known.join(', ')}`,
    );
  }
}

/** The admin job for a request, checked against the config: an unknown destination or audience is an UnknownName. */
/** The actions an operator asks of one destination (an erasure is asked by `forget`, for every destination; alerts and the digest are the workers' own). */
export type DestinationAction = Exclude<AdminJob['action'], 'forget' | 'alerts' | 'digest'>;

export function adminJobFor(config: Config, action: DestinationAction, request: AdminRequest): AdminJob {
  const destinations = Object.keys(config.destinations);
  if (!destinations.includes(request.destination))
    throw new UnknownName('destination', request.destination, destinations);
  if (action !== 'resync') return { action, destination: request.destination };
  if (request.audience !== undefined) {
    const audiences = audienceNamesOf(config, request.destination);
    if (!audiences.includes(request.audience))
      throw new UnknownName(
        'audience',
        request.audience,
        audiences,
        ` on destination '${request.destination}'`,
      );
  }
  return {
    action,
    destination: request.destination,
    full: request.full ?? false,
    allowRemovals: request.allowRemovals ?? [],
    allowShrink: request.allowShrink ?? false,
    ...(request.audience !== undefined ? { audience: request.audience } : {}),
  };
}

/** Puts an admin job on the queue; resolves to its id. */
export async function enqueueAdmin(queue: Queue, data: AdminJob): Promise<string> {
  const job = await queue.add(data.action, data, {
    removeOnComplete: { age: 86_400 },
    removeOnFail: { age: 7 * 86_400 },
  });
  return String(job.id);
}

/** A job as its requester follows it: where it is, and how it ended. */
export interface JobStatus {
  id: string;
  name: string;
  state: string;
  data: Record<string, unknown>;
  attemptsMade: number;
  progress: unknown;
  createdAt: string;
  finishedAt?: string | undefined;
  result?: unknown;
  failedReason?: string | undefined;
}

/** The status of a job, or undefined when the queue has no such job (never was, or removed after a day). */
export async function jobStatus(queue: Queue, id: string): Promise<JobStatus | undefined> {
  let job: Job | undefined = await queue.getJob(id);
  if (!job) return undefined;
  const state = await job.getState();
  // Read again: the job may have finished between reading it and asking its state.
  if (state === 'completed' || state === 'failed') job = (await queue.getJob(id)) ?? job;
  return {
    id: String(job.id),
    name: job.name,
    state,
    data: job.data as Record<string, unknown>,
    attemptsMade: job.attemptsMade,
    progress: job.progress,
    createdAt: new Date(job.timestamp).toISOString(),
    ...(job.finishedOn ? { finishedAt: new Date(job.finishedOn).toISOString() } : {}),
    ...(state === 'completed' ? { result: job.returnvalue as unknown } : {}),
    ...(job.failedReason ? { failedReason: job.failedReason } : {}),
  };
}
