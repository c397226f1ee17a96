import { Option, type Command } from 'commander';
import type { RedisClient } from '../../src/redis-client.js';
import { connectors } from '../../connectors/index.js';
import { requestErasure } from '../../jobs/erasure.js';
import { adminQueue, queuePrefix } from '../../jobs/queues.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import type { ContactDeletion } from '../../src/connector.js';
import { ConfigError, ExitCode } from '../../src/errors.js';
import { auditLog, cliOperator, recordAudit } from '../../src/privacy/audit.js';
import { erasures } from '../../src/privacy/erasure.js';
import { liftedSuppressions, liftSuppression, suppressionEntries } from '../../src/privacy/suppression.js';
import { table } from './output.js';
import { connect, redisFor } from './sync.js';

/** The privacy commands: `forget`, `erasures`, `suppressions list|remove`, `audit`. */
export function registerPrivacyCommands(
  program: Command,
  configPath: () => string | undefined,
  done: (exit: ExitCode) => void,
): void {
  program
    .command('forget')
    .description(
      'forget a person: take them out of every audience on every destination (a worker does it) and keep them out ' +
        '(Mailchimp: untagged; with --mailchimp-delete, the contact is deleted too)',
    )
    .option('--email <email>', 'their email address')
    .option('--phone <phone>', 'their phone number, with its country code')
    .option('--customer-id <id>', 'their customer id in the source')
    .addOption(
      new Option(
        '--mailchimp-delete <mode>',
        'also delete the contact on Mailchimp destinations once untagged: archive, or permanent ' +
          '(WARNING: permanent deletion blocks re-import; the person can only come back by subscribing again themselves)',
      ).choices(['archive', 'permanent']),
    )
    .option('--json', 'print JSON')
    .action(
      async (opts: {
        email?: string;
        phone?: string;
        customerId?: string;
        mailchimpDelete?: ContactDeletion;
        json?: boolean;
      }) => {
        done(
          await withRedis(configPath(), async (redis, config) => {
            const queue = adminQueue(queuePrefix(config.sync.redis_prefix));
            queue.on('error', () => undefined);
            try {
              const { request, job } = await requestErasure(
                redis,
                queue,
                config,
                connectors,
                opts,
                cliOperator(),
                {
                  mailchimpDelete: opts.mailchimpDelete,
                },
              );
              process.stdout.write(
                opts.json
                  ? JSON.stringify({ erasure: request.id, job, destinations: request.destinations }) + '\n'
                  : `${request.id}\n`,
              );
              if (!opts.json)
                process.stderr.write(
                  `erasure ${request.id} recorded and queued (${job}) for ${request.destinations.join(', ')}; ` +
                    '`audience-sync erasures` shows its receipts\n',
                );
              return ExitCode.ok;
            } finally {
              await queue.close();
            }
          }),
        );
      },
    );

  program
    .command('erasures')
    .description('erasure requests and their receipt per destination (requested, sent, removed, failed)')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      done(
        await withRedis(configPath(), async (redis, config) => {
          const all = await erasures(redis, config.sync.redis_prefix);
          if (opts.json) {
            process.stdout.write(JSON.stringify({ erasures: all }) + '\n');
            return ExitCode.ok;
          }
          const rows = all.flatMap((e) =>
            e.receipts.map((r) => [
              e.id,
              e.requested_at,
              r.destination,
              r.status,
              r.removed_at ?? r.sent_at ?? r.failed_at ?? '',
              String(r.attempts),
              r.contact
                ? `${r.contact.mode === 'permanent' ? 'deleted for good' : 'archived'}: ${r.contact.deleted}` +
                  (r.contact.absent ? ` (${r.contact.absent} already gone)` : '')
                : '',
              r.reason ?? '',
            ]),
          );
          process.stdout.write(
            rows.length === 0
              ? 'no erasure requests\n'
              : table(
                  ['erasure', 'requested', 'destination', 'status', 'at', 'attempts', 'contact', 'reason'],
                  rows,
                ),
          );
          return ExitCode.ok;
        }),
      );
    });

  const suppressions = program
    .command('suppressions')
    .description('the suppression list: people no run adds to any audience');
  suppressions
    .command('list')
    .description('list the suppressions (ids and dates; digests only with --json) and the ones lifted')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      done(
        await withRedis(configPath(), async (redis, config) => {
          const p = config.sync.redis_prefix;
          const [active, lifted] = await Promise.all([
            suppressionEntries(redis, p),
            liftedSuppressions(redis, p),
          ]);
          if (opts.json) {
            process.stdout.write(JSON.stringify({ suppressions: active, lifted }) + '\n');
            return ExitCode.ok;
          }
          const rows = [
            ...active.map((s) => [
              s.id,
              s.added_at,
              'active',
              String(s.keys.length),
              String(s.hashes.length),
              '',
            ]),
            ...lifted.map((s) => [
              s.id,
              s.added_at,
              `lifted ${s.lifted_at} by ${s.lifted_by}`,
              '',
              '',
              s.reason,
            ]),
          ];
          process.stdout.write(
            rows.length === 0
              ? 'the suppression list is empty\n'
              : table(['id', 'added', 'state', 'keys', 'digests', 'reason'], rows),
          );
          return ExitCode.ok;
        }),
      );
    });
  suppressions
    .command('remove <id>')
    .description('lift a suppression (later runs may add the person again); needs a reason, which is kept')
    .requiredOption('--reason <text>', 'why (kept with the record; emails and numbers in it are masked)')
    .action(async (id: string, opts: { reason: string }) => {
      done(
        await withRedis(configPath(), async (redis, config) => {
          const p = config.sync.redis_prefix;
          const by = cliOperator();
          const lifted = await liftSuppression(redis, p, id, opts.reason, by.user);
          await recordAudit(redis, p, config.privacy.audit_keep_days, {
            ...by,
            action: 'remove suppression',
            detail: { suppression: id, reason: lifted.reason },
          });
          process.stderr.write(`suppression ${id} lifted\n`);
          return ExitCode.ok;
        }),
      );
    });

  program
    .command('audit')
    .description('the audit log of operator actions (who, what, when), newest first')
    .option('--limit <n>', 'at most this many entries', '100')
    .option('--json', 'print JSON')
    .action(async (opts: { limit: string; json?: boolean }) => {
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1)
        throw new ConfigError(`--limit: expected a whole number above 0, got '${opts.limit}'`);
      done(
        await withRedis(configPath(), async (redis, config) => {
          const entries = await auditLog(redis, config.sync.redis_prefix, {
            limit,
            since: new Date(Date.now() - config.privacy.audit_keep_days * 86_400_000),
          });
          if (opts.json) {
            process.stdout.write(JSON.stringify({ audit: entries }) + '\n');
            return ExitCode.ok;
          }
          const rows = entries.map((e) => [
            e.at,
            e.user,
            e.via,
            e.action,
            [e.destination, e.audience].filter(Boolean).join(' / '),
            Object.entries(e.detail ?? {})
              .map(([k, v]) => `${k}=${String(v)}`)
              .join(' '),
          ]);
          process.stdout.write(
            rows.length === 0
              ? 'no actions recorded\n'
              : table(['at', 'user', 'via', 'action', 'target', 'detail'], rows),
          );
          return ExitCode.ok;
        }),
      );
    });
}

async function withRedis(
  configFile: string | undefined,
  use: (redis: RedisClient, config: Config) => Promise<ExitCode>,
): Promise<ExitCode> {
  if (!configFile)
    throw new ConfigError('this command needs a config: pass --config FILE or create ./audience-sync.yaml');
  const { config } = loadConfig(configFile);
  const redis = redisFor();
  await connect(redis);
  try {
    return await use(redis, config);
  } finally {
    redis.disconnect();
  }
}
