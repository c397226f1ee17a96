import { z } from 'zod';

/**
 * Audience health as the core reports it and the HTTP API returns it: one zod schema per value, each field
 * described, so the API's validation and its OpenAPI document come from here. Counts are members (people)
 * unless `counts` says `identifiers`; a count the platform does not show is null ("unknown"), never 0.
 */

const count = z.number().int().min(0);
const at = z.iso.datetime();

export const readingSchema = z
  .strictObject({
    at: at.describe('When the platform was read (ISO 8601, UTC).'),
    by: z
      .enum(['run', 'schedule'])
      .describe(
        '`run`: read right after a sync run; `schedule`: the periodic read (`health.stats_minutes`).',
      ),
    size: z
      .number()
      .min(0)
      .nullable()
      .describe(
        "The platform's own size of the audience. Null when it shows none: not computed yet, hidden under its minimum (Google shows no size under 1,000), or the read failed.",
      ),
    counts: z
      .enum(['people', 'identifiers'])
      .describe(
        'What `size` counts: matched people, or identifiers where the destination cannot tell people apart.',
      ),
    matchRate: z
      .number()
      .min(0)
      .max(1)
      .nullable()
      .describe('Share of uploaded members the platform matched to its users (0..1), where it reports one.'),
    expected: count
      .nullable()
      .describe('Segment members with a usable identifier for this platform, as of the last completed run.'),
    sent: count
      .nullable()
      .describe('Members our state says the platform holds or is adding (confirmed plus pending additions).'),
    confirmed: count.nullable().describe('Members our state has confirmed on the platform.'),
    changed: z
      .boolean()
      .describe('The run this reading follows added or removed members (the platform may lag behind it).'),
    warnings: z
      .array(z.string())
      .describe("The platform's warnings about the audience (minimum sizes, status)."),
    problems: z
      .array(z.string())
      .optional()
      .describe(
        'Why the platform will not serve the audience (flagged, unusable), in its words: a failed health check. Absent in readings from before it was kept.',
      ),
    error: z.string().optional().describe('Why the platform could not be read (the size is then unknown).'),
  })
  .describe("One reading of an audience's size on its platform, with what we had sent by then.");
export type Reading = z.infer<typeof readingSchema>;

export const divergenceSchema = z
  .strictObject({
    state: z
      .enum(['in_band', 'settling', 'divergent', 'unknown'])
      .describe(
        "`in_band`: the latest known size is within the band; `settling`: outside it for less than the platform's processing time; `divergent`: outside it for at least that long; `unknown`: no size known yet.",
      ),
    divergent: z
      .boolean()
      .describe('The flag: the size has stayed outside the band for at least `processingMinutes`.'),
    since: at
      .nullable()
      .describe('The first reading of the current run of readings outside the band (null when in band).'),
    reading: at.nullable().describe('The latest reading with a known size, that the state describes.'),
    expected: count.nullable().describe('Members expected, as of that reading.'),
    sent: count.nullable().describe('Members sent (confirmed plus pending additions), as of that reading.'),
    platformSize: z.number().min(0).nullable().describe("The platform's size at that reading."),
    baseline: z
      .strictObject({
        ratio: z
          .number()
          .min(0)
          .nullable()
          .describe('Platform size per member sent that the band is centred on.'),
        from: z
          .enum(['match_rate', 'learned', 'none'])
          .describe(
            "`match_rate`: the match rate the platform reported; `learned`: the audience's own ratio at its last settled reading in band; `none`: nothing to go by yet.",
          ),
      })
      .describe('What the platform is expected to count per member sent.'),
    band: z
      .strictObject({ low: z.number().min(0), high: z.number().min(0) })
      .nullable()
      .describe('The sizes counted as in band at that reading: ratio × sent, ± `share` (at least ± 10).'),
    share: z.number().describe("The band's half-width as a share of the expected size (`health.band`)."),
    processingMinutes: z
      .number()
      .min(0)
      .describe('How long the platform may take to show an upload (its connector says).'),
  })
  .describe(
    "Whether the platform's size has stayed away from what we sent as long as the platform needs to process uploads.",
  );
export type Divergence = z.infer<typeof divergenceSchema>;

/** One check before an upload and what it found (`PolicyFinding`): a minimum size, a removal floor, additive only. */
export const policyFindingSchema = z
  .strictObject({
    check: z.string().describe('Which rule: min_size, removal_floor, additive_only, …'),
    message: z.string().describe('What was found and what to do, naming the setting.'),
    blocked: z.boolean().describe('The rule kept the upload, or part of it, from being sent.'),
  })
  .meta({ id: 'PolicyFinding' });

export const lastRunSchema = z
  .strictObject({
    run: z.string().describe('The run (job) id.'),
    at: at.describe('When it started.'),
    full: z.boolean().describe('A full resync.'),
    reason: z.string().describe('Why it ran: schedule, resync, retry, poll.'),
    outcome: z.enum(['completed', 'failed']),
    error: z.string().nullable().describe('Why it failed, for this audience.'),
    added: count,
    removed: count,
    unchanged: count.nullable(),
    rejected: count.describe('Members the platform named invalid.'),
    rejectedReasons: z.record(z.string(), count).describe("Rejected members by the platform's reason."),
    failed: count.describe('Members of batches the platform did not take.'),
    inFlight: count.describe('Uploads the platform was still processing after the run.'),
    skipped: z
      .record(z.string(), count)
      .nullable()
      .describe('Segment members left out, by why (opted out, no usable identifier, …).'),
    durationMs: count,
    held: z.string().nullable().describe('Why a brake left the audience untouched.'),
    replaced: z.string().nullable().describe('Why the audience was replaced whole.'),
    policy: z.array(policyFindingSchema).describe('What the checks before the upload found.'),
  })
  .describe('The last run of the audience and its counts.');
export type LastRun = z.infer<typeof lastRunSchema>;

export const stateCountsSchema = z
  .strictObject({
    confirmed: count.describe('On the platform, as far as the platform has told us.'),
    addPending: count.describe('Sent; the platform is still processing them.'),
    removePending: count.describe('Removal sent; the platform is still processing it.'),
    rejected: count.describe('Named invalid by the platform; not re-sent until they change.'),
  })
  .describe('Members in our state by status, as of the last run.');

export const audienceHealthSchema = z
  .strictObject({
    destination: z.string().describe('The destination name in the config.'),
    audience: z.string().describe('The audience name.'),
    remoteId: z
      .string()
      .nullable()
      .describe("The audience's id on the platform (null before its first run)."),
    paused: z.boolean().describe('The destination is paused: scheduled runs are skipped.'),
    nextRun: at.nullable().describe('The next scheduled run of this audience (null: none scheduled).'),
    segmentSize: count
      .nullable()
      .describe("Customers in the audience's segments (opted out included), last run."),
    expected: count
      .nullable()
      .describe('Segment members with a usable identifier for this platform, as of the last completed run.'),
    confirmed: count.nullable().describe('Members our state has confirmed on the platform.'),
    state: stateCountsSchema.nullable(),
    platform: readingSchema.nullable().describe('The latest reading of the platform (null: never read).'),
    lastRun: lastRunSchema.nullable(),
    divergence: divergenceSchema,
    readings: z.array(readingSchema).describe('The most recent readings, oldest first.'),
  })
  .describe(
    "One destination audience's health: what it should hold, what we sent, what the platform counts.",
  );
export type AudienceHealth = z.infer<typeof audienceHealthSchema>;
