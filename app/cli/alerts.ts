import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { digestHtml, digestOf, digestText, sendDigest } from '../../src/alerts/digest.js';
import { sendTestAlert } from '../../src/alerts/evaluate.js';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError, ExitCode, UserError } from '../../src/errors.js';
import { connect, redisFor } from './sync.js';

const NO_CONFIG = 'this command needs a config: pass --config FILE or create ./audience-sync.yaml';

/** `alerts test` and `digest`. */
export function registerAlertCommands(
  program: Command,
  configPath: () => string | undefined,
  done: (exit: ExitCode) => void,
): void {
  const alerts = program.command('alerts').description('alert channels (alerts.channels in the config)');
  alerts
    .command('test')
    .description('send a test alert through every channel, and say which worked')
    .action(async () => {
      const file = configPath();
      if (!file) throw new ConfigError(NO_CONFIG);
      const { config } = loadConfig(file);
      if (config.alerts.channels.length === 0)
        throw new UserError(
          'no alert channels: add webhook, slack or email entries to alerts.channels',
          ExitCode.usage,
          'see "Alerts" in README.md',
        );
      const results = await sendTestAlert(config);
      for (const r of results)
        process.stdout.write(`${r.channel}: ${r.ok ? 'sent' : `FAILED: ${r.error ?? 'unknown error'}`}\n`);
      done(results.every((r) => r.ok) ? ExitCode.ok : ExitCode.failed);
    });

  program
    .command('digest')
    .description(
      'the weekly digest: print it as text, write its HTML to a file, or send it through the email channels',
    )
    .option('--send', 'send it now through the email channels')
    .option('--out <file>', 'write the HTML to this file (a preview)')
    .action(async (opts: { send?: boolean; out?: string }) => {
      const file = configPath();
      if (!file) throw new ConfigError(NO_CONFIG);
      const { config } = loadConfig(file);
      const redis = redisFor();
      await connect(redis);
      try {
        if (opts.send) {
          const { sent } = await sendDigest(redis, config);
          process.stderr.write(`digest sent through ${sent.join(', ')}\n`);
        } else {
          const digest = await digestOf(redis, config);
          if (opts.out) writeFileSync(opts.out, digestHtml(digest));
          else process.stdout.write(digestText(digest));
        }
        done(ExitCode.ok);
      } finally {
        redis.disconnect();
      }
    });
}
