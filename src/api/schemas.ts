import { z } from 'zod';
import { roleSchema } from '../config/schema.js';
import { audienceHealthSchema, policyFindingSchema } from '../health/schema.js';
import { snapshotSchema } from '../history/snapshots.js';
import { auditEntrySchema } from '../privacy/audit.js';
import { contactDeletionSchema, erasureRequestSchema, receiptSchema } from '../privacy/erasure.js';

/**
 * The HTTP API's bodies, as zod schemas: they validate every response (the serializer refuses one that
 * does not match) and are the OpenAPI document (`/api/v1/openapi.json`). Names only, never identifiers:
 * no schema here has room for an email, a phone number, a customer's name or a token other than the
 * caller's own CSRF token.
 */

export const errorSchema = z
  .object({
    /** A stable code: bad_request, unauthenticated, forbidden, csrf, not_found, rate_limited, redis_unavailable, internal. */
    error: z.string(),
    message: z.string(),
    hint: z.string().optional(),
    /** The values that would have been accepted, where there is a list. */
    allowed: z.array(z.string()).optional(),
  })
  .meta({ id: 'Error' });
export type ApiErrorBody = z.infer<typeof errorSchema>;

export const healthSchema = z.object({
  ok: z.literal(true),
  redis: z.enum(['ready', 'unavailable']),
});

export const loginSchema = z.strictObject({
  name: z.string().min(1).max(200),
  password: z.string().min(1).max(1000),
});

export const sessionSchema = z
  .object({
    user: z.string(),
    role: roleSchema,
    via: z.enum(['session', 'token', 'proxy']),
    /** Send it back as the X-CSRF-Token header on every POST and DELETE made with the session cookie. */
    csrf_token: z.string().optional(),
    expires_at: z.iso.datetime().optional(),
    /** The time zone to show times in (console.time_zone in the config; an IANA name). */
    time_zone: z.string(),
  })
  .meta({ id: 'Session' });

export const revokedSchema = z.object({ user: z.string(), revoked: z.number().int() });

export const audienceRefSchema = z.object({ name: z.string(), segments: z.array(z.string()) });

export const destinationsSchema = z.object({
  destinations: z.array(
    z.object({
      name: z.string(),
      type: z.string(),
      paused: z.boolean(),
      /** When a pause was asked for (null: not paused). */
      paused_since: z.string().nullable(),
      audiences: z.array(audienceRefSchema),
    }),
  ),
});

export const audiencesQuerySchema = z.strictObject({
  /** Only the audiences built on this segment. */
  segment: z.string().min(1).optional(),
});

/** Every destination audience's health in one answer, in the config's order (destination, then audience). */
export const audiencesSchema = z.object({ audiences: z.array(audienceHealthSchema) });

const counts = z.record(z.string(), z.number());

/** One audience's part of one run (the run history), newest first. Sizes are null for a failed run. */
export const runSchema = z
  .object({
    run: z.string(),
    at: z.string(),
    full: z.boolean(),
    reason: z.string(),
    outcome: z.enum(['completed', 'failed']),
    segment_size: z.number().nullable(),
    members: z.number().nullable(),
    planned_adds: z.number().nullable(),
    planned_removes: z.number().nullable(),
    added: z.number(),
    removed: z.number(),
    unchanged: z.number().nullable(),
    waiting: z.number().nullable(),
    pending: z.number().nullable(),
    skipped: counts.nullable(),
    rejected: z.number(),
    rejected_reasons: counts,
    failed: z.number(),
    in_flight: z.number(),
    duration_ms: z.number(),
    error: z.string().nullable(),
    error_kind: z.string().nullable(),
    held: z.string().nullable(),
    replaced: z.string().nullable(),
    /** What the checks before the upload found: a minimum size, a removal floor, additive only. */
    policy: z.array(policyFindingSchema),
    platform_report: z
      .object({
        received: z.number().optional(),
        invalid: z.number().optional(),
        invalid_samples: z.array(z.string()).optional(),
      })
      .nullable(),
    platform_size: z.number().nullable(),
    /** What platform_size counts when it is not people (`identifiers`: the file destination). */
    platform_counts: z.string().nullable(),
    match_rate: z.number().nullable(),
  })
  .meta({ id: 'Run' });

export const runsSchema = z.object({
  runs: z.array(runSchema),
  /** Pass it as `cursor` for the next (older) page; null on the last page. */
  next_cursor: z.string().nullable(),
});

/** A run of one audience among the runs of every audience (GET /api/v1/runs). */
export const destinationRunSchema = runSchema
  .extend({ destination: z.string(), audience: z.string() })
  .meta({ id: 'DestinationRun' });

export const recentRunsSchema = z.object({
  runs: z.array(destinationRunSchema),
  /** Pass it as `cursor` for the next (older) page; null on the last page. */
  next_cursor: z.string().nullable(),
});

export const runsQuerySchema = z.strictObject({
  cursor: z.string().min(1).optional(),
  limit: z.coerce
    .number({ error: 'expected a whole number from 1 to 200' })
    .int('expected a whole number from 1 to 200')
    .min(1, 'expected a whole number from 1 to 200')
    .max(200, 'expected a whole number from 1 to 200')
    .default(50),
});

export const recentRunsQuerySchema = runsQuerySchema.extend({
  /** `failed`: only runs that failed for their audience. */
  status: z.enum(['all', 'failed']).default('all'),
});

export const schedulesSchema = z.object({
  schedules: z.array(
    z.object({
      id: z.string(),
      destination: z.string(),
      audience: z.string().nullable(),
      cron: z.string(),
      tz: z.string(),
      full: z.boolean(),
      /** When Redis's scheduler runs it next; null when no worker has applied this schedule yet. */
      next_run: z.string().nullable(),
    }),
  ),
});

export const resyncSchema = z.strictObject({
  /** Only this audience (default: every audience of the destination). */
  audience: z.string().min(1).optional(),
  /** Re-send everything (never replaced by an incremental run). */
  full: z.boolean().optional(),
  /** Audiences the removal brake lets through in this run (`*`: all). */
  allow_removals: z.array(z.string().min(1)).optional(),
  /** Go ahead although the source shrank more than source.max_shrink_share. */
  allow_shrink: z.boolean().optional(),
});

const jobRefSchema = z.object({ id: z.string(), url: z.string() });

export const actionSchema = z.object({
  action: z.enum(['resync', 'pause', 'resume', 'check', 'stats']),
  destination: z.string(),
  /** The admin job; follow it at its url. */
  job: jobRefSchema,
});

export const checkSchema = z.object({ name: z.string(), ok: z.boolean(), detail: z.string() });

export const jobSchema = z
  .object({
    id: z.string(),
    queue: z.enum(['admin', 'sync']),
    /** resync, pause, resume, check, stats (admin) or sync. */
    name: z.string(),
    /** waiting, active, delayed, prioritized, completed, failed, … as BullMQ says. */
    state: z.string(),
    destination: z.string().nullable(),
    audience: z.string().nullable(),
    attempts_made: z.number().int(),
    created_at: z.string(),
    finished_at: z.string().nullable(),
    failed_reason: z.string().nullable(),
    /** What the job did, once completed. */
    result: z
      .object({
        /** A resync's sync job: follow it for the run's counts. */
        sync_job: jobRefSchema.optional(),
        /** The resync joined a sync job that covered it and had not started yet, rather than queue another. */
        joined: z.boolean().optional(),
        paused: z.string().optional(),
        resumed: z.string().optional(),
        checks: z.array(checkSchema).optional(),
        audiences: z.number().optional(),
        added: z.number().optional(),
        removed: z.number().optional(),
        rejected: z.number().optional(),
        full: z.boolean().optional(),
        skipped: z.string().optional(),
      })
      .nullable(),
  })
  .meta({ id: 'Job' });

const isoDay = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'expected a date as YYYY-MM-DD');

export const segmentsQuerySchema = z.strictObject({
  /** Trend points from this analysis date on (default: a year before the snapshot shown). */
  trend_from: isoDay.optional(),
  /** Sizes as of the last snapshot on or before this date, the trend up to it (default: the latest). */
  to: isoDay.optional(),
});

export const segmentsSchema = z.object({
  /** Which source the sizes are of (a digest of its location). */
  source: z.string(),
  /** The analysis date of the snapshot shown (the latest, or the last on or before `to`); null before the first scoring. */
  date: z.string().nullable(),
  customers: z.number().int().nullable(),
  /** The analysis dates of the trend points (retained snapshots from `trend_from`), oldest first. */
  trend_dates: z.array(z.string()),
  segments: z.array(
    z.object({
      name: z.string(),
      /** What to do with the segment (segments.actions, else the default map's suggestion). */
      action: z.string().nullable(),
      definition: z.object({
        /** The RFM codes (r·100 + f·10 + m, scores 1-5) that fall in this segment: exact. */
        codes: z.array(z.number().int()),
        /** The smallest score ranges holding every code (a code table's segment need not fill them). */
        recency: z.tuple([z.number().int(), z.number().int()]).nullable(),
        frequency: z.tuple([z.number().int(), z.number().int()]).nullable(),
        monetary: z.tuple([z.number().int(), z.number().int()]).nullable(),
      }),
      customers: z.number().int().nullable(),
      opted_out: z.number().int().nullable(),
      /** Share of all scored customers, 0..1. */
      share: z.number().nullable(),
      /** Size at each date of `trend_dates`. */
      trend: z.array(z.number().int()),
    }),
  ),
});

export const segmentSampleSchema = z.object({
  segment: z.string(),
  /** The analysis date of the latest snapshot, whose customers these are. */
  date: z.string(),
  /** Up to 20 customer ids of the segment (the first in source order): for operators to look a few up. */
  customer_ids: z.array(z.string()).max(20),
});

export const movementSampleQuerySchema = z.strictObject({
  /** A segment of the snapshot moved from, or `new`. */
  from: z.string().min(1),
  /** A segment of the latest snapshot. */
  to: z.string().min(1),
});

export const movementSampleSchema = z.object({
  /** The latest snapshot's analysis date, whose customers these are. */
  date: z.string(),
  /** The snapshot its movement was counted from; null when it counted none. */
  since: z.string().nullable(),
  from: z.string(),
  to: z.string(),
  /** Up to 20 customer ids of the cell (a pick in no customer order): for operators to look a few up. */
  customer_ids: z.array(z.string()).max(20),
});

export const snapshotsQuerySchema = z.strictObject({
  from: isoDay.optional(),
  to: isoDay.optional(),
  cursor: isoDay.optional(),
  limit: z.coerce
    .number({ error: 'expected a whole number from 1 to 500' })
    .int('expected a whole number from 1 to 500')
    .min(1, 'expected a whole number from 1 to 500')
    .max(500, 'expected a whole number from 1 to 500')
    .default(100),
});

export const movementQuerySchema = z.strictObject({
  /** An earlier snapshot's date (default: the snapshot before `to`). */
  from: isoDay.optional(),
  /** A later snapshot's date (default: the latest). */
  to: isoDay.optional(),
});

export const snapshotsSchema = z.object({
  snapshots: z.array(snapshotSchema),
  /** Pass it as `cursor` for the next (later) page; null on the last page. */
  next_cursor: z.string().nullable(),
});

/** Whom to forget (any of these, together for one person): used at once, never stored or echoed. */
export const erasureBodySchema = z
  .strictObject({
    email: z.string().min(1).max(320).optional(),
    phone: z.string().min(1).max(64).optional(),
    customer_id: z.string().min(1).max(256).optional(),
    mailchimp_delete: contactDeletionSchema
      .optional()
      .describe(
        'Also delete the contact on Mailchimp destinations once untagged: `archive`, or `permanent` (blocks re-import: the person can only come back by subscribing again themselves). Absent: the contact is kept.',
      ),
  })
  .refine((b) => b.email ?? b.phone ?? b.customer_id, {
    message: 'give email, phone or customer_id',
  });

export const erasureAcceptedSchema = z.object({
  erasure: z.string(),
  destinations: z.array(z.string()),
  /** The admin job; follow it at its url. */
  job: z.object({ id: z.string(), url: z.string() }),
});

export const erasuresSchema = z.object({
  erasures: z.array(erasureRequestSchema.extend({ done: z.boolean(), receipts: z.array(receiptSchema) })),
});

export const auditSchema = z.object({ audit: z.array(auditEntrySchema) });
