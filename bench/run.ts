// Runs every benchmark case as its own child process (so peak RSS is per
// system) against one PostgreSQL server, prints one table of figures against
// the performance issue's targets plus the per-system no-op throughput table
// (and the Slack ack table), and records them in bench/RESULTS.md.
//
//   npm run bench -- [--quick | --full] [--only engine,pg-boss,scale,…] [--subjects 100000]
//                    [--scale-subjects N] [--requests 2000] [--reps 3] [--no-record]
//
// The no-op comparison (engine, graphile-worker B, pg-boss B and C, the plain-SQL
// floor) runs --reps times, interleaved (engine, peers, floor, engine, …), and
// each is reported by its median run; the other cases run once.
//
// Server: DATABASE_URL when set, otherwise the embedded PostgreSQL (started in
// the OS temp directory and stopped at the end). Every case creates and drops
// its own database on it.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { redactUrl } from '../src/log.ts';
import { intFlag, openServer, parseFlags, REPO_ROOT, RESULT_PREFIX, serverFacts, type CaseResult } from './lib.ts';

/** graphile-worker's defaults run one job at a time; more than this many would take minutes. */
const DEFAULTS_CASE_MAX_ITEMS = 10_000;
/** One pg-boss worker takes at most 500 jobs per 0.5 s polling interval (1,000/s). */
const PGBOSS_ONE_WORKER_MAX_ITEMS = 20_000;

type Kind = 'throughput' | 'latency' | 'figures';

interface Case {
  name: string;
  script: string;
  args: () => string[];
  /** throughput (default): the no-op table; latency: the Slack ack table; figures: the figures table only. */
  kind?: Kind;
  /** Left out by --quick. */
  slow?: boolean;
  /** Written by someone else and may not exist yet: its absence is reported, not a failure. */
  optional?: boolean;
  /** Part of the no-op comparison: run --reps times, interleaved with the others, reported by its median. */
  compared?: boolean;
  /** Flags for the case's node process. */
  nodeArgs?: string[];
}

/**
 * The V8 flag `npm start` runs the service with (package.json): Node 24's
 * default young generation grows to several times Node 22's when many
 * objects survive a scavenge, as a run's pages do, which costs ~80 MB of
 * RSS and no speed (docs/operations.md, Memory; the figures are in RESULTS.md).
 */
const SERVICE_NODE_ARGS = ['--max-semi-space-size=16'];

const flags = parseFlags(process.argv.slice(2));
const quick = flags.has('quick');
const full = flags.has('full');
const subjects = intFlag(flags, 'subjects', quick ? 20_000 : 100_000);
const scaleSubjects = intFlag(flags, 'scale-subjects', full ? 1_000_000 : quick ? 20_000 : 100_000);
const requests = intFlag(flags, 'requests', quick ? 500 : 2_000);
const ioSubjects = intFlag(flags, 'io-subjects', quick ? 5_000 : 20_000);
const record = !flags.has('no-record');
const reps = intFlag(flags, 'reps', quick ? 1 : 3);

const CASES: Case[] = [
  { name: 'engine', script: 'bench/noop-engine.ts', args: () => ['--subjects', String(subjects)], compared: true },
  { name: 'graphile-worker-A', script: 'bench/peers/graphile-worker.ts', args: () => ['--config', 'A', '--jobs', String(subjects)], slow: true },
  { name: 'graphile-worker-B', script: 'bench/peers/graphile-worker.ts', args: () => ['--config', 'B', '--jobs', String(subjects)], compared: true },
  {
    name: 'graphile-worker-C',
    script: 'bench/peers/graphile-worker.ts',
    args: () => ['--config', 'C', '--jobs', String(Math.min(subjects, DEFAULTS_CASE_MAX_ITEMS))],
    slow: true,
  },
  {
    name: 'pg-boss-A',
    script: 'bench/peers/pg-boss.ts',
    args: () => ['--config', 'A', '--jobs', String(Math.min(subjects, PGBOSS_ONE_WORKER_MAX_ITEMS))],
    slow: true,
  },
  { name: 'pg-boss-B', script: 'bench/peers/pg-boss.ts', args: () => ['--config', 'B', '--jobs', String(subjects)], compared: true },
  { name: 'pg-boss-C', script: 'bench/peers/pg-boss.ts', args: () => ['--config', 'C', '--jobs', String(subjects)], compared: true },
  // What the engine must write per batch, in plain SQL and nothing else: the engine's own limit.
  { name: 'floor', script: 'bench/floor.ts', args: () => ['--subjects', String(subjects)], compared: true },
  { name: 'floor-statement', script: 'bench/floor.ts', args: () => ['--subjects', String(subjects), '--form', 'statement'], compared: true },
  { name: 'floor-engine-sql', script: 'bench/floor.ts', args: () => ['--subjects', String(subjects), '--form', 'engine-sql'], compared: true },
  // concurrency: 'auto' against a stand-in model server of capacity 2, 8, 32, and 8 → 2.
  { name: 'adaptive', script: 'bench/adaptive.ts', args: () => (quick ? ['--seconds', '20', '--only', '8,drop'] : []), kind: 'figures' },
  {
    name: 'scale',
    script: 'bench/scale.ts',
    args: () => ['--subjects', String(scaleSubjects), '--stop-after', String(intFlag(flags, 'scale-stop-after', 900))],
    kind: 'figures',
    // A run's memory as the service runs it.
    nodeArgs: SERVICE_NODE_ARGS,
  },
  { name: 'io-bound', script: 'bench/io-bound.ts', args: () => ['--subjects', String(ioSubjects)], kind: 'figures' },
  // The same with node:http, and with global fetch (the example's earlier client): how much the HTTP client weighs.
  { name: 'io-bound-http', script: 'bench/io-bound.ts', args: () => ['--subjects', String(ioSubjects), '--client', 'http'], kind: 'figures', slow: true },
  { name: 'io-bound-fetch', script: 'bench/io-bound.ts', args: () => ['--subjects', String(ioSubjects), '--client', 'fetch'], kind: 'figures', slow: true },
  // The shipped client's calls from plain loops, no engine: the client's own ceiling on this machine.
  { name: 'io-ceiling', script: 'bench/io-bound.ts', args: () => ['--subjects', String(ioSubjects), '--no-engine'], kind: 'figures', slow: true },
  // Slash-command ack latency (HTTP mode), idle and beside a run; its size is --requests, not --subjects.
  { name: 'slack-ack', script: 'bench/slack-ack.ts', args: () => ['--requests', String(requests)], kind: 'latency' },
  // Ten concurrent unsigned 256 MB posts to /slack/events: the serving process's memory.
  { name: 'slack-body-limit', script: 'bench/slack-body-limit.ts', args: () => [], kind: 'figures' },
  { name: 'stop-latency', script: 'bench/stop-latency.ts', args: () => [], kind: 'figures', optional: true },
  { name: 'kill-restart', script: 'bench/kill-restart.ts', args: () => [], kind: 'figures', optional: true },
  // SIGKILL of a run's owner among three `serve` processes → another adopts the run (detection included).
  { name: 'adoption', script: 'bench/adoption.ts', args: () => ['--kills', '10'], kind: 'figures', optional: true },
  // The no-op engine at the commit before adoption against the last commit, interleaved (BENCH_BASE_REV overrides the base).
  {
    name: 'noop-versions',
    script: 'bench/noop-versions.ts',
    args: () => [
      '--rev',
      `${process.env.BENCH_BASE_REV ?? '78b38ff^'},HEAD`,
      '--reps',
      quick ? '3' : '5',
      '--subjects',
      String(subjects),
      '--without-checkout',
    ],
    kind: 'figures',
    slow: true,
  },
  // CLI start-up against `node -e 0` (its own embedded server; DATABASE_URL is not used): bench/startup.ts.
  { name: 'startup', script: 'bench/startup.ts', args: () => ['--reps', quick ? '5' : '15'], kind: 'figures' },
];

const only = flags.get('only');
const wanted =
  typeof only === 'string'
    ? only
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
const cases =
  wanted.length === 0 ? CASES.filter((c) => !(quick && c.slow)) : CASES.filter((c) => wanted.some((w) => c.name === w || c.name.startsWith(`${w}-`)));
if (cases.length === 0) {
  process.stderr.write(`--only ${String(only)} matches no case; cases: ${CASES.map((c) => c.name).join(', ')}\n`);
  process.exit(2);
}

const loadBefore = os.loadavg();
const suiteStarted = performance.now();
const server = await openServer();
const outcomes: { name: string; result?: CaseResult; error?: string; absent?: boolean; reps?: CaseResult[] }[] = [];
let facts: Record<string, string> = {};
try {
  facts = await serverFacts(server.url);
  process.stderr.write(`server: ${server.kind} PostgreSQL ${facts.server_version}\n`);
  // The no-op comparison first: interleaved repetitions, each case reported by its median run.
  const compared = cases.filter((c) => c.compared && existsSync(path.join(REPO_ROOT, c.script)));
  const runs = new Map<string, { results: CaseResult[]; error?: string }>(compared.map((c) => [c.name, { results: [] }]));
  for (let rep = 1; rep <= reps; rep++) {
    for (const c of compared) {
      process.stderr.write(`\n== ${c.name}, repetition ${rep} of ${reps} (${c.script} ${c.args().join(' ')})\n`);
      const outcome = await runCase(c, server.url);
      if (outcome.result) runs.get(c.name)!.results.push(outcome.result);
      else runs.get(c.name)!.error = outcome.error;
    }
  }
  for (const c of cases) {
    if (!existsSync(path.join(REPO_ROOT, c.script))) {
      process.stderr.write(`\n== ${c.name}: ${c.script} does not exist (yet); skipped\n`);
      outcomes.push({ name: c.name, absent: true, error: `${c.script} does not exist yet` });
      continue;
    }
    const done = runs.get(c.name);
    if (done) {
      const sorted = [...done.results].sort((a, b) => a.itemsPerSecond - b.itemsPerSecond);
      const median = sorted[Math.floor((sorted.length - 1) / 2)];
      outcomes.push(median ? { name: c.name, result: median, reps: done.results } : { name: c.name, error: done.error ?? 'no run' });
      continue;
    }
    process.stderr.write(`\n== ${c.name} (${c.script} ${c.args().join(' ')})\n`);
    outcomes.push({ name: c.name, ...(await runCase(c, server.url)) });
  }
} finally {
  await server.release();
}
const suiteSeconds = (performance.now() - suiteStarted) / 1000;

const report = [environment(), figuresTable(), table(), latencyTable()].filter(Boolean).join('\n\n');
process.stdout.write(`\n${report}\n`);
const failed = outcomes.filter((o) => o.error && !o.absent);
for (const o of failed) process.stdout.write(`\n${o.name} failed: ${o.error}\n`);
if (record) recordResults(report);
process.exit(failed.length > 0 ? 1 : 0);

function runCase(c: Case, databaseUrl: string): Promise<{ result?: CaseResult; error?: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...(c.nodeArgs ?? []), path.join(REPO_ROOT, c.script), ...c.args()], {
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
          if (typeof result.seconds === 'number' && typeof result.itemsPerSecond === 'number') {
            process.stderr.write(
              `   ${result.items} items in ${result.seconds.toFixed(2)} s = ${result.itemsPerSecond.toFixed(0)}/s, peak RSS ${Number(result.peakRssMb).toFixed(0)} MB\n`,
            );
          } else {
            process.stderr.write(`   result: ${line.slice(RESULT_PREFIX.length, RESULT_PREFIX.length + 300)}\n`);
          }
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
  const pg = `PostgreSQL ${facts.server_version} (${server.kind}; shared_buffers ${facts.shared_buffers}, synchronous_commit ${facts.synchronous_commit}, fsync ${facts.fsync}, max_wal_size ${facts.max_wal_size}, autovacuum ${facts.autovacuum})`;
  const load = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' ');
  return [
    `- date: ${new Date().toISOString()}`,
    `- machine: ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model.trim() ?? '?'}), ${memGb} GiB memory, ${os.type()} ${os.release()}`,
    `- node ${process.version}, ${pg}`,
    `- engine code: ${codeVersion()}`,
    `- load average (1/5/15 min) before: ${load(loadBefore)}, after: ${load(os.loadavg())}`,
    `- whole suite: ${suiteSeconds.toFixed(0)} s`,
    `- command: ${process.env.DATABASE_URL ? `DATABASE_URL=${redactUrl(process.env.DATABASE_URL)} ` : ''}npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
  ].join('\n');
}

function codeVersion(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = git('status', '--porcelain', '--', 'src', 'migrations') !== '';
    const diff = dirty
      ? createHash('sha256')
          .update(git('diff', 'HEAD', '--', 'src', 'migrations'))
          .digest('hex')
          .slice(0, 12)
      : '';
    return `commit ${git('rev-parse', '--short', 'HEAD')}${dirty ? ` + uncommitted changes in src/ or migrations/ (diff sha256 ${diff})` : ''}`;
  } catch {
    return 'unknown (no git)';
  }
}

function kindOf(name: string): Kind {
  return CASES.find((c) => c.name === name)?.kind ?? 'throughput';
}

function table(): string {
  const engine = outcomes.find((o) => o.name === 'engine')?.result;
  const header = [
    'system',
    'config',
    'items',
    'seconds',
    'items/s',
    'vs engine',
    'peak RSS MB',
    'node CPU s',
    'server CPU s',
    'CPU µs/item',
    'each repetition, items/s',
  ];
  const throughput = outcomes.filter((o) => kindOf(o.name) === 'throughput');
  if (throughput.length === 0) return '';
  const rows = throughput.map(({ name, result, error, reps: each }) => {
    if (!result) return [name, `failed: ${error}`, '', '', '', '', '', '', '', '', ''];
    const server = result.serverCpuSeconds ?? null;
    return [
      result.system,
      result.config,
      String(result.items),
      result.seconds.toFixed(2),
      result.itemsPerSecond.toFixed(0),
      engine ? `${(result.itemsPerSecond / engine.itemsPerSecond).toFixed(2)}×` : '–',
      result.peakRssMb.toFixed(0),
      result.cpuSeconds.toFixed(1),
      server === null ? '–' : server.toFixed(1),
      server === null ? '–' : (((result.cpuSeconds + server) * 1e6) / result.items).toFixed(0),
      each && each.length > 1 ? `${each.map((r) => r.itemsPerSecond.toFixed(0)).join(', ')} (median above)` : '',
    ];
  });
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map((_, i) => (i >= 2 ? '---:' : '---'))), ...rows.map(line)].join('\n');
}

/** Slack acknowledgement latency (bench/slack-ack.ts): ms from request to response, idle and beside a run. */
function latencyTable(): string {
  const latency = outcomes.filter((o) => kindOf(o.name) === 'latency');
  if (latency.length === 0) return '';
  type Stats = { p50: number; p99: number; max: number };
  const header = [
    'system',
    'config',
    'requests',
    'idle p50 ms',
    'idle p99 ms',
    'run p50 ms',
    'run p99 ms',
    'run max ms',
    'run items/s meanwhile',
    'p99 < 50 ms',
    'peak RSS MB',
  ];
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

type Row = [figure: string, value: string, target: string, met: string];

/** Every figure of the suite against the performance issue's targets, in one table. */
function figuresTable(): string {
  const get = (name: string) => outcomes.find((o) => o.name === name);
  const rows: Row[] = [];
  const missing = (name: string): string => {
    const o = get(name);
    if (!o) return 'not run';
    return o.absent ? 'not yet written' : `failed: ${o.error ?? '?'}`;
  };
  const yes = (ok: boolean) => (ok ? 'yes' : '**no**');
  const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));

  // No-op throughput against the peers, same run.
  const engine = get('engine')?.result;
  if (get('engine')) {
    rows.push([
      'no-op items/s, engine (1 step, keeps every interaction row)',
      engine ? `${engine.itemsPerSecond.toFixed(0)}/s (${engine.items} items, ${engine.peakRssMb.toFixed(0)} MB peak RSS)` : missing('engine'),
      '–',
      '',
    ]);
  }
  const ratioRow = (label: string, names: string[], target: number) => {
    const ran = names.map(get).filter((o) => o !== undefined);
    if (ran.length === 0) return;
    const results = ran.map((o) => o!.result).filter((r): r is CaseResult => r !== undefined);
    if (!engine || results.length === 0) {
      rows.push([label, engine ? missing(names[0]!) : missing('engine'), `≥ ${target.toFixed(1)}×`, '']);
      return;
    }
    const best = results.reduce((a, b) => (b.itemsPerSecond > a.itemsPerSecond ? b : a));
    const ratio = engine.itemsPerSecond / best.itemsPerSecond;
    rows.push([
      label,
      `${ratio.toFixed(2)}× (${best.itemsPerSecond.toFixed(0)}/s, ${best.config.split(':')[0]})${perRep(best)}`,
      `≥ ${target.toFixed(1)}×`,
      yes(ratio >= target),
    ]);
  };
  // Each repetition's own ratio (the engine's k-th run against the peer's k-th), when repeated.
  const perRep = (peer: CaseResult): string => {
    const engineRuns = get('engine')?.reps;
    const peerRuns = outcomes.find((o) => o.result === peer)?.reps;
    if (!engineRuns || !peerRuns || engineRuns.length < 2 || engineRuns.length !== peerRuns.length) return '';
    return `; per repetition ${engineRuns.map((e, i) => `${(e.itemsPerSecond / peerRuns[i]!.itemsPerSecond).toFixed(2)}×`).join(', ')}`;
  };
  const cpuPerItem = (r: CaseResult | undefined) =>
    r && r.serverCpuSeconds !== null && r.serverCpuSeconds !== undefined ? ((r.cpuSeconds + r.serverCpuSeconds) * 1e6) / r.items : undefined;
  ratioRow('engine ÷ graphile-worker, best single-process (B), medians', ['graphile-worker-B'], 1.3);
  ratioRow('engine ÷ pg-boss, batchSize 500 (best config run), medians', ['pg-boss-A', 'pg-boss-B', 'pg-boss-C'], 3.0);
  const gwB = get('graphile-worker-B')?.result;
  if (engine && gwB && cpuPerItem(engine) !== undefined && cpuPerItem(gwB) !== undefined) {
    rows.push([
      'CPU µs per item (node + server), engine vs graphile-worker B',
      `${cpuPerItem(engine)!.toFixed(0)} vs ${cpuPerItem(gwB)!.toFixed(0)}`,
      '≤ graphile-worker',
      yes(cpuPerItem(engine)! <= cpuPerItem(gwB)!),
    ]);
  }
  const floorRow = (name: string, label: string, target: boolean) => {
    const floor = get(name)?.result;
    if (!engine || !floor) return;
    const share = engine.itemsPerSecond / floor.itemsPerSecond;
    rows.push([
      label,
      `${(share * 100).toFixed(0)}% (floor ${floor.itemsPerSecond.toFixed(0)}/s)${perRep(floor).replace(/(\d\.\d\d)×/g, (_, x: string) => `${Math.round(Number(x) * 100)}%`)}`,
      target ? '≥ 70%' : '(≥ 70%)',
      target ? yes(share >= 0.7) : '–',
    ]);
  };
  floorRow('floor', "engine's share of its own limit (plain SQL, per 500: BEGIN, INSERT interactions, UPDATE domain, COMMIT)", true);
  floorRow('floor-statement', "engine's share of the one-statement floor (INSERT + UPDATE in one CTE, no separate save)", false);
  // Where the gap is: the engine's own statements with no runner around them, against the floor.
  const floor = get('floor')?.result;
  const engineSql = get('floor-engine-sql')?.result;
  if (floor && engineSql) {
    rows.push([
      "the engine's statements alone (claim, page read, completion, save; no runner) as a share of the floor",
      `${((engineSql.itemsPerSecond / floor.itemsPerSecond) * 100).toFixed(0)}% (${engineSql.itemsPerSecond.toFixed(0)}/s)`,
      '(ceiling of the engine)',
      '–',
    ]);
    if (engine)
      rows.push([
        "engine's share of its statements alone (what the runner costs)",
        `${((engine.itemsPerSecond / engineSql.itemsPerSecond) * 100).toFixed(0)}%`,
        '',
        '–',
      ]);
  }

  // Scale.
  const scale = get('scale');
  if (scale) {
    const r = scale.result;
    if (!r) rows.push(['scale run (workflow 3001, 3 steps)', missing('scale'), '', '']);
    else {
      const d = r.details as {
        subjects: number;
        snapshot: {
          before: { metricsMs: number; expectedWorkMs: number };
          after: { metricsMs: number; expectedWorkMs: number };
          maxMetricsMs: number;
          inRun: { maxMs: number } | null;
        };
        heartbeat: { count: number; p50Ms: number; maxMs: number } | null;
        heartbeatPlan: string;
      };
      const at = d.subjects === 1_000_000 ? '' : ` (at ${d.subjects.toLocaleString('en')} subjects; --full for 1M)`;
      const partial = d.subjects < 1_000_000 ? ' (not at 1M)' : '';
      const run = d as unknown as { finished?: boolean; expectedInteractions?: number; outcome?: string };
      if (run.finished === false) {
        rows.push([
          `scale: ${d.subjects.toLocaleString('en')} postings × 3 steps, wall time`,
          `did not finish: ${r.items.toLocaleString('en')} of ${(run.expectedInteractions ?? 0).toLocaleString('en')} interactions in ${r.seconds.toFixed(0)} s (${r.itemsPerSecond.toFixed(0)}/s), then stopped by --stop-after (run ${run.outcome})`,
          'finishes',
          '**no**',
        ]);
      } else {
        rows.push([
          `scale: ${d.subjects.toLocaleString('en')} postings × 3 steps, wall time`,
          `${r.seconds.toFixed(1)} s, ${r.itemsPerSecond.toFixed(0)} interactions/s`,
          '–',
          '',
        ]);
      }
      rows.push([
        `scale: peak RSS${at} (node ${SERVICE_NODE_ARGS.join(' ')}, as npm start)`,
        `${r.peakRssMb.toFixed(0)} MB`,
        '< 250 MB',
        yes(r.peakRssMb < 250) + partial,
      ]);
      const s = d.snapshot;
      rows.push([
        `scale: state snapshot, metrics query${at}`,
        `${ms(s.before.metricsMs)} ms before, ${ms(s.after.metricsMs)} ms after, ${s.inRun ? ms(s.inRun.maxMs) : '?'} ms max in the run`,
        '< 300 ms',
        yes(s.maxMetricsMs < 300) + partial,
      ]);
      rows.push([`scale: expected-work counts (3 steps)${at}`, `${ms(s.before.expectedWorkMs)} ms before, ${ms(s.after.expectedWorkMs)} ms after`, '–', '']);
      const scansDomain = /postings/i.test(d.heartbeatPlan);
      rows.push([
        "scale: progress update (heartbeat UPDATE of workflow_runs with the runner's counters)",
        d.heartbeat
          ? `p50 ${ms(d.heartbeat.p50Ms)} ms, max ${ms(d.heartbeat.maxMs)} ms over ${d.heartbeat.count}; plan: workflow_runs_pkey only`
          : 'no heartbeat in the run',
        'no domain-table scan',
        yes(!scansDomain),
      ]);
    }
  }

  // I/O-bound.
  const ioClients: Record<string, string> = {
    'io-bound': 'ollama.ts: undici request()',
    'io-bound-http': 'node:http keep-alive Agent',
    'io-bound-fetch': 'global fetch',
    'io-ceiling': 'ollama.ts alone, no engine: ceiling',
  };
  for (const [name, how] of Object.entries(ioClients)) {
    const io = get(name);
    if (!io) continue;
    const r = io.result;
    if (!r) rows.push([`I/O-bound (${how})`, missing(name), '≥ 90% of 2,500/s', '']);
    else {
      const d = r.details as { idealPerSecond: number; shareOfIdeal: number; steadyShareOfIdeal: number; eventLoopDelayMs: { p99: number; max: number } };
      const target = name === 'io-bound';
      const steady = name === 'io-ceiling' ? '' : ` (steady part ${(d.steadyShareOfIdeal * 100).toFixed(0)}%)`;
      rows.push([
        `I/O-bound (${how}): ${r.items.toLocaleString('en')} items × 200 ms HTTP, concurrency 500`,
        `${r.itemsPerSecond.toFixed(0)}/s = ${(d.shareOfIdeal * 100).toFixed(0)}% of ${d.idealPerSecond}/s${steady}; node CPU ${r.cpuSeconds.toFixed(1)} s in ${r.seconds.toFixed(1)} s`,
        target ? '≥ 90%' : '(≥ 90%)',
        target ? yes(d.shareOfIdeal >= 0.9) : '–',
      ]);
      rows.push([
        `I/O-bound (${how}): event-loop delay p99`,
        `${ms(d.eventLoopDelayMs.p99)} ms (max ${ms(d.eventLoopDelayMs.max)})`,
        target ? '< 20 ms' : '(< 20 ms)',
        target ? yes(d.eventLoopDelayMs.p99 < 20) : '–',
      ]);
    }
  }

  // Slack ack.
  const ack = get('slack-ack');
  if (ack) {
    const r = ack.result;
    if (!r) rows.push(['slash-command ack p99', missing('slack-ack'), '< 50 ms', '']);
    else {
      const d = r.details as { latencyMs: { idle: { p99: number }; loaded: { p99: number } } };
      rows.push(['slash-command ack p99, idle', `${ms(d.latencyMs.idle.p99)} ms`, '< 50 ms', yes(d.latencyMs.idle.p99 < 50)]);
      rows.push(['slash-command ack p99, during a concurrency-16 run', `${ms(d.latencyMs.loaded.p99)} ms`, '< 50 ms', yes(d.latencyMs.loaded.p99 < 50)]);
    }
  }

  // concurrency 'auto' against servers of capacity C (bench/adaptive.ts): its rows as it prints them.
  const adaptive = get('adaptive');
  if (adaptive) {
    if (adaptive.result) rows.push(...figuresOf(adaptive.result));
    else rows.push(['adaptive concurrency against a server of capacity C', missing('adaptive'), '≥ 90%, ≤ 100 ms, no 503, no timeout', '']);
  }

  // Stop latency and kill-to-restart (bench/stop-latency.ts, bench/kill-restart.ts,
  // written with the operations work). Rows of their own `figures` when they print them.
  const stop = get('stop-latency');
  if (stop) {
    const r = stop.result;
    const d = r?.details as { latencyMs?: { p50: number; p99: number; max: number }; inFlight?: number } | undefined;
    if (r && figuresOf(r).length > 0) rows.push(...figuresOf(r));
    else if (!r || !d?.latencyMs)
      rows.push(['stop latency p99 (16 in flight)', r ? JSON.stringify(r.details).slice(0, 120) : missing('stop-latency'), '< 500 ms', '']);
    else {
      const l = d.latencyMs;
      rows.push([
        `stop latency p99 (${d.inFlight ?? '?'} in flight; request → run ended, lock released)`,
        `${ms(l.p99)} ms (p50 ${ms(l.p50)}, max ${ms(l.max)}; ${r.items} stops)`,
        '< 500 ms',
        yes(l.p99 < 500),
      ]);
    }
  }
  const kill = get('kill-restart');
  if (kill) {
    const r = kill.result;
    const d = r?.details as { lockFreeMs?: { p50: number; max: number }; restartMs?: { p50: number; max: number } } | undefined;
    if (r && figuresOf(r).length > 0) rows.push(...figuresOf(r));
    else if (!r || !d?.restartMs)
      rows.push(['SIGKILL of the owner → a new run can start', r ? JSON.stringify(r.details).slice(0, 120) : missing('kill-restart'), '< 2 s', '']);
    else {
      rows.push([
        `SIGKILL of the owner → a new run has started (worst of ${r.items} kills)`,
        `${ms(d.restartMs.max)} ms (p50 ${ms(d.restartMs.p50)}; lock free after p50 ${ms(d.lockFreeMs?.p50 ?? NaN)}, max ${ms(d.lockFreeMs?.max ?? NaN)} ms)`,
        '< 2 s',
        yes(d.restartMs.max < 2000),
      ]);
    }
  }

  // CLI start-up (bench/startup.ts): its rows as it prints them.
  const startup = get('startup');
  if (startup) {
    if (startup.result) rows.push(...figuresOf(startup.result));
    else rows.push(['start-up: workflow help, list, serve → prompt', missing('startup'), '≤ 3× / ≤ 6× node -e 0; < 1.5 s', '']);
  }

  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(['figure', 'value', 'target', 'met?']), line(['---', '---', '---', '---']), ...rows.map(line)].join('\n');
}

/** A case may print its own rows: `figures: [{ figure, value, target, met }]` at the top level or in details. */
function figuresOf(result: CaseResult): Row[] {
  const raw = (result as unknown as { figures?: unknown }).figures ?? result.details?.figures;
  if (!Array.isArray(raw)) return [];
  return raw.map((f: { figure?: unknown; value?: unknown; target?: unknown; met?: unknown }) => [
    String(f.figure ?? '?'),
    String(f.value ?? ''),
    String(f.target ?? ''),
    f.met === true ? 'yes' : f.met === false ? '**no**' : String(f.met ?? ''),
  ]);
}

/** Puts this run's report at the top of bench/RESULTS.md (newest first), below its header. */
function recordResults(report: string): void {
  const file = path.join(REPO_ROOT, 'bench/RESULTS.md');
  const current = readFileSync(file, 'utf8');
  const title = `## ${new Date().toISOString().slice(0, 10)}: \`npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\`, ${server.kind} PostgreSQL ${String(facts.server_version ?? '?').split(' ')[0]}`;
  const section = `${title}\n\n${report}\n${failed.length ? `\nFailed: ${failed.map((o) => `${o.name} (${o.error})`).join('; ')}\n` : ''}\n`;
  const at = current.indexOf('\n## ');
  const next = at < 0 ? `${current.trimEnd()}\n\n${section}` : `${current.slice(0, at + 1)}${section}${current.slice(at + 1)}`;
  writeFileSync(file, next);
  // Its tables as Biome (`npm run lint`) lays them out: a report committed as written fails the lint.
  try {
    execFileSync(path.join(REPO_ROOT, 'node_modules/.bin/biome'), ['format', '--write', file], { cwd: REPO_ROOT, stdio: 'ignore' });
  } catch {
    process.stderr.write('bench/RESULTS.md is not formatted: run `npm run format` before committing it\n');
  }
  process.stderr.write(`recorded in bench/RESULTS.md\n`);
}
