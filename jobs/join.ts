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
 * A sync job that has not started (waiting, or delayed behind another run of its audiences or for a retry)
 * and covers `request`: a resync asked for meanwhile joins it rather than queueing a second run, which
 * would read and score the source again and find nothing left to do. Either run starts after the request.
 */
export async function waitingRunCovering(queue: Queue, request: SyncJob): Promise<Job | undefined> {
  const jobs = await queue.getJobs(['waiting', 'prioritized', 'delayed'], 0, 999);
  return jobs.find((job) => {
    const data = syncJobSchema.safeParse(job?.data);
    return job !== undefined && data.success && covers(data.data, request);
  });
}
