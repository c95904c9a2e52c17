// Stop and force as every instance of a distributed run sees them
// (docs/architecture.md, Participants). Three real `workflow serve`
// processes on one run of the adoption fixture (test/fixtures/adoption/
// workflow.ts, `distributed: true`), whose handlers call a stand-in
// (test/helpers/calls-stub.ts) answering after --delay-ms; one instance owns
// the run, the other two take part. Once every instance is calling, a real
// `workflow stop <run>` (or `workflow force <workflow> --detach`) process
// asks for the stop; then, per instance, from the moment the request took
// effect (the run's stop_requested_at):
//   - until it aborted its part of the run (its "run stopping" log line: the
//     instances log at info), i.e. learned of the stop;
//   - until the last handler call it started for that run (the stand-in
//     stamps each call's arrival, with its process and run);
//   - until its participation ended: run_participants.left_at or fenced_at
//     for a participant, the run's ended_at for the owner.
// And when the stop's NOTIFY reached this process's own LISTEN. The stand-in,
// the instances and the database are on this machine: one clock.
//
//   node bench/participant-stop.ts [--reps 10] [--mode stop|force|both] [--delay-ms 50] [--concurrency 8] [--items 40000]
//
// Target: participants p99 < 500 ms, as the owner's stop (bench/stop-latency.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { ADOPT_TABLES_SQL, ADOPT_WORKFLOW_ID } from '../test/fixtures/adoption/workflow.ts';
import { startCallsStub } from '../test/helpers/calls-stub.ts';
import { REPO_ROOT, assert, freshDatabase, intFlag, openServer, parseFlags, printResult, watchdog, until } from './lib.ts';

const flags = parseFlags(process.argv.slice(2));
const reps = intFlag(flags, 'reps', 10);
const delayMs = intFlag(flags, 'delay-ms', 50);
const concurrency = intFlag(flags, 'concurrency', 8);
const items = intFlag(flags, 'items', 40_000);
const modeFlag = flags.get('mode');
const modes: Mode[] = modeFlag === 'stop' || modeFlag === 'force' ? [modeFlag] : ['stop', 'force'];
const INSTANCES = 3;
const BIN = `${REPO_ROOT}bin/workflow.js`;
const MODULE = fileURLToPath(new URL('../test/fixtures/adoption/workflow.ts', import.meta.url));
/** Calls each instance makes for a run before the stop is asked: all three are working on it. */
const WARM_CALLS = 2 * concurrency;

type Mode = 'stop' | 'force';

interface Sample {
  role: 'owner' | 'participant';
  pid: number;
  /** Request → this instance aborted its part of the run ("run stopping" in its log): when it learned of the stop. */
  learnedMs: number;
  /** Request → the last handler call this instance started for the run (0: none after the request). */
  lastCallMs: number;
  /** Calls it started after the request. */
  callsAfter: number;
  /** Request → its participation ended (left_at/fenced_at; the owner: the run's ended_at). */
  endedMs: number;
  how: string;
}

watchdog(Number(process.env.BENCH_TIMEOUT_SECONDS ?? 900));
const loadBefore = os.loadavg();
const server = await openServer();
const calls = await startCallsStub({ delayMs });
const database = await freshDatabase(server.url, `wfbench_pstop_${process.pid}`);
const client = new pg.Client({ connectionString: database.url, application_name: 'bench-participant-stop' });
await client.connect();
const env = {
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  // Info, for each instance's "run stopping" line: when it learned of the stop.
  LOG_LEVEL: 'info',
  DATABASE_URL: database.url,
  WORKFLOW_MODULES: MODULE,
  ADOPT_CALLS_URL: calls.url,
  ADOPT_DISTRIBUTED: '1',
  ADOPT_CONCURRENCY: String(concurrency),
  ADOPT_BATCH: String(concurrency),
};

/** When each instance aborted its part of a run, by `${pid}:${runId}`: the time of its "run stopping" log line. */
const stopping = new Map<string, number>();
/** When the stop's NOTIFY reached this process's own LISTEN, by run. */
const notified = new Map<number, number>();

function startServe(): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let partial = '';
    const seen = (chunk: Buffer) => {
      if (out.length < 10_000) out += chunk;
      if (/serving/.test(out)) resolve(child);
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (!line.includes('"run stopping"')) continue;
        const entry = JSON.parse(line) as { time: number; runId?: number };
        const key = `${child.pid}:${entry.runId}`;
        if (!stopping.has(key)) stopping.set(key, entry.time);
      }
    };
    child.stdout!.on('data', seen);
    child.stderr!.on('data', seen);
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${out}`)));
  });
}

/** A CLI command to its end; its exit code and output. */
function cli(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

async function runningRun(): Promise<number | undefined> {
  const { rows } = await client.query<{ id: number }>(
    `SELECT id::int AS id FROM workflow_runs WHERE workflow_id = $1 AND status = 'running' ORDER BY id DESC LIMIT 1`,
    [ADOPT_WORKFLOW_ID],
  );
  return rows[0]?.id;
}

/** Until every instance has made WARM_CALLS calls for the run: the owner and two participants. */
async function allCalling(runId: number): Promise<void> {
  const seen = () => {
    const counts = new Map<string, number>();
    for (const c of calls.calls) counts.set(`pid ${c.pid} run ${c.run}`, (counts.get(`pid ${c.pid} run ${c.run}`) ?? 0) + 1);
    return [...counts].map(([k, n]) => `${k}: ${n}`).join(', ') || 'no calls';
  };
  await until(async () => {
    const perPid = new Map<number, number>();
    for (const c of calls.calls) if (c.run === runId) perPid.set(c.pid, (perPid.get(c.pid) ?? 0) + 1);
    return perPid.size === INSTANCES && [...perPid.values()].every((n) => n >= WARM_CALLS);
  }, `all ${INSTANCES} instances calling for run ${runId}`).catch((error: Error) => {
    throw new Error(`${error.message} (${seen()})`);
  });
}

async function measure(runId: number): Promise<Sample[]> {
  // Ended, and every participation of it over (left or fenced).
  await until(async () => {
    const { rows } = await client.query<{ over: boolean }>(
      `SELECT r.status NOT IN ('running', 'queued') AND NOT EXISTS (SELECT 1 FROM run_participants p WHERE p.run_id = r.id AND p.left_at IS NULL AND p.fenced_at IS NULL) AS over
         FROM workflow_runs r WHERE r.id = $1`,
      [runId],
    );
    return rows[0]?.over;
  }, `run ${runId} and its participations to end`);
  // A call started just before the end reaches the stand-in a moment later.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const { rows: runRows } = await client.query<{ requested: number; ended: number; owner: string; status: string }>(
    `SELECT extract(epoch FROM stop_requested_at)::float8 * 1000 AS requested, extract(epoch FROM ended_at)::float8 * 1000 AS ended,
            owner_instance AS owner, status
       FROM workflow_runs WHERE id = $1`,
    [runId],
  );
  const run = runRows[0]!;
  assert(run.requested !== null, `run ${runId} has no stop_requested_at`);
  const { rows: participants } = await client.query<{ instance: string; ended: number; how: string }>(
    `SELECT DISTINCT ON (instance) instance, extract(epoch FROM coalesce(left_at, fenced_at))::float8 * 1000 AS ended,
            CASE WHEN left_at IS NOT NULL THEN 'left' ELSE 'fenced' END AS how
       FROM run_participants WHERE run_id = $1 ORDER BY instance, joined_at DESC`,
    [runId],
  );
  const t0 = run.requested;
  const sample = (role: Sample['role'], instance: string, ended: number, how: string): Sample => {
    const pid = Number.parseInt(instance, 10);
    const mine = calls.calls.filter((c) => c.run === runId && c.pid === pid);
    const after = mine.filter((c) => c.at > t0);
    const last = after.length ? Math.max(...after.map((c) => c.at)) : t0;
    const learned = stopping.get(`${pid}:${runId}`);
    return {
      role,
      pid,
      learnedMs: learned === undefined ? Number.NaN : learned - t0,
      lastCallMs: last - t0,
      callsAfter: after.length,
      endedMs: ended - t0,
      how,
    };
  };
  notifiedMs.push((notified.get(runId) ?? Number.NaN) - t0);
  const samples = [sample('owner', run.owner, run.ended, run.status), ...participants.map((p) => sample('participant', p.instance, p.ended, p.how))];
  assert(samples.filter((s) => s.role === 'participant').length === INSTANCES - 1, `run ${runId}: ${participants.length} participants`);
  return samples;
}

async function startRun(): Promise<number> {
  // The fixture's rate limit is 1 s between batches: a refusal (exit 3) is tried again.
  const started = await until(async () => {
    const outcome = await cli(['run', String(ADOPT_WORKFLOW_ID), '--detach']);
    if (outcome.code === 0) return true;
    assert(outcome.code === 3, `run --detach exited ${outcome.code}: ${outcome.output}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    return false;
  }, 'a run to start');
  assert(started, 'run started');
  return until(runningRun, 'the run to be running');
}

const servers: ChildProcess[] = [];
/** Request → the stop's NOTIFY at this process, per rep. */
const notifiedMs: number[] = [];
const results: Record<Mode, Sample[][]> = { stop: [], force: [] };
const started = performance.now();
try {
  client.on('notification', (message) => {
    const control = JSON.parse(message.payload ?? '{}') as { type?: string; runId?: number };
    if (control.type === 'stop' && control.runId !== undefined && !notified.has(control.runId))
      notified.set(control.runId, performance.timeOrigin + performance.now());
  });
  await client.query('LISTEN workflow_control');
  for (const statement of ADOPT_TABLES_SQL) await client.query(statement);
  await client.query('INSERT INTO adopt_items (id) SELECT g FROM generate_series(1, $1::int) g', [items]);
  for (let i = 0; i < INSTANCES; i++) servers.push(await startServe());

  for (const mode of modes) {
    let runId = await startRun();
    for (let rep = 0; rep < reps; rep++) {
      await allCalling(runId);
      const outcome = mode === 'stop' ? await cli(['stop', String(runId)]) : await cli(['force', String(ADOPT_WORKFLOW_ID), '--detach']);
      assert(outcome.code === 0, `${mode} exited ${outcome.code}: ${outcome.output}`);
      const samples = await measure(runId);
      results[mode].push(samples);
      const line = samples.map(
        (s) =>
          `${s.role === 'owner' ? 'owner' : 'part.'} ${s.pid}: aborted +${s.learnedMs.toFixed(0)}, last call +${s.lastCallMs.toFixed(0)} (${s.callsAfter} after), ended +${s.endedMs.toFixed(0)} ms (${s.how})`,
      );
      process.stderr.write(`${mode} #${rep + 1} run ${runId}: NOTIFY +${notifiedMs.at(-1)!.toFixed(0)}; ${line.join('; ')}\n`);
      if (mode === 'force') {
        // The force's run is the next one to force (its participants join it as they did the first).
        runId = await until(async () => {
          const id = await runningRun();
          return id !== undefined && id > runId ? id : undefined;
        }, 'the forced run');
      } else if (rep + 1 < reps) runId = await startRun();
    }
    if (mode === 'force') {
      const id = await runningRun();
      if (id !== undefined) assert((await cli(['stop', String(id)])).code === 0, 'the last forced run stopped');
    }
  }
  const { rows: dup } = await client.query('SELECT count(*)::int AS n FROM (SELECT 1 FROM adopt_saves GROUP BY subject, step HAVING count(*) > 1) d');
  assert(dup[0].n === 0, `${dup[0].n} (subject, step) saved twice`);
} finally {
  for (const child of servers) child.kill('SIGKILL');
  await client.end();
  await calls.close();
  await database.drop().catch((error: Error) => process.stderr.write(`could not drop the database: ${error.message}\n`));
  await server.release();
}

const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return +sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!.toFixed(1);
};
const summary: Record<string, unknown> = {};
const figures: { figure: string; value: string; target: string; met: boolean }[] = [];
for (const mode of modes) {
  const flat = results[mode].flat();
  for (const role of ['participant', 'owner'] as const) {
    const of = flat.filter((s) => s.role === role);
    const learned = of.map((s) => s.learnedMs).filter((ms) => !Number.isNaN(ms));
    const lastCall = of.map((s) => s.lastCallMs);
    const ended = of.map((s) => s.endedMs);
    const callsAfter = of.map((s) => s.callsAfter);
    summary[`${mode}:${role}`] = {
      samples: of.length,
      abortedMs: { p50: quantile(learned, 0.5), p99: quantile(learned, 0.99), max: quantile(learned, 1) },
      lastCallMs: { p50: quantile(lastCall, 0.5), p99: quantile(lastCall, 0.99), max: quantile(lastCall, 1) },
      endedMs: { p50: quantile(ended, 0.5), p99: quantile(ended, 0.99), max: quantile(ended, 1) },
      callsAfter: { p50: quantile(callsAfter, 0.5), max: quantile(callsAfter, 1) },
      ended: [...new Set(of.map((s) => s.how))],
    };
    const target = role === 'participant' ? '< 500 ms' : '';
    figures.push(
      {
        figure: `${mode} → ${role}'s last handler call p99 (${of.length})`,
        value: `${quantile(lastCall, 0.99)} ms`,
        target,
        met: !target || quantile(lastCall, 0.99) < 500,
      },
      {
        figure: `${mode} → ${role === 'owner' ? 'the run ended (owner)' : "participant's participation ended"} p99 (${of.length})`,
        value: `${quantile(ended, 0.99)} ms`,
        target,
        met: !target || quantile(ended, 0.99) < 500,
      },
    );
  }
}
const seconds = (performance.now() - started) / 1000;
printResult({
  system: 'workflow-chatops participant stop latency',
  config: `${INSTANCES} serve instances, ${reps} reps of ${modes.join(' and ')}, ${concurrency} calls in flight each, stand-in ${delayMs} ms`,
  items: modes.length * reps,
  seconds,
  itemsPerSecond: (modes.length * reps) / seconds,
  peakRssMb: 0,
  sampledPeakRssMb: 0,
  cpuSeconds: 0,
  details: {
    ...summary,
    notifiedMs: { p50: quantile(notifiedMs, 0.5), p99: quantile(notifiedMs, 0.99), max: quantile(notifiedMs, 1) },
    targetP99Ms: 500,
    loadAverage: { before: loadBefore.map((l) => +l.toFixed(2)), after: os.loadavg().map((l) => +l.toFixed(2)) },
    figures,
  },
});
for (const mode of modes) {
  const line = (['participant', 'owner'] as const).map((role) => {
    const { lastCallMs, endedMs } = summary[`${mode}:${role}`] as Record<'lastCallMs' | 'endedMs', { p50: number; p99: number }>;
    return `${role}s: last call p50 ${lastCallMs.p50} / p99 ${lastCallMs.p99} ms, ended p50 ${endedMs.p50} / p99 ${endedMs.p99} ms`;
  });
  process.stderr.write(`${mode}: ${line.join('; ')} (target for participants: p99 < 500 ms)\n`);
}
