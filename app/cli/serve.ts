import { connectors } from '../../connectors/index.js';
import { hashPassword, newToken, Sessions } from '../../src/api/auth.js';
import { startApi, type RunningApi } from '../../src/api/server.js';
import { queuePrefix } from '../../jobs/queues.js';
import { loadConfig } from '../../src/config/load.js';
import type { Role } from '../../src/config/schema.js';
import { ConfigError, ExitCode, UserError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { connect, redisFor } from './sync.js';

function needConfig(config: string | undefined): string {
  if (!config)
    throw new ConfigError('this command needs a config: pass --config FILE or create ./audience-sync.yaml');
  return config;
}

/** A port number from the command line, or a usage error naming the option. */
export function portOf(option: string, value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new UserError(`${option}: expected a port number 0..65535, got '${value}'`, ExitCode.usage);
  return port;
}

/** Starts the HTTP API for a config, warning when nobody could log in to it. */
export async function serveApi(
  configFile: string,
  options: { port: number; host: string },
  log: Logger,
): Promise<RunningApi> {
  const { http } = loadConfig(configFile).config;
  if (http.users.every((u) => !u.password_hash) && http.tokens.length === 0 && !http.trust_proxy?.user_header)
    log.warn(
      'http has no users with a password_hash, no tokens and no trust_proxy.user_header: nobody can log in (see "HTTP API" in README.md)',
    );
  return startApi({ configFile, connectors, log, port: options.port, host: options.host });
}

export async function runServe(
  options: { config?: string | undefined; port: string; host: string },
  log: Logger,
): Promise<ExitCode> {
  let signalled: (signal: string) => void = () => undefined;
  const signal = new Promise<string>((resolve) => (signalled = resolve));
  process.once('SIGTERM', () => signalled('SIGTERM'));
  process.once('SIGINT', () => signalled('SIGINT'));
  const api = await serveApi(
    needConfig(options.config),
    { port: portOf('--port', options.port), host: options.host },
    log,
  );
  log.info(`${await signal}: stopping the HTTP API`);
  await api.close();
  return ExitCode.ok;
}

/** Reads a password: without echo from a terminal (asked twice), else the whole of stdin less its last newline. */
async function readPassword(): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const chunk of stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks)
      .toString('utf8')
      .replace(/\r?\n$/, '');
  }
  const ask = (prompt: string) =>
    new Promise<string>((resolve, reject) => {
      process.stderr.write(prompt);
      let text = '';
      stdin.setRawMode(true);
      stdin.resume();
      const onData = (data: Buffer) => {
        for (const ch of data.toString('utf8')) {
          if (ch === '\r' || ch === '\n') {
            done();
            return resolve(text);
          }
          if (ch === '\u0003') {
            done();
            return reject(new UserError('cancelled', ExitCode.failed));
          }
          if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
          else text += ch;
        }
      };
      const done = () => {
        stdin.off('data', onData);
        stdin.setRawMode(false);
        stdin.pause();
        process.stderr.write('\n');
      };
      stdin.on('data', onData);
    });
  const first = await ask('Password: ');
  const again = await ask('Again: ');
  if (first !== again) throw new UserError('the two passwords differ; nothing printed', ExitCode.usage);
  return first;
}

export const MIN_PASSWORD = 10;

/** `hash-password`: the argon2id hash of a password read from stdin, for http.users[].password_hash. */
export async function runHashPassword(): Promise<ExitCode> {
  const password = await readPassword();
  if (password.length < MIN_PASSWORD)
    throw new UserError(
      `the password is ${password.length} characters long; use at least ${MIN_PASSWORD}`,
      ExitCode.usage,
    );
  process.stdout.write(`${await hashPassword(password)}\n`);
  return ExitCode.ok;
}

/** `tokens create`: a new API token, shown once, and the config entry holding its hash. */
export function runTokensCreate(options: { name: string; role: Role; json?: boolean }): ExitCode {
  if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(options.name))
    throw new UserError(`--name '${options.name}': use letters, digits, . _ @ -, at most 64`, ExitCode.usage);
  const { token, hash } = newToken();
  if (options.json)
    process.stdout.write(
      JSON.stringify({ name: options.name, role: options.role, token, token_hash: hash }) + '\n',
    );
  else
    process.stdout.write(
      `token (shown this once; keep it in your secret store): ${token}\n` +
        `add to http.tokens in the config:\n` +
        `  - { name: ${options.name}, role: ${options.role}, token_hash: "${hash}" }\n`,
    );
  return ExitCode.ok;
}

/** `sessions revoke --user NAME`: ends every login session of a user. */
export async function runSessionsRevoke(options: {
  config?: string | undefined;
  user: string;
  json?: boolean;
}): Promise<ExitCode> {
  const { config } = loadConfig(needConfig(options.config));
  const redis = redisFor();
  await connect(redis);
  try {
    const revoked = await new Sessions(redis, queuePrefix(config.sync.redis_prefix)).revokeUser(options.user);
    process.stdout.write(
      options.json
        ? JSON.stringify({ user: options.user, revoked }) + '\n'
        : `${revoked} session${revoked === 1 ? '' : 's'} of '${options.user}' ended\n`,
    );
    return ExitCode.ok;
  } finally {
    redis.disconnect();
  }
}
