// Runs every benchmark case as its own child process (so peak RSS is per
// system) against one PostgreSQL server, and prints one Markdown table.
//
//   npm run bench -- [--subjects 100000] [--requests 2000] [--only engine|graphile-worker|graphile-worker-B|slack-ack,…]
//
// Server: DATABASE_URL when set, otherwise the embedded PostgreSQL (started in
// the OS temp directory and stopped at the end). Every case creates and drops
// its own database on it.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { redactUrl } from '../src/log.ts';
import { intFlag, openServer, parseFlags, REPO_ROOT, RESULT_PREFIX, serverFacts, type CaseResult } from './lib.ts';

/** graphile-worker's defaults run one job at a time; more than this many would take minutes. */
const DEFAULTS_CASE_MAX_ITEMS = 10_000;

interface Case {
  name: string;
  script: string;
  args: (items: number) => string[];
  items: (subjects: number) => number;
  /** throughput (default): items/s in the first table; latency: the Slack ack table. */
  kind?: 'throughput' | 'latency';
}

const CASES: Case[] = [
  { name: 'engine', script: 'bench/noop-engine.ts', args: (n) => ['--subjects', String(n)], items: (n) => n },
  { name: 'graphile-worker-A', script: 'bench/peers/graphile-worker.ts', args: (n) => ['--config', 'A', '--jobs', String(n)], items: (n) => n },
  { name: 'graphile-worker-B', script: 'bench/peers/graphile-worker.ts', args: (n) => ['--config', 'B', '--jobs', String(n)], items: (n) => n },
  {
    name: 'graphile-worker-C',
    script: 'bench/peers/graphile-worker.ts',
    args: (n) => ['--config', 'C', '--jobs', String(n)],
    items: (n) => Math.min(n, DEFAULTS_CASE_MAX_ITEMS),
  },
  // Slash-command ack latency (HTTP mode), idle and beside a run; its size is --requests, not --subjects.
  { name: 'slack-ack', script: 'bench/slack-ack.ts', args: (n) => ['--requests', String(n)], items: () => requests, kind: 'latency' },
];

const flags = parseFlags(process.argv.slice(2));
const subjects = intFlag(flags, 'subjects', 100_000);
const requests = intFlag(flags, 'requests', 2_000);
const only = flags.get('only');
const wanted = typeof only === 'string' ? only.split(',').map((s) => s.trim()).filter(Boolean) : [];
const cases = wanted.length === 0 ? CASES : CASES.filter((c) => wanted.some((w) => c.name === w || c.name.startsWith(`${w}-`)));
if (cases.length === 0) {
  process.stderr.write(`--only ${String(only)} matches no case; cases: ${CASES.map((c) => c.name).join(', ')}\n`);
  process.exit(2);
}

const loadBefore = os.loadavg();
const server = await openServer();
const outcomes: { name: string; result?: CaseResult; error?: string }[] = [];
let facts: Record<string, string> = {};
try {
  facts = await serverFacts(server.url);
  process.stderr.write(`server: ${server.kind} PostgreSQL ${facts.server_version}\n`);
  for (const c of cases) {
    const items = c.items(subjects);
    process.stderr.write(`\n== ${c.name} (${items} items)\n`);
    outcomes.push({ name: c.name, ...(await runCase(c.script, c.args(items), server.url)) });
  }
} finally {
  await server.release();
}

process.stdout.write(`\n${environment()}\n\n${[table(), latencyTable()].filter(Boolean).join('\n\n')}\n`);
const failed = outcomes.filter((o) => o.error);
for (const o of failed) process.stdout.write(`\n${o.name} failed: ${o.error}\n`);
process.exit(failed.length > 0 ? 1 : 0);

function runCase(script: string, args: string[], databaseUrl: string): Promise<{ result?: CaseResult; error?: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, script), ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, DATABASE_URL: databaseUrl },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let result: CaseResult | undefined;
    let buffered = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.startsWith(RESULT_PREFIX)) {
          result = JSON.parse(line.slice(RESULT_PREFIX.length)) as CaseResult;
          process.stderr.write(`   ${result.items} items in ${result.seconds.toFixed(2)} s = ${result.itemsPerSecond.toFixed(0)}/s, peak RSS ${result.peakRssMb.toFixed(0)} MB\n`);
        } else {
          process.stderr.write(`${line}\n`);
        }
      }
    });
    child.on('error', (error) => resolve({ error: error.message }));
    child.on('close', (code, signal) => {
      if (code === 0 && result) resolve({ result });
      else resolve({ error: `exit ${code ?? signal}${result ? '' : ', no result line'}` });
    });
  });
}

function environment(): string {
  const memGb = (os.totalmem() / 1024 ** 3).toFixed(1);
  const pg = `PostgreSQL ${facts.server_version} (${server.kind}; shared_buffers ${facts.shared_buffers}, synchronous_commit ${facts.synchronous_commit}, fsync ${facts.fsync}, max_wal_size ${facts.max_wal_size})`;
  const load = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' ');
  return [
    `- date: ${new Date().toISOString()}`,
    `- machine: ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model.trim() ?? '?'}), ${memGb} GiB memory, ${os.type()} ${os.release()}`,
    `- node ${process.version}, ${pg}`,
    `- engine code: ${codeVersion()}`,
    `- load average (1/5/15 min) before: ${load(loadBefore)}, after: ${load(os.loadavg())}`,
    `- command: ${process.env.DATABASE_URL ? `DATABASE_URL=${redactUrl(process.env.DATABASE_URL)} ` : ''}npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
  ].join('\n');
}

function codeVersion(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = git('status', '--porcelain', '--', 'src', 'migrations') !== '';
    const diff = dirty ? createHash('sha256').update(git('diff', 'HEAD', '--', 'src', 'migrations')).digest('hex').slice(0, 12) : '';
    return `commit ${git('rev-parse', '--short', 'HEAD')}${dirty ? ` + uncommitted changes in src/ or migrations/ (diff sha256 ${diff})` : ''}`;
  } catch {
    return 'unknown (no git)';
  }
}

function isLatency(name: string): boolean {
  return CASES.find((c) => c.name === name)?.kind === 'latency';
}

function table(): string {
  const engine = outcomes.find((o) => o.name === 'engine')?.result;
  const header = ['system', 'config', 'items', 'seconds', 'items/s', 'vs engine', 'peak RSS MB', 'node CPU s'];
  const throughput = outcomes.filter((o) => !isLatency(o.name));
  if (throughput.length === 0) return '';
  const rows = throughput.map(({ name, result, error }) => {
    if (!result) return [name, `failed: ${error}`, '', '', '', '', '', ''];
    return [
      result.system,
      result.config,
      String(result.items),
      result.seconds.toFixed(2),
      result.itemsPerSecond.toFixed(0),
      engine ? `${(result.itemsPerSecond / engine.itemsPerSecond).toFixed(2)}×` : '–',
      result.peakRssMb.toFixed(0),
      result.cpuSeconds.toFixed(1),
    ];
  });
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map((_, i) => (i >= 2 ? '---:' : '---'))), ...rows.map(line)].join('\n');
}

/** Slack acknowledgement latency (bench/slack-ack.ts): ms from request to response, idle and beside a run. */
function latencyTable(): string {
  const latency = outcomes.filter((o) => isLatency(o.name));
  if (latency.length === 0) return '';
  type Stats = { p50: number; p99: number; max: number };
  const header = ['system', 'config', 'requests', 'idle p50 ms', 'idle p99 ms', 'run p50 ms', 'run p99 ms', 'run max ms', 'run items/s meanwhile', 'p99 < 50 ms', 'peak RSS MB'];
  const rows = latency.map(({ name, result, error }) => {
    if (!result) return [name, `failed: ${error}`, ...header.slice(2).map(() => '')];
    const details = result.details as { latencyMs: { idle: Stats; loaded: Stats }; runItemsPerSecondDuringLoaded: number; meetsTarget: boolean };
    const { idle, loaded } = details.latencyMs;
    return [
      result.system,
      result.config,
      String(result.items),
      idle.p50.toFixed(1),
      idle.p99.toFixed(1),
      loaded.p50.toFixed(1),
      loaded.p99.toFixed(1),
      loaded.max.toFixed(1),
      details.runItemsPerSecondDuringLoaded.toFixed(0),
      details.meetsTarget ? 'yes' : 'no',
      result.peakRssMb.toFixed(0),
    ];
  });
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map((_, i) => (i >= 2 ? '---:' : '---'))), ...rows.map(line)].join('\n');
}
