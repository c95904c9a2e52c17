// The engine's no-op throughput of this checkout against earlier commits, in
// one bench run: each commit named by --rev is extracted (git archive) into a
// temporary directory beside this checkout's node_modules, and its own
// bench/noop-engine.ts runs there, interleaved with this checkout's
// (this, rev1, rev2, this, rev1, …) on the same server, --reps times each.
// Each version is reported by its median, as a ratio to the first --rev, and
// by the median of its per-repetition ratios (each repetition runs the
// versions back to back, so a shared machine's changing load cancels out
// better), and by its CPU per item (this process and the database server):
// on a machine whose load swings, wall-clock rates scatter while the CPU an
// item costs stays put.
//
//   node bench/noop-versions.ts --rev 78b38ff^[,HEAD] [--reps 5] [--subjects 100000] [--without-checkout]
//
// --without-checkout  only the commits named (this checkout's uncommitted changes are left out)
//
// Every version runs on this checkout's node_modules; a commit whose
// package-lock.json differs from the last commit's is named in the result.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, RESULT_PREFIX, assert, intFlag, openServer, parseFlags, printResult, type CaseResult } from './lib.ts';

const flags = parseFlags(process.argv.slice(2));
const revs = String(flags.get('rev') ?? '')
  .split(',')
  .filter(Boolean);
assert(revs.length > 0, '--rev <commit>[,<commit>…] is required');
const reps = intFlag(flags, 'reps', 5);
const subjects = intFlag(flags, 'subjects', 100_000);
const withCheckout = !flags.has('without-checkout');

const git = (...args: string[]): string => execFileSync('git', ['-C', REPO_ROOT, ...args], { encoding: 'utf8' }).trim();
const lockfile = git('rev-parse', 'HEAD:package-lock.json');
const lockfileDiffers: string[] = [];
const trees: { name: string; dir: string; temporary: boolean }[] = withCheckout ? [{ name: 'this checkout', dir: REPO_ROOT, temporary: false }] : [];
const server = await openServer();
try {
  for (const rev of revs) {
    const sha = git('rev-parse', '--short', `${rev}^{commit}`);
    // Runs on this checkout's node_modules: a lockfile that differs is reported beside the figures.
    if (git('rev-parse', `${sha}:package-lock.json`) !== lockfile) lockfileDiffers.push(rev);
    const dir = mkdtempSync(path.join(os.tmpdir(), `wf-noop-${sha}-`));
    trees.push({ name: `${rev} (${sha})`, dir, temporary: true });
    execFileSync('sh', ['-c', `git -C "$1" archive "$2" | tar -x -C "$3"`, 'sh', REPO_ROOT, sha, dir]);
    symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  }

  const runs = new Map<string, CaseResult[]>(trees.map((t) => [t.name, []]));
  for (let rep = 0; rep < reps; rep++) {
    for (const tree of trees) {
      process.stderr.write(`rep ${rep + 1}/${reps}: ${tree.name}\n`);
      const result = await noop(tree.dir, server.url);
      process.stderr.write(`   ${result.itemsPerSecond.toFixed(0)}/s\n`);
      runs.get(tree.name)!.push(result);
    }
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)]!;
  const base = trees[withCheckout ? 1 : 0]!.name;
  const rates = (name: string) => runs.get(name)!.map((r) => r.itemsPerSecond);
  const cpuPerKilo = (name: string) => runs.get(name)!.map((r) => ((r.cpuSeconds + (r.serverCpuSeconds ?? 0)) / r.items) * 1_000_000);
  const baseMedian = median(rates(base));
  const baseCpu = median(cpuPerKilo(base));
  const versions = trees.map((t) => ({
    version: t.name,
    medianPerSecond: Math.round(median(rates(t.name))),
    ratioToBase: +(median(rates(t.name)) / baseMedian).toFixed(3),
    medianOfPairedRatios: +median(rates(t.name).map((v, i) => v / rates(base)[i]!)).toFixed(3),
    cpuMsPerThousandItems: +median(cpuPerKilo(t.name)).toFixed(1),
    cpuRatioToBase: +(median(cpuPerKilo(t.name)) / baseCpu).toFixed(3),
    each: rates(t.name).map((v) => Math.round(v)),
  }));
  const mine = versions.find((v) => v.version !== base) ?? versions[0]!;
  printResult({
    system: 'workflow-chatops engine, versions',
    config: `no-op, ${subjects} subjects, ${reps} interleaved reps per version, medians`,
    items: subjects * reps * trees.length,
    seconds: 0,
    itemsPerSecond: mine.medianPerSecond,
    peakRssMb: 0,
    sampledPeakRssMb: 0,
    cpuSeconds: 0,
    details: {
      lockfileDiffersFromHead: lockfileDiffers,
      loadAverage: os.loadavg().map((l) => +l.toFixed(2)),
      versions,
      figures: [
        {
          figure: `no-op items/s, ${mine.version} ÷ ${base} (medians of ${reps}; paired ${mine.medianOfPairedRatios}×, CPU per item ${mine.cpuRatioToBase}×)`,
          value: `${mine.ratioToBase.toFixed(3)}×`,
          target: '≥ 0.95×',
          met: mine.ratioToBase >= 0.95,
        },
      ],
    },
  });
} finally {
  for (const tree of trees) if (tree.temporary) rmSync(tree.dir, { recursive: true, force: true });
  await server.release();
}

/** One run of a version's own bench/noop-engine.ts, in its own directory. */
function noop(dir: string, databaseUrl: string): Promise<CaseResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(dir, 'bench/noop-engine.ts'), '--subjects', String(subjects)], {
      cwd: dir,
      env: { ...process.env, DATABASE_URL: databaseUrl },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (out += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (code === 0 && line) resolve(JSON.parse(line.slice(RESULT_PREFIX.length)) as CaseResult);
      else reject(new Error(`${dir}: noop-engine exited ${code}${line ? '' : ', no result line'}`));
    });
  });
}
