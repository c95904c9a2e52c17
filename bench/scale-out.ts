// Scale-out: one run over several instances (docs/architecture.md,
// Participants). An I/O-bound workflow (the adoption fixture,
// test/fixtures/adoption/workflow.ts, `distributed: true`, two steps) whose
// handlers call a stand-in model server answering after 200 ms, with 100
// calls in flight per instance; real `workflow serve` processes, one vs
// three, each run started with `run --detach`. Throughput is the run's
// interactions over its own duration (started_at to ended_at).
//
//   node bench/scale-out.ts [--items 4000] [--delay-ms 200] [--concurrency 100] [--reps 1] [--timeline] [--profile DIR]
//
// Target: three instances ≥ 2.7× the throughput of one. Every (subject, step)
// is checked saved exactly once.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startCallsStub } from '../test/helpers/calls-stub.ts';
import { ADOPT_TABLES_SQL, ADOPT_WORKFLOW_ID } from '../test/fixtures/adoption/workflow.ts';
import { REPO_ROOT, assert, freshDatabase, intFlag, openServer, parseFlags, printResult, watchdog } from './lib.ts';

const flags = parseFlags(process.argv.slice(2));
const items = intFlag(flags, 'items', 4000);
const delayMs = intFlag(flags, 'delay-ms', 200);
const concurrency = intFlag(flags, 'concurrency', 100);
const reps = intFlag(flags, 'reps', 1);
const BIN = `${REPO_ROOT}bin/workflow.js`;
const MODULE = fileURLToPath(new URL('../test/fixtures/adoption/workflow.ts', import.meta.url));

watchdog();
const server = await openServer();
const calls = await startCallsStub({ delayMs });

/** User + system CPU seconds of a process so far (/proc/<pid>/stat, in clock ticks of 10 ms). */
function processCpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The machine's busy and total CPU time so far (/proc/stat's first line). */
function machineCpu(): { busy: number; total: number } {
  const ticks = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  return { busy: total - ticks[3]! - (ticks[4] ?? 0), total };
}

function startServe(env: NodeJS.ProcessEnv): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    const seen = (chunk: Buffer) => {
      err += chunk;
      if (/serving/.test(err)) resolve(child);
    };
    child.stdout!.on('data', seen);
    child.stderr!.on('data', seen);
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
}

async function runCase(instances: number, rep: number): Promise<number> {
  const database = await freshDatabase(server.url, `wfbench_scale_${instances}_${rep}_${process.pid}`);
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  for (const statement of ADOPT_TABLES_SQL) await client.query(statement);
  await client.query('INSERT INTO adopt_items (id) SELECT g FROM generate_series(1, $1::int) g', [items]);
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    LOG_LEVEL: 'warn',
    DATABASE_URL: database.url,
    WORKFLOW_MODULES: MODULE,
    ADOPT_CALLS_URL: calls.url,
    ADOPT_DISTRIBUTED: '1',
    ADOPT_CONCURRENCY: String(concurrency),
    ADOPT_BATCH: String(concurrency),
    // --profile DIR: each instance writes a V8 CPU profile there as it exits (bench/profile-summary.ts reads it).
    ...(typeof flags.get('profile') === 'string' ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${flags.get('profile')}` } : {}),
  };
  const servers: ChildProcess[] = [];
  try {
    for (let i = 0; i < instances; i++) servers.push(await startServe(env));
    calls.calls.length = 0;
    const machineBefore = machineCpu();
    const cpuBefore = servers.map((child) => processCpuSeconds(child.pid!));
    const detach = spawn(process.execPath, [BIN, 'run', String(ADOPT_WORKFLOW_ID), '--detach'], { env, stdio: 'ignore' });
    await new Promise((resolve) => detach.on('exit', resolve));
    let row: { id: number; status: string; seconds: number; completed: number } | undefined;
    for (;;) {
      const { rows } = await client.query(
        `SELECT id, status, extract(epoch FROM ended_at - started_at)::float8 AS seconds, interactions_completed AS completed
           FROM workflow_runs WHERE workflow_id = $1 ORDER BY id DESC LIMIT 1`,
        [ADOPT_WORKFLOW_ID],
      );
      row = rows[0];
      if (row && row.status !== 'running' && row.status !== 'queued') break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert(row.status === 'completed', `run ended ${row.status}`);
    // CPU of each instance over the case, and how busy the whole machine was: a machine
    // near 100% busy measures its cores, not how the run spreads over instances.
    const instanceCpu = servers.map((child, i) => +(processCpuSeconds(child.pid!) - cpuBefore[i]!).toFixed(2));
    const machineAfter = machineCpu();
    const machineBusy = +((machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total)).toFixed(3);
    const { rows: dup } = await client.query('SELECT count(*)::int AS n FROM (SELECT 1 FROM adopt_saves GROUP BY subject, step HAVING count(*) > 1) d');
    const { rows: saves } = await client.query('SELECT count(*)::int AS n FROM adopt_saves');
    const { rows: byPid } = await client.query('SELECT pid, count(*)::int AS n FROM adopt_saves GROUP BY pid ORDER BY pid');
    assert(dup[0].n === 0 && saves[0].n === 2 * items && row.completed === 2 * items, 'every subject saved once per step');
    // Saves per half second per instance, from the run's start: where a run waits (wave ends, joins, its end).
    const { rows: timeline } = await client.query(
      `SELECT slot, string_agg(n::text, '/' ORDER BY pid) AS shares
         FROM (SELECT floor(extract(epoch FROM s.at - r.started_at) * 2)::int AS slot, s.pid, count(*) AS n
                 FROM adopt_saves s, workflow_runs r WHERE r.id = $1 GROUP BY 1, 2) t
        GROUP BY slot ORDER BY slot`,
      [row.id],
    );
    if (flags.has('timeline')) for (const t of timeline) process.stderr.write(`  ${(t.slot / 2).toFixed(1)} s: ${t.shares}\n`);
    const perSecond = row.completed / row.seconds;
    printResult({
      system: 'workflow-chatops',
      config: `scale-out ${instances} instance${instances > 1 ? 's' : ''}`,
      items: row.completed,
      seconds: row.seconds,
      itemsPerSecond: perSecond,
      peakRssMb: 0,
      sampledPeakRssMb: 0,
      cpuSeconds: 0,
      details: {
        delayMs,
        concurrencyPerInstance: concurrency,
        sharesByPid: byPid.map((r: { n: number }) => r.n),
        instanceCpuSeconds: instanceCpu,
        machineBusy,
      },
    });
    process.stderr.write(
      `${instances} instance(s): ${row.completed} interactions in ${row.seconds.toFixed(2)} s = ${perSecond.toFixed(0)}/s; shares ${byPid.map((r: { n: number }) => r.n).join('/')}; ` +
        `instance CPU ${instanceCpu.join('/')} s (${instanceCpu.map((c) => ((c * 1e6) / (row.completed / instances)).toFixed(0)).join('/')} µs per interaction); machine ${(machineBusy * 100).toFixed(0)}% busy\n`,
    );
    return perSecond;
  } finally {
    if (flags.has('profile')) {
      // A profile is written on a clean exit only.
      const exits = servers.map((child) => new Promise((resolve) => child.on('exit', resolve)));
      for (const child of servers) child.kill('SIGTERM');
      await Promise.all(exits);
    }
    for (const child of servers) child.kill('SIGKILL');
    await client.end();
    await database.drop();
  }
}

try {
  const one: number[] = [];
  const three: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    one.push(await runCase(1, rep));
    three.push(await runCase(3, rep));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  process.stderr.write(`three vs one: ${(median(three) / median(one)).toFixed(2)}× (target ≥ 2.7×)\n`);
} finally {
  await calls.close();
  await server.release();
}
