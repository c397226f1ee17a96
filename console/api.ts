import type { z } from 'zod';
import type {
  actionSchema,
  audiencesSchema,
  destinationsSchema,
  errorSchema,
  jobSchema,
  recentRunsSchema,
  runsSchema,
  segmentsSchema,
  sessionSchema,
  snapshotsSchema,
} from '../src/api/schemas.js';
import { showTimesIn } from './format.js';
import type { audienceHealthSchema } from '../src/health/schema.js';
import type { movementSchema } from '../src/history/snapshots.js';

/** The API's answers, typed from the zod schemas the server validates them with (types only: no zod here). */
export type Session = z.output<typeof sessionSchema>;
export type Segments = z.output<typeof segmentsSchema>;
export type Snapshot = z.output<typeof snapshotsSchema>['snapshots'][number];
export type Movement = z.output<typeof movementSchema>;
export type Destinations = z.output<typeof destinationsSchema>;
export type AudienceHealth = z.output<typeof audienceHealthSchema>;
export type Audiences = z.output<typeof audiencesSchema>;
export type Action = z.output<typeof actionSchema>;
export type Job = z.output<typeof jobSchema>;
export type Runs = z.output<typeof runsSchema>;
export type Run = Runs['runs'][number];
export type RecentRuns = z.output<typeof recentRunsSchema>;
type ErrorBody = z.output<typeof errorSchema>;

/** An answer other than 2xx, with the API's own message. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody | undefined,
  ) {
    super(body ? `${body.message}${body.hint ? ` (${body.hint})` : ''}` : `the server answered ${status}`);
  }
}

let csrf: string | undefined;

/** Calls the API with the session cookie (and the CSRF token on POST and DELETE). */
export async function call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  const res = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  const json: unknown = text ? JSON.parse(text) : undefined;
  if (!res.ok) throw new ApiFailure(res.status, json as ErrorBody | undefined);
  return json as T;
}

/** Where to go after logging in: a path of this site only (never another origin). */
export function safeNext(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') ? next : '/';
}

/** Sends the browser to the login page, coming back here afterwards. */
export function toLogin(): void {
  const here = location.pathname + location.search;
  location.replace(`/login${here === '/' ? '' : `?next=${encodeURIComponent(here)}`}`);
}

/** The logged-in user (keeping the CSRF token for later calls); undefined after sending them to log in. */
export async function currentSession(): Promise<Session | undefined> {
  try {
    const session = await call<Session>('GET', '/api/v1/session');
    csrf = session.csrf_token;
    showTimesIn(session.time_zone);
    return session;
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 401) {
      toLogin();
      return undefined;
    }
    throw error;
  }
}

export async function logIn(name: string, password: string): Promise<Session> {
  const session = await call<Session>('POST', '/api/v1/session', { name, password });
  csrf = session.csrf_token;
  showTimesIn(session.time_zone);
  return session;
}

export async function logOut(): Promise<void> {
  await call<null>('DELETE', '/api/v1/session');
  csrf = undefined;
}

/** Every snapshot in a period, following the API's cursors page by page. */
export async function allSnapshots(period: { from?: string; to?: string }): Promise<Snapshot[]> {
  const all: Snapshot[] = [];
  let cursor: string | null = null;
  do {
    const query = new URLSearchParams({ limit: '500' });
    if (period.from) query.set('from', period.from);
    if (period.to) query.set('to', period.to);
    if (cursor) query.set('cursor', cursor);
    const page: z.output<typeof snapshotsSchema> = await call('GET', `/api/v1/snapshots?${query}`);
    all.push(...page.snapshots);
    cursor = page.next_cursor;
  } while (cursor);
  return all;
}
