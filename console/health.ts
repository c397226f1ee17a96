import type { AudienceHealth } from './api.js';

export const STATUSES = {
  in_sync: 'In sync',
  waiting: 'Waiting on the platform',
  failed: 'Failed',
  diverging: 'Diverging',
  not_run: 'Not synced yet',
} as const;
export type Status = keyof typeof STATUSES;

/** An audience's status in one word, from its health as the API reports it. */
export function statusOf(h: AudienceHealth): Status {
  if (!h.lastRun) return 'not_run';
  if (h.lastRun.outcome === 'failed' || (h.platform?.problems?.length ?? 0) > 0) return 'failed';
  if (h.divergence.divergent) return 'diverging';
  const pending = h.state ? h.state.addPending + h.state.removePending : 0;
  if (h.divergence.state === 'settling' || h.lastRun.inFlight > 0 || pending > 0) return 'waiting';
  return 'in_sync';
}

/** The console page of one destination audience. */
export const audiencePath = (destination: string, audience: string): string =>
  `/destinations/${encodeURIComponent(destination)}/audiences/${encodeURIComponent(audience)}`;

/** The console page of one segment. */
export const segmentPath = (segment: string, query?: Record<string, string>): string =>
  `/segments/${encodeURIComponent(segment)}${query ? `?${new URLSearchParams(query)}` : ''}`;
