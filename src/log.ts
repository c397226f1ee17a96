import { pino, type Logger, type DestinationStream } from 'pino';
import { redact, REDACTED } from './redact.js';

export type { Logger };

/** Keys that may hold credentials or personal data; pino replaces them wherever they appear. */
const REDACT = [
  'token',
  'access_token',
  'api_key',
  'authorization',
  'password',
  'email',
  'phone',
  '*.token',
  '*.access_token',
  '*.api_key',
  '*.authorization',
  '*.Authorization',
  '*.password',
  '*.email',
  '*.phone',
  '*.headers.authorization',
  '*.headers.Authorization',
];

/**
 * Logs go to stderr: JSON lines when stderr is not a terminal (services, CI, pipes), short
 * human lines in a terminal. Results never go through the logger. Every line is redacted as a whole
 * before it is written (`src/redact.ts`), whatever it holds: an SDK error logged raw cannot leak either.
 */
export function createLogger(
  options: { level?: string; json?: boolean; stream?: DestinationStream } = {},
): Logger {
  const json = options.json ?? !process.stderr.isTTY;
  const level = options.level ?? process.env.LOG_LEVEL ?? 'info';
  const stream = options.stream ?? (json ? pino.destination({ dest: 2, sync: true }) : humanStream());
  return pino(
    {
      level,
      base: undefined,
      redact: { paths: REDACT, censor: REDACTED },
      // The serialized line: `[redacted]` needs no escaping, so it stays one line of valid JSON.
      hooks: { streamWrite: redact },
    },
    stream,
  );
}

function humanStream(): DestinationStream {
  const names: Record<number, string> = {
    10: 'trace',
    20: 'debug',
    30: '',
    40: 'warning: ',
    50: 'error: ',
    60: 'fatal: ',
  };
  return {
    write(line: string) {
      const {
        level,
        msg,
        time: _t,
        ...rest
      } = JSON.parse(line) as { level: number; msg?: string; time?: number };
      const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
      process.stderr.write(`${names[level] ?? ''}${msg ?? ''}${extra}\n`);
    },
  };
}
