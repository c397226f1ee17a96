import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';

/**
 * The one configuration file, as zod schemas. Types are inferred from these schemas: they are the
 * documentation of every key (the README's config reference follows this file).
 */

const isoDate = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'expected a date as YYYY-MM-DD')
  .refine(
    (s) =>
      !Number.isNaN(Date.parse(`${s}T00:00:00Z`)) && new Date(`${s}T00:00:00Z`).toISOString().startsWith(s),
    {
      message: 'not a calendar date',
    },
  );

/** Columns that say who a customer is and whether they may be targeted. */
export const profileColumnsSchema = z.strictObject({
  customer_id: z.string().min(1).optional(),
  email: z.string().min(1).optional(),
  phone: z.string().min(1).optional(),
  first_name: z.string().min(1).optional(),
  last_name: z.string().min(1).optional(),
  country: z.string().min(1).optional(),
  postal_code: z.string().min(1).optional(),
  external_id: z.string().min(1).optional(),
  /** A column whose true value means the customer opted out of ad and email targeting. */
  opted_out: z.string().min(1).optional(),
  /** Or the opposite: a column whose true value means the customer consented; empty or false means excluded. */
  consent: z.string().min(1).optional(),
});

/** Scoring columns, by input shape. Unset keys fall back to the recognised default names. */
export const scoringColumnsSchema = profileColumnsSchema.extend({
  order_date: z.string().min(1).optional(),
  amount: z.string().min(1).optional(),
  last_order_date: z.string().min(1).optional(),
  recency_days: z.string().min(1).optional(),
  order_count: z.string().min(1).optional(),
  total_revenue: z.string().min(1).optional(),
  r: z.string().min(1).optional(),
  f: z.string().min(1).optional(),
  m: z.string().min(1).optional(),
  rfm_code: z.string().min(1).optional(),
  segment: z.string().min(1).optional(),
});

export const shapeSchema = z.enum(['orders', 'customers', 'scores']);
export type Shape = z.infer<typeof shapeSchema>;

export const dateFormatSchema = z
  .string()
  .regex(
    /^(auto|unix|unix_ms|(?:YYYY|MM|DD)([-/.]?)(?:YYYY|MM|DD)\2(?:YYYY|MM|DD))$/,
    'expected auto, unix, unix_ms, or a pattern of YYYY, MM and DD such as DD/MM/YYYY or YYYYMMDD',
  )
  .refine((s) => ['auto', 'unix', 'unix_ms'].includes(s) || new Set(s.match(/YYYY|MM|DD/g)).size === 3, {
    message: 'a date pattern needs each of YYYY, MM and DD once',
  });

const sourceCommon = {
  /** Shape of the rows; recognised from the column names when omitted. */
  shape: shapeSchema.optional(),
  columns: scoringColumnsSchema.default({}),
  /** Extra customer columns kept for audience filters (e.g. favorite_brand). */
  attributes: z.array(z.string().min(1)).default([]),
  date_format: dateFormatSchema.default('auto'),
  /** The run stops when more than this share of rows is bad (0.01 = 1 %). */
  max_bad_row_share: z.number().min(0).max(1).default(0.01),
  /** The run stops, before anything is sent, when the rows fell by more than this share since the last sync. */
  max_shrink_share: z.number().min(0).max(1).default(0.2),
  /** Orders (or a customer's last order) after the analysis date: left out and counted, or an error. */
  future_orders: z.enum(['skip', 'error']).default('skip'),
};

/** How the bytes of a CSV file are text (PostgreSQL sends UTF-8 whatever the database holds). */
export const encodingSchema = z.enum(['utf-8', 'latin1', 'windows-1252']);
export type Encoding = z.infer<typeof encodingSchema>;

export const csvSourceSchema = z.strictObject({
  type: z.literal('csv'),
  /** Path to the file (relative to the config file); `.gz` files are decompressed. */
  path: z.string().min(1),
  /** Field delimiter; detected from the header line when omitted. */
  delimiter: z.enum([',', ';', '\t', '|']).optional(),
  /** Text encoding of the file; bytes that are not valid in it make a bad row. */
  encoding: encodingSchema.default('utf-8'),
  ...sourceCommon,
});

export const postgresSourceSchema = z.strictObject({
  type: z.literal('postgres'),
  /** Connection string; put it in the environment, e.g. `${DATABASE_URL}`. */
  url: z.string().min(1),
  /** A SELECT whose rows are streamed with COPY (never loaded at once). */
  query: z.string().min(1),
  ...sourceCommon,
});

export const sourceSchema = z.discriminatedUnion('type', [csvSourceSchema, postgresSourceSchema]);
export type SourceConfig = z.infer<typeof sourceSchema>;

/** A second table of one row per customer: identifiers, consent and attributes, joined by customer id. */
export const profilesSchema = z.discriminatedUnion('type', [
  csvSourceSchema
    .omit({ shape: true, date_format: true, future_orders: true })
    .extend({ columns: profileColumnsSchema.default({}) }),
  postgresSourceSchema
    .omit({ shape: true, date_format: true, future_orders: true })
    .extend({ columns: profileColumnsSchema.default({}) }),
]);
export type ProfilesConfig = z.infer<typeof profilesSchema>;

const range = z
  .tuple([z.number().int().min(1).max(5), z.number().int().min(1).max(5)])
  .refine(([lo, hi]) => lo <= hi, 'expected [low, high] with low <= high');

export const segmentRuleSchema = z.strictObject({
  name: z.string().min(1),
  recency: range,
  frequency: range,
  monetary: range,
});
export type SegmentRule = z.infer<typeof segmentRuleSchema>;

const rfmCode = z
  .number()
  .int()
  .refine(
    (c) => [Math.floor(c / 100), Math.floor(c / 10) % 10, c % 10].every((d) => d >= 1 && d <= 5) && c < 1000,
    {
      message: 'expected an RFM code of three digits 1-5, such as 555',
    },
  );

export const segmentsSchema = z
  .strictObject({
    /** default: the 11-segment code table; codes: your own table; rules: ordered ranges, first match wins
     * (the R rfm package README's rules when `rules` is omitted). */
    map: z.enum(['default', 'codes', 'rules']).default('default'),
    codes: z.record(z.string().min(1), z.array(rfmCode).min(1)).optional(),
    rules: z.array(segmentRuleSchema).min(1).optional(),
    /** Name for customers no code or rule covers; leaving codes uncovered without it is an error. */
    other: z.string().min(1).optional(),
    /** A suggested action per segment, shown beside its size. */
    actions: z.record(z.string().min(1), z.string().min(1)).default({}),
  })
  .superRefine((s, ctx) => {
    if (s.map === 'codes' && !s.codes)
      ctx.addIssue({ code: 'custom', path: ['codes'], message: 'map: codes needs a codes table' });
    if (s.map !== 'codes' && s.codes)
      ctx.addIssue({
        code: 'custom',
        path: ['codes'],
        message: `codes is only read with map: codes (map is ${s.map})`,
      });
    if (s.map !== 'rules' && s.rules)
      ctx.addIssue({
        code: 'custom',
        path: ['rules'],
        message: `rules is only read with map: rules (map is ${s.map})`,
      });
  });
export type SegmentsConfig = z.infer<typeof segmentsSchema>;

export const scoringSchema = z.strictObject({
  /** `today` (UTC) or a fixed date YYYY-MM-DD. */
  analysis_date: z.union([z.literal('today'), isoDate]).default('today'),
  /** quantile: the R rfm package's breaks; ntile: SQL NTILE(5) with ties broken by customer id. */
  method: z.enum(['quantile', 'ntile']).default('quantile'),
  /** How the monetary value of a customer is formed from their orders. */
  monetary: z.enum(['sum', 'mean']).default('sum'),
  /** The third dimension: order value (RFM), engagement (RFE) or duration (RFD). */
  third_dimension: z.enum(['monetary', 'engagement', 'duration']).default('monetary'),
  /** RFE: a weighted sum of columns, e.g. { sessions: 1, email_opens: 0.5 }; summed over order rows. */
  engagement: z.record(z.string().min(1), z.number()).optional(),
  /** RFD: the column holding time spent (summed over order rows). */
  duration: z.string().min(1).optional(),
});
export type ScoringConfig = z.infer<typeof scoringSchema>;

export const audienceSchema = z.strictObject({
  /** Audience name on the platforms; defaults to the name pattern applied to the segment list. */
  name: z.string().min(1).optional(),
  segments: z.array(z.string().min(1)).min(1),
  /** Keep only customers whose attribute equals one of the values, e.g. { favorite_brand: [Acme] }. */
  where: z.record(z.string().min(1), z.union([z.string(), z.array(z.string()).min(1)])).optional(),
  /** Destinations this audience goes to; all destinations when omitted. */
  destinations: z.array(z.string().min(1)).optional(),
  /** This audience's own `sync.removals` and `sync.min_size`; the global ones when omitted. */
  sync: z
    .strictObject({
      removals: z.boolean().optional(),
      min_size: z.enum(['warn', 'block']).optional(),
    })
    .optional(),
});

export const audiencesSchema = z.strictObject({
  /** One audience per segment per destination unless `list` is given; `{segment}` is replaced. */
  name_pattern: z.string().min(1).default('RFM: {segment}'),
  per_segment: z.boolean().default(true),
  list: z.array(audienceSchema).default([]),
});

/**
 * Destinations are checked in detail by their connector's own schema (connectors/<platform>/); which
 * types there are, the registry of connectors says (an unknown one is named with the list).
 */
export const destinationSchema = z.looseObject({
  type: z.string().regex(/^[a-z][a-z0-9_]*$/, 'a connector type such as google_ads, meta, mailchimp or file'),
  /** Base URL override: a sandbox, a proxy or a local test server. */
  endpoint: z.url().optional(),
});

/** A time zone Intl knows (IANA names such as Europe/Berlin, and UTC): the zones cron-parser can use. */
function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

export const scheduleSchema = z
  .strictObject({
    destination: z.string().min(1),
    audience: z.string().min(1).optional(),
    /** Cron pattern, e.g. "0 3 * * *" (five fields, or six with seconds first), read by BullMQ's parser. */
    cron: z.string().min(1),
    tz: z.string().min(1).default('UTC'),
    full: z.boolean().default(false),
  })
  .superRefine((s, ctx) => {
    const tzOk = isTimeZone(s.tz);
    if (!tzOk)
      ctx.addIssue({
        code: 'custom',
        path: ['tz'],
        message: `'${s.tz}' is not a time zone; use an IANA name such as Europe/Berlin, America/New_York or UTC`,
      });
    // cron-parser reads fewer fields by shifting them (four fields become something else): count first.
    const fields = s.cron.trim().split(/\s+/).length;
    if (!s.cron.trim().startsWith('@') && (fields < 5 || fields > 6)) {
      ctx.addIssue({
        code: 'custom',
        path: ['cron'],
        message: `'${s.cron}' is not a cron pattern: it has ${fields} field${fields === 1 ? '' : 's'}, where a cron pattern has five (minute hour day-of-month month day-of-week, such as "0 3 * * *"), or six with seconds first`,
      });
      return;
    }
    try {
      CronExpressionParser.parse(s.cron, tzOk ? { tz: s.tz } : {});
    } catch (error) {
      ctx.addIssue({
        code: 'custom',
        path: ['cron'],
        message: `'${s.cron}' is not a cron pattern (${(error as Error).message}); write five fields: minute hour day-of-month month day-of-week, such as "0 3 * * *"`,
      });
    }
  });

export const syncSchema = z.strictObject({
  /** Exit code 3 when more than this share of an audience's customers have no usable identifier. */
  max_skipped_share: z.number().min(0).max(1).default(0.1),
  /** Exit code 3 when the platform rejects more than this share of the members sent. */
  max_rejected_share: z.number().min(0).max(1).default(0.01),
  /** An audience whose planned removals exceed this share of its members is not touched (1: no brake). */
  max_removal_share: z.number().min(0).max(1).default(0.2),
  /** The removal brake holds an audience only when at least this many members would be removed. */
  min_removals_held: z.number().int().min(0).default(10),
  /**
   * An audience below its platform's minimum size (or removals taking it below the floor): `warn` and send,
   * or `block`: hold what would go (removals privacy requires still go).
   */
  min_size: z.enum(['warn', 'block']).default('warn'),
  /** false: additive only, members who leave an audience stay on the platform (privacy removals still go). */
  removals: z.boolean().default(true),
  /** How long a worker's hold on a destination lasts without renewal (a killed worker's runs resume after it). */
  lease_seconds: z.number().min(1).max(3600).default(60),
  /** After a run leaves uploads the platform processes later, a follow-up run settles them this much later. */
  poll_seconds: z.number().min(1).max(86_400).default(600),
  /** Runs kept per audience in the run history. */
  history_runs: z.number().int().min(1).default(1000),
  /** Prefix of the Redis keys holding sync state (change it to keep two setups apart in one Redis). */
  redis_prefix: z.string().min(1).default('audience-sync'),
  /** How often running workers check that Redis still holds the config's schedules (and put back lost ones). */
  schedule_check_seconds: z.number().min(1).max(86_400).default(60),
  /**
   * A worker's runs that start this long after one that read the source take its read when the config and
   * the source files are unchanged (0: every run reads); runs that start while a read is under way wait for it.
   */
  reuse_read_seconds: z.number().min(0).max(86_400).default(300),
  /**
   * What a worker's runs hold in identity tables at once: a run whose table does not fit beside the others'
   * waits for them (a run alone always goes). About 110 bytes per member with one identifier, 32 more per
   * identifier.
   */
  table_memory_mb: z.number().min(0).max(1_048_576).default(384),
});

export const historySchema = z.strictObject({
  /** Segment snapshots are kept while their analysis date is at most this many days before the latest one's. */
  keep_days: z.number().int().min(1).max(36_500).default(400),
  /**
   * The share of customers that may arrive or leave between two scorings for the movement between them
   * to be counted (the latest snapshot keeps about 0.6 + 16 × this bytes per customer). A step with more
   * is recorded without movement, and says so.
   */
  movement_capacity: z.number().gt(0).max(1).default(0.05),
});

/** Minutes between stats reads that a cron pattern can express: divisors of an hour, or whole hours dividing a day. */
const STATS_MINUTES = [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440];

export const healthSchema = z.strictObject({
  /** How often workers read each audience's size and match rate from its platform (besides after every run). */
  stats_minutes: z
    .number()
    .int()
    .refine((m) => STATS_MINUTES.includes(m), {
      message: `expected one of ${STATS_MINUTES.join(', ')} (minutes that divide an hour, or hours that divide a day)`,
    })
    .default(60),
  /** Days of size readings kept per audience. */
  keep_days: z.number().int().min(1).max(3650).default(90),
  /** At most this many readings kept per audience (the oldest go first). */
  keep_samples: z.number().int().min(10).max(100_000).default(5000),
  /** An audience diverges when the platform's size stays further than this share from what it should count. */
  band: z.number().gt(0).max(1).default(0.2),
});

export const privacySchema = z.strictObject({
  /** Days the audit log of operator actions keeps an entry. */
  audit_keep_days: z.number().int().min(1).max(36_500).default(400),
  /** Delay before an erasure that failed on a platform is tried again (doubling up to an hour). */
  erasure_retry_seconds: z.number().min(1).max(86_400).default(60),
});

/** A channel name: letters, digits, - and _ (it names the channel in logs and in the alert state). */
const channelName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]*$/, 'channel names: lowercase letters, digits, - and _');

export const alertChannelSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('webhook'),
    name: channelName.optional(),
    /** Receives a JSON POST per alert. */
    url: z.url(),
    /** Key of the `X-Audience-Sync-Signature: sha256=<hex HMAC of the body>` header; write `${ALERT_WEBHOOK_SECRET}`. */
    secret: z.string().min(16, 'a webhook secret needs at least 16 characters'),
  }),
  z.strictObject({
    type: z.literal('slack'),
    name: channelName.optional(),
    /** The incoming webhook's URL (it carries a token: write `${SLACK_WEBHOOK_URL}`). */
    url: z.url(),
  }),
  z.strictObject({
    type: z.literal('email'),
    name: channelName.optional(),
    /** SMTP server, e.g. `${SMTP_HOST}`. */
    host: z.string().min(1),
    port: z.coerce.number().int().min(1).max(65_535).default(587),
    /** TLS from the start (port 465); false: STARTTLS when the server offers it. */
    secure: z.union([z.boolean(), z.enum(['true', 'false']).transform((s) => s === 'true')]).default(false),
    user: z.string().optional(),
    /** Write `${SMTP_PASSWORD}`. */
    password: z.string().optional(),
    from: z.string().min(3),
    to: z.array(z.string().min(3)).min(1),
  }),
]);
export type AlertChannelConfig = z.infer<typeof alertChannelSchema>;

export const alertsSchema = z
  .strictObject({
    channels: z.array(alertChannelSchema).default([]),
    /** An alert still true is sent again after this many hours (once when it starts, once when it clears). */
    remind_hours: z.number().positive().default(24),
    /** Alert when a run's rejected share is above this (default: `sync.max_rejected_share`). */
    rejected_share: z.number().min(0).max(1).optional(),
    /** Alert when a segment's size changed by more than this share since the snapshot before (0.2 = 20 %). */
    segment_change_share: z.number().gt(0).default(0.2),
    /** Alert when an erasure has not reached `removed` on a destination this many hours after it was requested. */
    erasure_deadline_hours: z.number().positive().default(24),
    /** How often workers check the conditions that come with time (erasure deadlines, version expiry, divergence). */
    check_minutes: z
      .number()
      .int()
      .refine((m) => [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60].includes(m), {
        message:
          'expected a number of minutes that divides an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)',
      })
      .default(15),
    /** A weekly e-mail for campaign managers, through the email channels; off without `cron`. */
    digest: z
      .strictObject({
        cron: z.string().min(1).optional(),
        tz: z.string().min(1).default('UTC'),
        /** Recipients; default: each email channel's own `to`. */
        to: z.array(z.string().min(3)).optional(),
      })
      .default({ tz: 'UTC' }),
  })
  .superRefine((a, ctx) => {
    const seen = new Set<string>();
    a.channels.forEach((c, k) => {
      const name = c.name ?? c.type;
      if (seen.has(name))
        ctx.addIssue({
          code: 'custom',
          path: ['channels', k, 'name'],
          message: `two channels are named '${name}'; give each a distinct name`,
        });
      seen.add(name);
    });
    if (!isTimeZone(a.digest.tz))
      ctx.addIssue({
        code: 'custom',
        path: ['digest', 'tz'],
        message: `'${a.digest.tz}' is not a time zone; use an IANA name such as Europe/Berlin, America/New_York or UTC`,
      });
    if (a.digest.cron !== undefined) {
      try {
        CronExpressionParser.parse(a.digest.cron, isTimeZone(a.digest.tz) ? { tz: a.digest.tz } : {});
      } catch (error) {
        ctx.addIssue({
          code: 'custom',
          path: ['digest', 'cron'],
          message: `'${a.digest.cron}' is not a cron pattern (${(error as Error).message}); write five fields, such as "0 8 * * 1" (Mondays at 08:00)`,
        });
      }
    }
  });
export type AlertsConfig = z.infer<typeof alertsSchema>;

/** Who may use the HTTP API (`audience-sync serve`): viewers read, operators also act. */
export const roleSchema = z.enum(['viewer', 'operator']);
export type Role = z.infer<typeof roleSchema>;

const userNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, 'user and token names: letters, digits, . _ @ -, at most 64');

export const httpSchema = z
  .strictObject({
    /** People who log in with a password; `password_hash` from `audience-sync hash-password` (argon2id). */
    users: z
      .array(
        z.strictObject({
          name: userNameSchema,
          /** Absent: this user logs in only through the trusted proxy's user header. */
          password_hash: z
            .string()
            .regex(/^\$argon2id\$/, 'expected an argon2id hash from `audience-sync hash-password`')
            .optional(),
          role: roleSchema,
        }),
      )
      .default([]),
    /** Programs that send `Authorization: Bearer <token>`; `token_hash` from `audience-sync tokens create`. */
    tokens: z
      .array(
        z.strictObject({
          name: userNameSchema,
          token_hash: z
            .string()
            .regex(
              /^sha256:[0-9a-f]{64}$/,
              'expected sha256:<64 hex digits> from `audience-sync tokens create`',
            ),
          role: roleSchema,
        }),
      )
      .default([]),
    /** A login session ends this long after it started (or at logout, or when revoked). */
    session_hours: z
      .number()
      .positive()
      .max(24 * 90)
      .default(12),
    /** Secure cookies: `auto` when the request came over TLS (or a trusted proxy says X-Forwarded-Proto: https). */
    secure_cookies: z.enum(['auto', 'always', 'never']).default('auto'),
    /** Failed logins allowed per user name and per client address within `window_minutes`, then 429. */
    login_limit: z
      .strictObject({
        per_user: z.number().int().min(1).default(5),
        per_address: z.number().int().min(1).default(20),
        window_minutes: z
          .number()
          .positive()
          .max(24 * 60)
          .default(15),
      })
      .default({ per_user: 5, per_address: 20, window_minutes: 15 }),
    /** A reverse proxy in front of the API: its X-Forwarded-* headers (and user header) are believed from these addresses only. */
    trust_proxy: z
      .strictObject({
        /** Addresses or CIDR ranges of the proxy, e.g. [127.0.0.1, 10.0.0.0/8]. */
        addresses: z.array(z.string().min(1)).min(1),
        /** Header carrying the user the proxy authenticated (oauth2-proxy: X-Forwarded-User); off when absent. */
        user_header: z
          .string()
          .regex(/^[A-Za-z0-9-]+$/, 'a header name such as X-Forwarded-User')
          .optional(),
        /** Role of a proxy user not listed in `users`; absent: such users are refused. */
        default_role: roleSchema.optional(),
      })
      .optional(),
  })
  .superRefine((h, ctx) => {
    for (const list of ['users', 'tokens'] as const) {
      const seen = new Set<string>();
      h[list].forEach((entry, k) => {
        if (seen.has(entry.name))
          ctx.addIssue({ code: 'custom', path: [list, k, 'name'], message: `'${entry.name}' appears twice` });
        seen.add(entry.name);
      });
    }
  });
export type HttpConfig = z.infer<typeof httpSchema>;

export const consoleSchema = z.strictObject({
  /** The time zone the web console shows times in (an IANA name such as Europe/Berlin). */
  time_zone: z
    .string()
    .min(1)
    .default('UTC')
    .refine(isTimeZone, {
      error: (issue) =>
        `'${String(issue.input)}' is not a time zone; use an IANA name such as Europe/Berlin, America/New_York or UTC`,
    }),
});

/**
 * Where Redis is, as the REDIS_* environment variables say it (`src/config/redis.ts` maps one to the other):
 * one server (`url`), a Cluster (`cluster_nodes`) or a master the Sentinels watch (`sentinels`, with `url`
 * naming the master). Passwords come from the environment (`${VAR}`), as every credential does.
 */
export const redisSchema = z
  .strictObject({
    /** redis://host:port[/db] (rediss:// for TLS), or redis://<master name> with `sentinels`. */
    url: z.string().min(1).optional(),
    /** Some or all masters of a Redis Cluster, host:port. */
    cluster_nodes: z.array(z.string().min(1)).min(1).optional(),
    /** Addresses the Cluster's nodes announce (host:port) → where this process reaches them (host:port). */
    cluster_nat: z.record(z.string().min(1), z.string().min(1)).optional(),
    /** The Sentinels, host:port. */
    sentinels: z.array(z.string().min(1)).min(1).optional(),
    username: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    sentinel_username: z.string().min(1).optional(),
    sentinel_password: z.string().min(1).optional(),
    /** TLS to every server (and to the Sentinels). */
    tls: z.boolean().default(false),
  })
  .superRefine((r, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
    if (r.cluster_nodes && r.url)
      issue(
        'cluster_nodes',
        'a Cluster is given by its nodes alone: remove url (or cluster_nodes, for one server)',
      );
    if (r.cluster_nodes && r.sentinels)
      issue('sentinels', 'a Cluster fails over by itself: remove sentinels (or cluster_nodes, for Sentinel)');
    if (r.cluster_nat && !r.cluster_nodes)
      issue('cluster_nat', 'cluster_nat maps the nodes of cluster_nodes: give those');
    if (r.sentinels && !r.url)
      issue('url', 'name the master the Sentinels watch, as url: redis://<master name>');
    if (!r.url && !r.cluster_nodes)
      issue('url', "give url (one server, or the Sentinels' master) or cluster_nodes");
    if ((r.sentinel_username || r.sentinel_password) && !r.sentinels)
      issue(
        'sentinel_password',
        'sentinel_username and sentinel_password are for the Sentinels: give sentinels',
      );
  });
export type RedisConfig = z.infer<typeof redisSchema>;

export const configSchema = z
  .strictObject({
    version: z.literal(1).default(1),
    source: sourceSchema,
    profiles: profilesSchema.optional(),
    scoring: scoringSchema.default(scoringSchema.parse({})),
    segments: segmentsSchema.default({ map: 'default', actions: {} }),
    audiences: audiencesSchema.default(audiencesSchema.parse({})),
    destinations: z
      .record(
        z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'destination names: lowercase letters, digits, - and _'),
        destinationSchema,
      )
      .default({}),
    schedules: z.array(scheduleSchema).default([]),
    /**
     * Orders configs when workers disagree on the schedules: a higher version wins, and an older config
     * never overwrites a newer one (see "Schedules" in the README). Optional.
     */
    schedules_version: z.number().int().min(0).optional(),
    sync: syncSchema.default(syncSchema.parse({})),
    /** Where Redis is, instead of (or as well as, when they agree) the REDIS_* environment variables. */
    redis: redisSchema.optional(),
    history: historySchema.default(historySchema.parse({})),
    health: healthSchema.default(healthSchema.parse({})),
    privacy: privacySchema.default(privacySchema.parse({})),
    alerts: alertsSchema.default(alertsSchema.parse({})),
    http: httpSchema.default(httpSchema.parse({})),
    console: consoleSchema.default(consoleSchema.parse({})),
  })
  .superRefine(
    (c, ctx) => {
      // Checked even when other keys have problems, so that one run lists every bad entry.
      if (!Array.isArray(c.schedules)) return;
      const destinations =
        c.destinations && typeof c.destinations === 'object' ? Object.keys(c.destinations) : [];
      c.schedules.forEach((s, k) => {
        if (typeof s?.destination === 'string' && !destinations.includes(s.destination))
          ctx.addIssue({
            code: 'custom',
            path: ['schedules', k, 'destination'],
            message: `no destination named '${s.destination}' (${destinations.length ? `destinations: ${destinations.join(', ')}` : 'the config has no destinations'})`,
          });
      });
    },
    { when: () => true },
  );
export type Config = z.infer<typeof configSchema>;
