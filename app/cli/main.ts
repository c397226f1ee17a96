import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { resolveConfigPath, loadConfig } from '../../src/config/load.js';
import { describeError, ExitCode, UserError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { buildSegmentMap } from '../../src/segment/maps.js';
import { runScore, type ScoreOptions } from './score.js';
import { runBackfill, type BackfillOptions } from './backfill.js';
import { destinationsOf, runCheck, runPlan, runSync, type SyncCommandOptions } from './sync.js';
import { runAdmin, runSchedules, runStatus, runWorker } from './jobs.js';
import { registerPrivacyCommands } from './privacy.js';
import { registerAlertCommands } from './alerts.js';
import { checkSchedules } from '../../jobs/schedules.js';
import { generateShop } from '../../src/example/generate.js';

/** Lets an audience past the removal brake for one run (repeatable; `*` for every audience). */
const ALLOW_REMOVALS = [
  '--allow-removals <audience>',
  'let this audience lose more than sync.max_removal_share of its members in this run (repeat it; * for all)',
  (value: string, previous: string[] = []) => [...previous, value],
] as const;
const ALLOW_SHRINK = [
  '--allow-shrink',
  'go ahead although the source has fewer rows than source.max_shrink_share allows since the last sync',
] as const;

/** Runs the CLI and resolves to the exit code (0 done, 1 failed, 2 bad usage or config, 3 partial). */
export async function main(argv: string[]): Promise<number> {
  const program = new Command('audience-sync')
    .description('RFM segments from your orders, kept in sync with Google Ads, Meta and Mailchimp audiences')
    .option('-c, --config <file>', 'configuration file (default: ./audience-sync.yaml when present)')
    .option('--log-level <level>', 'trace, debug, info, warn or error', process.env.LOG_LEVEL ?? 'info')
    .version(packageVersion(), '-V, --version', 'print the version and exit')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showHelpAfterError('(run with --help for usage)');

  let exit: number = ExitCode.ok;
  const logger = () => createLogger({ level: program.opts<{ logLevel: string }>().logLevel });
  const configPath = () => resolveConfigPath(program.opts<{ config?: string }>().config);

  program
    .command('score')
    .description('score customers by RFM and write one row per customer (CSV or JSON lines)')
    .option(
      '-i, --input <file>',
      'CSV of orders, customers or scores (without a config, or instead of its source)',
    )
    .addOption(
      new Option('--shape <shape>', 'input shape (recognised from the columns when omitted)').choices([
        'orders',
        'customers',
        'scores',
      ]),
    )
    .option('--analysis-date <date>', 'YYYY-MM-DD or today (default: the config, else today in UTC)')
    .addOption(
      new Option('--method <method>', 'binning method (default quantile)').choices(['quantile', 'ntile']),
    )
    .addOption(
      new Option('--monetary <how>', 'monetary value per customer (default sum)').choices(['sum', 'mean']),
    )
    .option('--max-bad-row-share <share>', 'stop when more than this share of rows is bad (default 0.01)')
    .addOption(
      new Option('--encoding <encoding>', 'text encoding of the input (default utf-8)').choices([
        'utf-8',
        'latin1',
        'windows-1252',
      ]),
    )
    .addOption(
      new Option('--delimiter <char>', 'field delimiter of the input (default: detected)').choices([
        ',',
        ';',
        'tab',
        '|',
      ]),
    )
    .addOption(new Option('--format <format>', 'output format').choices(['csv', 'jsonl']).default('csv'))
    .option('-o, --out <file>', 'write scores to a file (default: stdout)')
    .option('--json', 'print the summary as JSON on stderr instead of a table')
    .option('--no-record', "do not record the segment snapshot (recorded when the config's source is scored)")
    .action(async (opts: ScoreOptions) => {
      exit = await runScore({ ...opts, config: configPath() }, logger());
    });

  program
    .command('backfill')
    .description(
      "score an orders source as of past dates (one read) and record their segment snapshots, with today's opt-outs and profiles",
    )
    .option('--from <date>', 'first date, YYYY-MM-DD (no older than history.keep_days days)')
    .option('--to <date>', 'last date (default: the day before the oldest snapshot, else yesterday)')
    .option('--every <unit>', 'month (the same day of each month), week or day')
    .option('--json', 'print the dates as JSON')
    .action(async (opts: BackfillOptions) => {
      exit = await runBackfill({ ...opts, config: configPath() }, logger());
    });

  program
    .command('plan')
    .description(
      'show what a sync would do, per audience: to add, to remove, unchanged, skipped (touches nothing)',
    )
    .option('-d, --destination <name>', 'only this destination')
    .option('-a, --audience <name>', 'only this audience')
    .option('--full', 'plan a full resync (re-send everything)')
    .option(...ALLOW_REMOVALS)
    .option(...ALLOW_SHRINK)
    .option('--json', 'print the plan as JSON')
    .action(async (opts: SyncCommandOptions) => {
      exit = await runPlan({ ...opts, config: configPath() }, logger());
    });

  program
    .command('sync')
    .description('sync audiences to their destinations now (no worker needed)')
    .option('-d, --destination <name>', 'only this destination')
    .option('-a, --audience <name>', 'only this audience')
    .option('--full', 're-send everything, or replace where the platform can')
    .option('--dry-run', 'sync to a file destination under .audience-sync/dry-run instead of the platforms')
    .option(
      '--no-wait',
      'fail at once when another run (a worker or another sync) is syncing the same audiences',
    )
    .option(...ALLOW_REMOVALS)
    .option(...ALLOW_SHRINK)
    .option('--json', 'print the results as JSON')
    .action(async (opts: SyncCommandOptions) => {
      exit = await runSync({ ...opts, config: configPath() }, logger());
    });

  program
    .command('check')
    .description("test each destination's credentials, permissions and reachability (no side effects)")
    .option('-d, --destination <name>', 'only this destination')
    .option('--json', 'print the checks as JSON')
    .option(
      '--via-worker',
      "run the checks on a worker, through the admin queue (the worker's credentials and network)",
    )
    .action(async (opts: SyncCommandOptions & { viaWorker?: boolean }) => {
      if (opts.viaWorker) {
        if (!opts.destination)
          throw new UserError('check --via-worker needs --destination <name>', ExitCode.usage);
        exit = await runAdmin(
          'check',
          { config: configPath(), destination: opts.destination, wait: true, json: true },
          logger(),
        );
      } else exit = await runCheck({ ...opts, config: configPath() }, logger());
    });

  program
    .command('worker')
    .description('run sync jobs (scheduled and requested) from Redis until SIGTERM/SIGINT')
    .option(
      '--concurrency <n>',
      'sync jobs at once in this process (different destinations or audiences; their identity tables held within sync.table_memory_mb)',
      '2',
    )
    .option(
      '--metrics-port <port>',
      'serve Prometheus /metrics and /healthz on this port',
      process.env.METRICS_PORT,
    )
    .option(
      '--metrics-host <host>',
      'address for --metrics-port (0.0.0.0: every interface)',
      process.env.METRICS_HOST ?? '127.0.0.1',
    )
    .option('--http-port <port>', 'also serve the HTTP API on this port (see serve)', process.env.HTTP_PORT)
    .option('--http-host <host>', 'address for --http-port', process.env.HTTP_HOST ?? '127.0.0.1')
    .option(
      '--allow-volatile-redis',
      'run even if Redis can lose the state (no persistence, or eviction); also AUDIENCE_SYNC_ALLOW_VOLATILE_REDIS=1',
      ['1', 'true', 'yes'].includes(process.env.AUDIENCE_SYNC_ALLOW_VOLATILE_REDIS ?? ''),
    )
    .action(
      async (opts: {
        concurrency: string;
        metricsPort?: string;
        metricsHost: string;
        httpPort?: string;
        httpHost: string;
        allowVolatileRedis?: boolean;
      }) => {
        exit = await runWorker({ ...opts, config: configPath() }, logger());
      },
    );

  program
    .command('serve')
    .description('serve the HTTP API (JSON under /api/v1, with login) until SIGTERM/SIGINT')
    .option('--port <port>', 'port to listen on', process.env.HTTP_PORT ?? '8787')
    .option(
      '--host <host>',
      'address to listen on (0.0.0.0: every interface)',
      process.env.HTTP_HOST ?? '127.0.0.1',
    )
    .action(async (opts: { port: string; host: string }) => {
      const { runServe } = await import('./serve.js');
      exit = await runServe({ ...opts, config: configPath() }, logger());
    });

  program
    .command('hash-password')
    .description(
      'print the argon2id hash of a password read from stdin (no echo in a terminal), for http.users',
    )
    .action(async () => {
      const { runHashPassword } = await import('./serve.js');
      exit = await runHashPassword();
    });

  const tokens = program.command('tokens').description('API tokens for the HTTP API');
  tokens
    .command('create')
    .description('print a new API token (once) and the http.tokens entry holding its hash')
    .requiredOption('--name <name>', 'who or what uses the token (e.g. ci, grafana)')
    .addOption(
      new Option('--role <role>', 'what the token may do').choices(['viewer', 'operator']).default('viewer'),
    )
    .option('--json', 'print JSON')
    .action(async (opts: { name: string; role: 'viewer' | 'operator'; json?: boolean }) => {
      const { runTokensCreate } = await import('./serve.js');
      exit = runTokensCreate(opts);
    });

  const sessions = program.command('sessions').description('login sessions of the HTTP API');
  sessions
    .command('revoke')
    .description('end every login session of a user (their cookies stop working at once)')
    .requiredOption('--user <name>', 'the user')
    .option('--json', 'print JSON')
    .action(async (opts: { user: string; json?: boolean }) => {
      const { runSessionsRevoke } = await import('./serve.js');
      exit = await runSessionsRevoke({ ...opts, config: configPath() });
    });

  program
    .command('resync')
    .description('ask the workers for a sync now, through the admin queue; prints the job id')
    .requiredOption('-d, --destination <name>', 'destination to sync')
    .option('-a, --audience <name>', 'only this audience')
    .option('--full', 're-send everything (never replaced by an incremental run)')
    .option(...ALLOW_REMOVALS)
    .option(...ALLOW_SHRINK)
    .option('--wait', 'follow the job to its end and print its result')
    .option('--json', 'print JSON')
    .action(
      async (opts: {
        destination: string;
        audience?: string;
        full?: boolean;
        wait?: boolean;
        json?: boolean;
        allowRemovals?: string[];
        allowShrink?: boolean;
      }) => {
        exit = await runAdmin('resync', { ...opts, config: configPath() }, logger());
      },
    );

  for (const action of ['pause', 'resume'] as const)
    program
      .command(action)
      .description(`${action} a destination's syncs (through the admin queue)`)
      .requiredOption('-d, --destination <name>', 'destination')
      .option('--wait', 'wait until a worker has done it')
      .action(async (opts: { destination: string; wait?: boolean }) => {
        exit = await runAdmin(action, { ...opts, config: configPath() }, logger());
      });

  program
    .command('stats')
    .description("read each audience's size and match rate from a destination's platform now, on a worker")
    .requiredOption('-d, --destination <name>', 'destination')
    .option('--wait', 'wait until a worker has read them')
    .action(async (opts: { destination: string; wait?: boolean }) => {
      exit = await runAdmin('stats', { ...opts, config: configPath() }, logger());
    });

  registerPrivacyCommands(program, configPath, (code) => (exit = code));
  registerAlertCommands(program, configPath, (code) => (exit = code));

  program
    .command('schedules')
    .description(
      "make Redis's schedules exactly the config's, unless Redis holds a newer config's (workers also do this)",
    )
    .option('--force', "apply this config's schedules even if Redis holds newer ones (a deliberate rollback)")
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean; force?: boolean }) => {
      exit = await runSchedules({ ...opts, config: configPath() });
    });

  program
    .command('status')
    .description(
      'per destination audience: last run, its counts, platform size and match rate, next scheduled run',
    )
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      exit = await runStatus({ ...opts, config: configPath() });
    });

  program
    .command('validate')
    .description('check a configuration file without touching any source or destination')
    .option('--json', 'print the result as JSON')
    .action((opts: { json?: boolean }) => {
      const file = configPath();
      if (!file)
        throw new UserError(
          'no config to validate: pass --config FILE or create ./audience-sync.yaml',
          ExitCode.usage,
        );
      const { config } = loadConfig(file);
      const map = buildSegmentMap(config.segments);
      if (Object.keys(config.destinations).length > 0) destinationsOf(config);
      checkSchedules(config);
      const result = {
        file,
        valid: true,
        source: config.source.type === 'csv' ? `csv ${config.source.path}` : 'postgres query',
        segments: map.names,
        destinations: Object.keys(config.destinations),
        schedules: config.schedules.length,
        warnings: map.warnings,
      };
      if (opts.json) process.stdout.write(JSON.stringify(result) + '\n');
      else {
        for (const w of map.warnings) process.stderr.write(`warning: ${w}\n`);
        process.stdout.write(
          `${file}: valid\n  source: ${result.source}\n  scoring: ${config.scoring.method}, ${config.scoring.third_dimension}, analysis date ${config.scoring.analysis_date}\n  segments: ${map.names.length} (${map.names.join(', ')})\n  destinations: ${result.destinations.join(', ') || 'none'}\n  schedules: ${config.schedules.length}${config.schedules_version !== undefined ? ` (schedules_version ${config.schedules_version})` : ''}\n`,
        );
      }
    });

  program
    .command('example')
    .description('write a deterministic synthetic shop (orders.csv, customers.csv) for trying things out')
    .requiredOption('--out <dir>', 'folder to write into')
    .option('--customers <n>', 'number of customers', '2000')
    .option('--seed <n>', 'random seed', '42')
    .option('--analysis-date <date>', 'last possible order date', '2026-01-01')
    .option('--orders-per-customer <k>', 'mean orders per customer', '5')
    .option('--bad-row-share <share>', 'share of order rows to make invalid', '0')
    .action(async (opts: Record<string, string>) => {
      const number = (name: string, value: string, integer = false): number => {
        const v = Number(value);
        if (!Number.isFinite(v) || v < 0 || (integer && !Number.isInteger(v)))
          throw new UserError(
            `--${name}: expected a ${integer ? 'whole ' : ''}number, got '${value}'`,
            ExitCode.usage,
          );
        return v;
      };
      const summary = await generateShop(opts.out!, {
        customers: number('customers', opts.customers!, true),
        seed: number('seed', opts.seed!, true),
        analysisDate: opts.analysisDate!,
        ordersPerCustomer: number('orders-per-customer', opts.ordersPerCustomer!),
        badRowShare: number('bad-row-share', opts.badRowShare!),
      });
      process.stdout.write(JSON.stringify(summary) + '\n');
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exit;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    process.stderr.write(`audience-sync: ${describeError(error)}\n`);
    if (error instanceof UserError) return error.exitCode;
    if (process.env.DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
    return ExitCode.failed;
  }
}

/** This package's version, from its package.json: the first one up from this file (app/cli, or dist/app/cli). */
function packageVersion(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version?: string };
      if (pkg.version) return pkg.version;
    } catch {
      // No package.json here: look further up.
    }
    if (path.dirname(dir) === dir) return 'unknown';
  }
}
