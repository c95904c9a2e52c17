// Runs the real CLI (bin/workflow.js) as a separate OS process, the way a
// user does, so multi-process rules (locks, stop, force, crash) are tested
// across processes and not between two calls in one. bin/workflow.js runs the
// build in dist/, which `npm test` makes first (its pretest script).
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/workflow.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  child: ChildProcess;
  /** Everything printed so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves when the process has exited. */
  exited: Promise<CliResult>;
  /** Resolves when stdout+stderr match, rejects on exit or deadline. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/** `stdin`: a pipe (child.stdin) for what a user types, e.g. into `serve`'s console chat; otherwise none. */
export function startCli(args: string[], env: NodeJS.ProcessEnv, options: { stdin?: boolean } = {}): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'warn', ...env },
    stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.stdout!.on('data', (chunk) => {
    stdout += chunk;
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (chunk) => {
    stderr += chunk;
    for (const l of listeners) l();
  });
  const exited = new Promise<CliResult>((resolve) => {
    child.on('close', (code, signal) => {
      resolve({ code, signal, stdout, stderr });
      for (const l of listeners) l();
    });
  });
  let done = false;
  void exited.then(() => (done = true));
  return {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    exited,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = (stdout + stderr).match(pattern);
          if (match) {
            cleanup();
            resolve(match);
          } else if (done) {
            cleanup();
            reject(new Error(`process exited before printing ${pattern}:\n${stdout}\n${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${pattern}:\n${stdout}\n${stderr}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
  };
}

export function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return startCli(args, env).exited;
}

/** Polls `probe` until it returns a truthy value, or fails after the deadline. */
export async function eventually<T>(probe: () => Promise<T | undefined | null | false>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
