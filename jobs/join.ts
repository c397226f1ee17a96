import type { Job, Queue } from 'bullmq';
import { syncJobSchema, type SyncJob } from './queues.js';

/**
 * Whether a sync job does all that `request` asks: the same destination, the same audience or all of them,
 * a full run if a full one is asked for, and at least the brakes' permissions asked for.
 */
export function covers(job: SyncJob, request: SyncJob): boolean {
  const [j, r] = [syncJobSchema.parse(job), syncJobSchema.parse(request)];
  const removals = new Set(j.allowRemovals);
  return (
    j.destination === r.destination &&
    (j.audience === undefined || j.audience === r.audience) &&
    (j.full || !r.full) &&
    (j.allowShrink || !r.allowShrink) &&
    (removals.has('*') || r.allowRemovals.every((a) => removals.has(a)))
  );
}

/**
 * A sync job that is about to start and covers `request`: a resync asked for meanwhile joins it rather than
 * queueing a second run, which would read and score the source again and find nothing left to do. About
 * to start: waiting, or put off for a moment behind another run of its audiences (delayed, never tried,
 * neither a schedule's next occurrence nor a run added for later, as a poll is). Either way the run starts
 * after the request.
 */
export async function waitingRunCovering(queue: Queue, request: SyncJob): Promise<Job | undefined> {
  const [waiting, delayed] = await Promise.all([
    queue.getJobs(['waiting', 'prioritized'], 0, 999),
    queue.getJobs(['delayed'], 0, 999),
  ]);
  const putOff = delayed.filter(
    (job) => job && !job.repeatJobKey && !job.opts.delay && job.attemptsMade === 0,
  );
  return [...waiting, ...putOff].find((job) => {
    const data = syncJobSchema.safeParse(job?.data);
    return job !== undefined && data.success && covers(data.data, request);
  });
}
