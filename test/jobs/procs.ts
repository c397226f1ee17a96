import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/** The CLI as users run it: `dist/app/cli/bin.js` in a child process, with its output and exit observed. */
export const BIN = path.resolve('dist/app/cli/bin.js');

export interface Proc {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves to the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** Resolves once stderr matches; rejects if the process exits first or `ms` pass. */
  waitFor(pattern: RegExp, ms?: number): Promise<void>;
  /** The exit code, or 'running' if the process has not exited within `ms`. */
  exitWithin(ms: number): Promise<number | null | 'running'>;
}

const all: ChildProcess[] = [];

/** Kills every process the helpers started (for `afterAll`). */
export function killAll(): void {
  for (const c of all) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

export function run(args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }): Proc {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd,
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  all.push(child);
  let out = '';
  let err = '';
  const watchers = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of watchers) w();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => {
    done = true;
    for (const w of watchers) w();
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(pattern, ms = 90_000) {
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          watchers.delete(check);
          reject(new Error(`no ${String(pattern)} within ${ms} ms; stderr:\n${err}`));
        }, ms);
        const check = () => {
          if (pattern.test(err)) {
            clearTimeout(timer);
            watchers.delete(check);
            resolve();
          } else if (done) {
            clearTimeout(timer);
            watchers.delete(check);
            reject(new Error(`exited (${child.exitCode}) before ${String(pattern)}; stderr:\n${err}`));
          }
        };
        watchers.add(check);
        check();
      });
    },
    async exitWithin(ms) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'running'>((resolve) => (timer = setTimeout(() => resolve('running'), ms)));
      const result = await Promise.race([exited, timeout]);
      clearTimeout(timer);
      return result;
    },
  };
}

/** Polls `probe` until it returns a value other than undefined; fails after `ms` with `what`. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  ms = 90_000,
) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
