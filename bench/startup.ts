// Start-up cost of the CLI as users run it: the built bin/workflow.js (→
// dist/), each command a fresh process, timed from spawn to exit, as ratios
// to `node -e 0` timed in the same run on the same Node. Repetitions are
// interleaved (one of each command per round), so a noisy neighbour weighs on
// all of them alike; the figures are medians.
//
//   node bench/startup.ts [--reps 15] [--rss-reps 3] [--no-npm]
//
// Cases: `--version`, `help`; `list`, `history`, `status <id>` against a
// running embedded PostgreSQL (`list` also without bin/workflow.js's compile
// cache); and the time from starting `serve` (and `npm start`) to the console
// chat's prompt on an initialised data directory.
// The embedded server is what a user of `npm start` gets, so DATABASE_URL is
// ignored: the cluster lives in $TMPDIR/workflow-chatops-bench-startup (kept
// between runs: initdb is the slow part) and is stopped at the end.
//
// Max RSS and CPU time come from separate, untimed runs (--rss-reps of each)
// that load a one-line hook reporting process.resourceUsage() at exit: the
// hook would add its own load to the timed runs, `node -e 0` most of all.
// CPU time (user + system, this process only, not PostgreSQL's) moves much
// less than wall time when the machine is busy.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { intFlag, parseFlags, printResult, REPO_ROOT } from './lib.ts';

const flags = parseFlags(process.argv.slice(2));
const reps = intFlag(flags, 'reps', 15);
const rssReps = intFlag(flags, 'rss-reps', 3);
const withNpm = !flags.has('no-npm');

const BIN = path.join(REPO_ROOT, 'bin/workflow.js');
const DATA_DIR = path.join(os.tmpdir(), 'workflow-chatops-bench-startup');
const PROMPT = 'workflow> ';
const TARGETS = { quick: 3, database: 6, promptSeconds: 1.5 } as const;
/** Reports the child's peak RSS (KiB) and CPU time (µs) on fd 3 as it exits. */
const RSS_HOOK =
  "data:text/javascript,import{writeSync}from'node:fs';process.on('exit',()=>{try{const u=process.resourceUsage();writeSync(3,u.maxRSS+' '+(u.userCPUTime+u.systemCPUTime))}catch{}})";

if (!existsSync(path.join(REPO_ROOT, 'dist/src/main.js'))) {
  process.stderr.write('dist/ is missing: run `npm run build` (npm run bench does)\n');
  process.exit(2);
}

// What a user's shell would pass, less anything that changes what is measured:
// no DATABASE_URL (the embedded server), no Slack (the console chat), no Ollama.
const env: NodeJS.ProcessEnv = {
  PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`,
  HOME: process.env.HOME,
  TMPDIR: process.env.TMPDIR,
  WORKFLOW_DATA_DIR: DATA_DIR,
};
for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];

interface Case {
  name: string;
  argv: string[];
  /** Timed until this appears on stdout instead of until exit (then the process is sent SIGTERM). */
  prompt?: boolean;
  /** Through npm (`npm start`): its own process group, so SIGTERM reaches the server under it. */
  npm?: boolean;
  target?: { ratio?: number; seconds?: number };
  /** Added to the environment. */
  env?: NodeJS.ProcessEnv;
}

function cli(...args: string[]): string[] {
  return [BIN, ...args];
}

async function setup(): Promise<number> {
  // Starts the server if needed, migrates, and leaves a run for `status` and `history`.
  const demo = spawnSync(process.execPath, cli('demo', '--postings', '200'), { env, encoding: 'utf8' });
  if (demo.status !== 0) throw new Error(`workflow demo failed: ${demo.stderr}`);
  const run = spawnSync(process.execPath, cli('run', '3001', '--json'), { env, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`workflow run 3001 failed: ${run.stderr}`);
  return (JSON.parse(run.stdout) as { run: { id: number } }).run.id;
}

function npmCommand(): { command: string; args: string[] } {
  // Under `npm run bench` the npm that runs us; else the one on PATH.
  const execPath = process.env.npm_execpath;
  if (execPath && /\.(c|m)?js$/.test(execPath)) return { command: process.execPath, args: [execPath, 'start'] };
  return { command: 'npm', args: ['start'] };
}

interface Sample {
  ms: number;
  rssKb?: number;
  cpuMs?: number;
}

function once(c: Case, measureRss: boolean): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const npm = c.npm ? npmCommand() : undefined;
    const command = npm ? npm.command : process.execPath;
    const args = npm ? npm.args : measureRss ? [`--import=${RSS_HOOK}`, ...c.argv] : c.argv;
    const started = performance.now();
    const child = spawn(command, args, {
      cwd: REPO_ROOT,
      env: { ...env, ...c.env },
      // stdin stays open: the console chat ends when its input does.
      stdio: [c.prompt ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'],
      detached: c.npm === true,
    });
    let stdout = '';
    let stderr = '';
    let rss = '';
    let promptMs: number | undefined;
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      stdout += chunk;
      if (c.prompt && promptMs === undefined && stdout.includes(PROMPT)) {
        promptMs = performance.now() - started;
        if (c.npm) process.kill(-child.pid!, 'SIGTERM');
        else child.kill('SIGTERM');
      }
    });
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (chunk) => (rss += chunk));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const ms = performance.now() - started;
      const ok = c.prompt ? promptMs !== undefined : code === 0;
      if (!ok) {
        reject(new Error(`${c.name} ended with ${code ?? signal}${c.prompt ? ' before its prompt' : ''}:\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`));
        return;
      }
      const [rssKb, cpuUs] = rss.split(' ').map(Number);
      resolve({ ms: promptMs ?? ms, ...(rss !== '' && { rssKb, cpuMs: cpuUs! / 1000 }) });
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const runId = await setup();
const CASES: Case[] = [
  { name: 'node -e 0', argv: ['-e', '0'] },
  { name: 'workflow --version', argv: cli('--version'), target: { ratio: TARGETS.quick } },
  { name: 'workflow help', argv: cli('help'), target: { ratio: TARGETS.quick } },
  { name: 'workflow list', argv: cli('list'), target: { ratio: TARGETS.database } },
  // What bin/workflow.js's compile cache saves.
  { name: 'workflow list, no compile cache', argv: cli('list'), env: { NODE_DISABLE_COMPILE_CACHE: '1' } },
  { name: 'workflow history', argv: cli('history'), target: { ratio: TARGETS.database } },
  { name: `workflow status ${runId}`, argv: cli('status', String(runId)), target: { ratio: TARGETS.database } },
  { name: 'workflow serve → prompt', argv: cli('serve'), prompt: true, target: { seconds: TARGETS.promptSeconds } },
  ...(withNpm ? [{ name: 'npm start → prompt', argv: [], prompt: true, npm: true, target: { seconds: TARGETS.promptSeconds } }] : []),
];

const samples = new Map<string, Sample[]>(CASES.map((c) => [c.name, []]));
const started = performance.now();
try {
  // One untimed round: the server's caches and the OS's file cache warm up for every case alike.
  for (const c of CASES) await once(c, false);
  for (let round = 0; round < reps; round++) {
    process.stderr.write(`\r   round ${round + 1}/${reps}`);
    for (const c of CASES) samples.get(c.name)!.push(await once(c, false));
  }
  process.stderr.write('\n');
  for (let round = 0; round < rssReps; round++) {
    for (const c of CASES) if (!c.npm) samples.get(c.name)!.push(await once(c, true));
  }
} finally {
  spawnSync(process.execPath, cli('db', 'stop'), { env, stdio: 'ignore' });
}
const seconds = (performance.now() - started) / 1000;

interface Figure {
  case: string;
  medianMs: number;
  minMs: number;
  maxMs: number;
  ratio: number;
  maxRssMb: number | null;
  /** Median CPU time of the untimed runs, and its ratio to node -e 0's. */
  cpuMs: number | null;
  cpuRatio: number | null;
  target: string;
  met: boolean | null;
}
const timedOnly = (name: string) =>
  samples
    .get(name)!
    .filter((s) => s.rssKb === undefined)
    .map((s) => s.ms);
const cpuOf = (name: string) =>
  samples
    .get(name)!
    .filter((s) => s.cpuMs !== undefined)
    .map((s) => s.cpuMs!);
const baseline = median(timedOnly('node -e 0'));
const baselineCpu = median(cpuOf('node -e 0'));
const figures: Figure[] = CASES.map((c) => {
  const all = samples.get(c.name)!;
  const timed = timedOnly(c.name);
  const rss = all.filter((s) => s.rssKb !== undefined).map((s) => s.rssKb! / 1024);
  const cpu = cpuOf(c.name);
  const m = median(timed);
  const ratio = m / baseline;
  const target = c.target?.ratio !== undefined ? `≤ ${c.target.ratio}× node -e 0` : c.target?.seconds !== undefined ? `< ${c.target.seconds} s` : '–';
  const met = c.target?.ratio !== undefined ? ratio <= c.target.ratio : c.target?.seconds !== undefined ? m / 1000 < c.target.seconds : null;
  return {
    case: c.name,
    medianMs: m,
    minMs: Math.min(...timed),
    maxMs: Math.max(...timed),
    ratio,
    maxRssMb: rss.length ? median(rss) : null,
    cpuMs: cpu.length ? median(cpu) : null,
    cpuRatio: cpu.length ? median(cpu) / baselineCpu : null,
    target,
    met,
  };
});

const ms = (x: number) => x.toFixed(0);
process.stderr.write(
  `${['case', 'median ms', 'min–max ms', '× node -e 0', 'CPU ms', 'CPU × node -e 0', 'max RSS MB', 'target', 'met'].join(' | ')}\n${figures
    .map((f) =>
      [
        f.case,
        ms(f.medianMs),
        `${ms(f.minMs)}–${ms(f.maxMs)}`,
        f.ratio.toFixed(2),
        f.cpuMs === null ? '–' : ms(f.cpuMs),
        f.cpuRatio === null ? '–' : f.cpuRatio.toFixed(2),
        f.maxRssMb === null ? '–' : f.maxRssMb.toFixed(0),
        f.target,
        f.met === null ? '' : f.met ? 'yes' : 'NO',
      ].join(' | '),
    )
    .join('\n')}\n`,
);

printResult({
  system: 'workflow CLI',
  config: `start-up, ${reps} interleaved rounds, Node ${process.version}`,
  items: reps * CASES.length,
  seconds,
  itemsPerSecond: (reps * CASES.length) / seconds,
  peakRssMb: Math.max(...figures.map((f) => f.maxRssMb ?? 0)),
  sampledPeakRssMb: 0,
  cpuSeconds: 0,
  details: {
    reps,
    node: process.version,
    baselineMs: baseline,
    baselineCpuMs: baselineCpu,
    cases: figures,
    figures: figures
      .filter((f) => f.case !== 'node -e 0')
      .map((f) => ({
        figure: `start-up: ${f.case}`,
        value: `${f.ratio.toFixed(2)}× (median ${ms(f.medianMs)} ms vs ${ms(baseline)} ms for node -e 0; ${ms(f.minMs)}–${ms(f.maxMs)} ms${f.cpuRatio === null ? '' : `; CPU ${ms(f.cpuMs!)} ms = ${f.cpuRatio.toFixed(2)}×`}${f.maxRssMb === null ? '' : `; max RSS ${f.maxRssMb.toFixed(0)} MB`})`,
        target: f.target,
        met: f.met,
      })),
  },
});
