/** Exit codes scripts can rely on (documented in the README). */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  partial: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** An error the user can act on: what failed, for which input, and what to do. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = ExitCode.failed,
    readonly hint?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad command-line usage or a configuration that does not validate (exit 2). */
export class ConfigError extends UserError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.usage, hint);
  }
}

/** A source that cannot be read, or whose rows are too broken to act on (exit 1). */
export class SourceError extends UserError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.failed, hint);
  }
}

export function describeError(error: unknown): string {
  if (error instanceof UserError)
    return error.hint ? `${error.message}\n  hint: ${error.hint}` : error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}
