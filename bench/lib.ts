// Shared plumbing for the benchmarks: which server, fresh databases, peak RSS,
// and the one-line result a case prints for bench/run.ts to collect.
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pg from 'pg';

export const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** Where the embedded server lives when DATABASE_URL is unset (kept between runs: initdb is the slow part). */
export const EMBEDDED_DATA_DIR = path.join(os.tmpdir(), 'workflow-chatops-bench');

/** The line prefix a case prints its result JSON after. */
export const RESULT_PREFIX = 'BENCH_RESULT ';

export interface CaseResult {
  system: string;
  config: string;
  items: number;
  seconds: number;
  itemsPerSecond: number;
  /** process.resourceUsage().maxRSS: the kernel's high-water mark for the whole child process. */
  peakRssMb: number;
  /** Max of process.memoryUsage().rss sampled every 50 ms during the timed part. */
  sampledPeakRssMb: number;
  /** CPU time (user + system) this process spent during the timed part. */
  cpuSeconds: number;
  /** CPU time the database server spent during the timed part (measureServer); null when it is not on this machine. */
  serverCpuSeconds?: number | null;
  /** Anything else worth keeping (checks, server version, statement timings). */
  details?: Record<string, unknown>;
}

export interface Server {
  /** Connection string of the server's maintenance database (creating databases happens there). */
  url: string;
  kind: 'embedded' | 'external';
  /** Stops an embedded server this process started; a no-op otherwise. */
  release(): Promise<void>;
}

type EmbeddedModule = {
  ensureEmbeddedServer(dataDir: string, log?: unknown): Promise<string>;
  stopEmbeddedServer(dataDir: string, options?: { mode?: 'smart' | 'fast' }): Promise<unknown>;
};

/**
 * DATABASE_URL when set; otherwise the embedded PostgreSQL from src/db/embedded.ts,
 * started in EMBEDDED_DATA_DIR and stopped (fast) by `release`.
 */
export async function openServer(): Promise<Server> {
  const fromEnv = process.env.DATABASE_URL?.trim();
  if (fromEnv) return { url: fromEnv, kind: 'external', release: async () => {} };
  const modulePath = path.join(REPO_ROOT, 'src/db/embedded.ts');
  if (!existsSync(modulePath)) {
    throw new Error('DATABASE_URL is not set and src/db/embedded.ts does not exist yet: set DATABASE_URL to a PostgreSQL server');
  }
  const embedded = (await import(pathToFileURL(modulePath).href)) as EmbeddedModule;
  const url = await embedded.ensureEmbeddedServer(EMBEDDED_DATA_DIR);
  const release = async () => {
    await embedded.stopEmbeddedServer(EMBEDDED_DATA_DIR, { mode: 'fast' });
  };
  giveUpCleanups.push(release);
  return { url, kind: 'embedded', release };
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/** Creates (dropping any leftover of the same name) a database on the server; returns its URL and a drop function. */
export async function freshDatabase(serverUrl: string, name: string): Promise<{ url: string; drop(): Promise<void> }> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
  const admin = new pg.Client({ connectionString: serverUrl, application_name: 'bench-admin' });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const drop = async () => {
    const client = new pg.Client({ connectionString: serverUrl, application_name: 'bench-admin' });
    await client.connect();
    try {
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    } finally {
      await client.end();
    }
  };
  giveUpCleanups.push(drop);
  return { url: withDatabase(serverUrl, name), drop };
}

/** CPU time and event-loop delay (lag beyond a 10 ms timer) over the timed part. */
export function measureProcess(): { stop(): { cpuSeconds: number; eventLoopDelayMs: { p50: number; p99: number; max: number } } } {
  const cpu = process.cpuUsage();
  const resolutionMs = 10;
  const delay = monitorEventLoopDelay({ resolution: resolutionMs });
  delay.enable();
  return {
    stop() {
      delay.disable();
      const used = process.cpuUsage(cpu);
      // The histogram holds the time between timer ticks: the resolution plus the lag.
      const ms = (ns: number) => Math.max(0, Math.round(ns / 1e4) / 100 - resolutionMs);
      return {
        cpuSeconds: (used.user + used.system) / 1e6,
        eventLoopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) },
      };
    },
  };
}

/**
 * CPU time of the database server over the timed part, when it runs on this
 * machine: its postmaster's own time, its children's (reaped backends
 * included, through the kernel's cutime/cstime) and its live children's,
 * from /proc. The server shares the machine's CPUs with the client, so
 * client + server CPU per item is what a system costs here. null when the
 * server is elsewhere (its backend's pid is not on this machine).
 */
export async function measureServer(url: string): Promise<{ stop(): Promise<number | null> }> {
  const client = new pg.Client({ connectionString: url, application_name: 'bench-server-cpu' });
  await client.connect();
  let postmaster: number | null = null;
  try {
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    postmaster = procStat(rows[0]!.pid)?.ppid ?? null;
  } finally {
    await client.end();
  }
  const read = (): number | null => {
    if (postmaster === null) return null;
    const own = procStat(postmaster);
    if (!own) return null;
    let ticks = own.self + own.children;
    for (const child of childPids(postmaster)) ticks += procStat(child)?.self ?? 0;
    return ticks / CLOCK_TICKS;
  };
  const before = read();
  return {
    async stop() {
      const after = read();
      return before === null || after === null ? null : Math.round((after - before) * 100) / 100;
    },
  };
}

/** USER_HZ: /proc reports CPU times in these; 100 on Linux for all practical purposes. */
const CLOCK_TICKS = 100;

function procStat(pid: number): { ppid: number; self: number; children: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) in parentheses.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), self: Number(fields[11]) + Number(fields[12]), children: Number(fields[13]) + Number(fields[14]) };
  } catch {
    return undefined;
  }
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Samples RSS every 50 ms while running; `stop` returns the highest sample in MB. */
export function sampleRss(intervalMs = 50): { stop(): number } {
  let max = process.memoryUsage().rss;
  const timer = setInterval(() => {
    const rss = process.memoryUsage().rss;
    if (rss > max) max = rss;
  }, intervalMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      max = Math.max(max, process.memoryUsage().rss);
      return max / 1024 / 1024;
    },
  };
}

/** The kernel's peak RSS of this process so far, in MB (maxRSS is in KiB). */
export function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

export function printResult(result: CaseResult): void {
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
}

export async function serverFacts(url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url, application_name: 'bench-admin' });
  await client.connect();
  try {
    const facts: Record<string, string> = {};
    for (const name of ['server_version', 'shared_buffers', 'synchronous_commit', 'fsync', 'max_wal_size', 'work_mem', 'autovacuum']) {
      const { rows } = await client.query(`SHOW ${name}`);
      facts[name] = String(Object.values(rows[0] ?? {})[0] ?? '?');
    }
    return facts;
  } finally {
    await client.end();
  }
}

/** `--name value` and `--flag` parsing, enough for these scripts. */
export function parseFlags(argv: string[]): Map<string, string | true> {
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const eq = arg.indexOf('=');
    if (eq > 0) {
      flags.set(arg.slice(2, eq), arg.slice(eq + 1));
      continue;
    }
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      flags.set(arg.slice(2), next);
      i++;
    } else {
      flags.set(arg.slice(2), true);
    }
  }
  return flags;
}

export function intFlag(flags: Map<string, string | true>, name: string, fallback: number): number {
  const raw = flags.get(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} wants a positive integer, got ${String(raw)}`);
  return value;
}

const giveUpCleanups: (() => Promise<unknown>)[] = [];

/**
 * Ends a case that hangs (a lost job, a run that never ends) instead of waiting
 * forever: drops its database, stops an embedded server it started, exits 3.
 */
export function watchdog(seconds = Number(process.env.BENCH_TIMEOUT_SECONDS ?? 600)): void {
  setTimeout(() => {
    process.stderr.write(`benchmark case still running after ${seconds} s; giving up (BENCH_TIMEOUT_SECONDS)\n`);
    // Dropping the database cuts the system's connections under it; what it throws now does not matter.
    process.on('unhandledRejection', () => {});
    process.on('uncaughtException', () => {});
    const cleanups = [...giveUpCleanups].reverse().reduce<Promise<unknown>>((chain, fn) => chain.then(fn).catch(() => {}), Promise.resolve());
    void Promise.race([cleanups, new Promise((resolve) => setTimeout(resolve, 15_000))]).then(() => process.exit(3));
  }, seconds * 1000).unref();
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Polls `probe` every `everyMs` until it gives a value, or throws naming `what` once `timeoutMs` has passed. */
export async function until<T>(probe: () => Promise<T | undefined | null | false>, what: string, timeoutMs = 30_000, everyMs = 5): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
