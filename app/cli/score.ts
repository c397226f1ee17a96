import path from 'node:path';
import { configSchema, type Config } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError, describeError, ExitCode } from '../../src/errors.js';
import { queuePrefix } from '../../jobs/queues.js';
import { KeyFollower } from '../../src/history/follow.js';
import { logSnapshot, recordScoring, type SnapshotOutcome } from '../../src/history/snapshots.js';
import { connect, redisFor } from './sync.js';
import type { Logger } from '../../src/log.js';
import { segmentCustomers, type Segmented } from '../../src/score/pipeline.js';
import { formatDay } from '../../src/source/parse.js';
import { pct } from '../../src/source/read.js';
import { logReadReport, readSummary } from '../../src/source/report.js';
import { csvField, LineWriter, progressBar, table, thousands } from './output.js';

export interface ScoreOptions {
  config?: string | undefined;
  input?: string;
  shape?: string;
  analysisDate?: string;
  method?: string;
  monetary?: string;
  maxBadRowShare?: string;
  encoding?: string;
  delimiter?: string;
  format: string;
  out?: string;
  json?: boolean;
  /** Record the segment snapshot (default when the config's source is scored). */
  record?: boolean;
}

/** The config a `score` run uses: the file's, with command-line flags on top; or flags alone. */
export function scoreConfig(options: ScoreOptions, cwd = process.cwd()): { config: Config; baseDir: string } {
  let raw: Record<string, unknown> = {};
  let baseDir = cwd;
  if (options.config) {
    const loaded = loadConfig(options.config);
    raw = structuredClone(loaded.config) as unknown as Record<string, unknown>;
    baseDir = loaded.dir;
  } else if (!options.input) {
    throw new ConfigError(
      'score needs --input FILE, or a config (--config FILE or ./audience-sync.yaml)',
      'e.g. audience-sync score --input orders.csv --analysis-date 2026-01-01',
    );
  }
  if (options.input) {
    raw.source = {
      type: 'csv',
      path: path.resolve(cwd, options.input),
      ...(options.shape ? { shape: options.shape } : {}),
    };
  } else if (options.shape) {
    (raw.source as Record<string, unknown>).shape = options.shape;
  }
  const scoring = { ...((raw.scoring as object | undefined) ?? {}) } as Record<string, unknown>;
  if (options.analysisDate) scoring.analysis_date = options.analysisDate;
  if (options.method) scoring.method = options.method;
  if (options.monetary) scoring.monetary = options.monetary;
  raw.scoring = scoring;
  if (options.maxBadRowShare !== undefined)
    (raw.source as Record<string, unknown>).max_bad_row_share = Number(options.maxBadRowShare);
  if (options.encoding) (raw.source as Record<string, unknown>).encoding = options.encoding;
  if (options.delimiter)
    (raw.source as Record<string, unknown>).delimiter =
      options.delimiter === 'tab' ? '\t' : options.delimiter;
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const flag = FLAG_OF[issue.path.join('.')] ?? issue.path.join('.');
    throw new ConfigError(`${flag}: ${issue.message}`, 'see audience-sync score --help');
  }
  return { config: parsed.data, baseDir };
}

const FLAG_OF: Record<string, string> = {
  'source.shape': '--shape',
  'scoring.analysis_date': '--analysis-date',
  'scoring.method': '--method',
  'scoring.monetary': '--monetary',
  'source.max_bad_row_share': '--max-bad-row-share',
  'source.encoding': '--encoding',
  'source.delimiter': '--delimiter',
};

export async function runScore(options: ScoreOptions, log: Logger): Promise<ExitCode> {
  if (options.format !== 'csv' && options.format !== 'jsonl')
    throw new ConfigError(`--format: expected csv or jsonl, got '${options.format}'`);
  const { config, baseDir } = scoreConfig(options);
  const bar = progressBar('reading');
  const started = performance.now();
  // The config's own source is the one whose history the API shows; a file given by --input is a one-off.
  const recording = options.config && !options.input && options.record !== false;
  // The snapshot's keys, made on a thread while the source is read.
  const keys = recording ? KeyFollower.start() : undefined;
  let result: Segmented;
  try {
    result = await segmentCustomers(config, {
      baseDir,
      onProgress: (p) => bar.update(p.done, p.total, p.rows),
      ...(keys ? { onCustomers: keys.follow } : {}),
    });
  } catch (error) {
    keys?.stop();
    throw error;
  } finally {
    bar.stop();
  }
  let snapshot: SnapshotOutcome | undefined;
  try {
    await writeScores(result, config, options);
    snapshot = recording ? await record(config, result, keys) : undefined;
  } finally {
    keys?.stop();
  }
  report(result, config, options, log, performance.now() - started, snapshot);
  return ExitCode.ok;
}

async function record(config: Config, result: Segmented, keys?: KeyFollower): Promise<SnapshotOutcome> {
  const redis = redisFor();
  try {
    await connect(redis);
    return await recordScoring(redis, queuePrefix(config.sync.redis_prefix), config, result, 'score', keys);
  } catch (error) {
    return { status: 'failed', reason: `${describeError(error)} (--no-record skips it)` };
  } finally {
    redis.disconnect();
  }
}

async function writeScores(result: Segmented, config: Config, options: ScoreOptions): Promise<void> {
  const { customers, scores } = result;
  const third = config.scoring.third_dimension;
  const valueName = customers.shape === 'scores' || third === 'monetary' ? 'monetary' : third;
  const known = customers.shape !== 'scores';
  const out = LineWriter.open(options.out);
  const jsonl = options.format === 'jsonl';
  if (!jsonl)
    await out.line(
      ['customer_id', 'recency_days', 'frequency', valueName, 'r', 'f', 'm', 'rfm_code', 'segment'].join(','),
    );
  for (let i = 0; i < customers.ids.length; i++) {
    const r = scores.r[i]!;
    const f = scores.f[i]!;
    const m = scores.m[i]!;
    const code = r > 0 ? r * 100 + f * 10 + m : null;
    const segment = scores.segments[scores.segment[i]!]!;
    if (jsonl) {
      await out.line(
        JSON.stringify({
          customer_id: customers.ids.get(i),
          recency_days: known ? customers.recencyDays[i] : null,
          frequency: known ? customers.frequency[i] : null,
          [valueName]: known ? customers.value[i] : null,
          r: r || null,
          f: f || null,
          m: m || null,
          rfm_code: code,
          segment,
        }),
      );
    } else {
      const cells = known
        ? [String(customers.recencyDays[i]), String(customers.frequency[i]), String(customers.value[i])]
        : ['', '', ''];
      await out.line(
        `${csvField(customers.ids.get(i)!)},${cells.join(',')},${r || ''},${f || ''},${m || ''},${code ?? ''},${csvField(segment)}`,
      );
    }
  }
  await out.close();
}

function report(
  result: Segmented,
  config: Config,
  options: ScoreOptions,
  log: Logger,
  ms: number,
  snapshot: SnapshotOutcome | undefined,
): void {
  const { customers, sizes, report: read, scores } = result;
  const summary = {
    analysis_date: formatDay(result.analysisDay),
    method: config.scoring.method,
    shape: customers.shape,
    customers: customers.ids.length,
    ...readSummary(read),
    segments: sizes.map((s) => ({
      segment: s.segment,
      customers: s.customers,
      share: s.share,
      opted_out: s.optedOut,
    })),
    ...(scores.breaks ? { breaks: scores.breaks } : {}),
    warnings: result.map.warnings,
    ...(snapshot ? { snapshot } : {}),
    seconds: Math.round(ms) / 1000,
  };
  if (options.json) {
    process.stderr.write(JSON.stringify(summary) + '\n');
    return;
  }
  for (const w of summary.warnings) log.warn(w);
  logReadReport(read, log);
  if (snapshot) logSnapshot(snapshot, log);
  const rows = sizes.map((s) => [
    s.segment,
    thousands(s.customers),
    pct(s.share),
    thousands(s.optedOut),
    s.action ?? '',
  ]);
  process.stderr.write(
    `\n${thousands(customers.ids.length)} customers from ${thousands(read.source.rows)} ${customers.shape} rows, ${config.scoring.method} scores as of ${summary.analysis_date} (${summary.seconds} s)\n\n` +
      table(['segment', 'customers', 'share', 'opted out', 'suggested action'], rows) +
      '\n',
  );
}
