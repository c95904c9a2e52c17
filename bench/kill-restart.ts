// SIGKILL to restart: how soon after the owner of a run is killed (kill -9,
// OOM killer, a lost machine) a new run of the same workflow can start. The
// owner is a real `workflow run 3001` process (the example workflow, local
// handlers, demo postings); it is killed mid-run; then, in this process, one
// check (engine.recoverAbandoned, as `workflow status`, `list` and the monitor
// do) marks the dead run abandoned and a new run resuming it starts.
//
//   node bench/kill-restart.ts [--kills 10] [--postings 3000]
//
// Timed per kill: SIGKILL sent → lock free; SIGKILL sent → the new run has
// started (its row is `running`, its lock held). Target: < 2 s.
import { spawn } from 'node:child_process';
import { sql } from 'kysely';
import pg from 'pg';
import { createKysely, createPool } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { computeLockKey } from '../src/db/queries/locks.ts';
import { Engine } from '../src/engine/engine.ts';
import { createLogger } from '../src/log.ts';
import { loadConfig } from '../src/config.ts';
import { resolveDefaults } from '../src/workflows/define.ts';
import postingsWorkflow from '../src/workflows/postings/index.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import type { PostingsTables } from '../src/workflows/postings/schema.ts';
import { syncWorkflows, loadWorkflows } from '../src/workflows/registry.ts';
import { REPO_ROOT, assert, freshDatabase, intFlag, openServer, parseFlags, peakRssMb, printResult, watchdog, until } from './lib.ts';

const flags = parseFlags(process.argv.slice(2));
const kills = intFlag(flags, 'kills', 10);
const postings = intFlag(flags, 'postings', 3_000);
const BIN = `${REPO_ROOT}bin/workflow.js`;

watchdog();
const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_kill_${process.pid}`);
const log = createLogger(process.env.LOG_LEVEL ?? 'warn');
try {
  const db = createKysely<PostingsTables>(createPool({ connectionString: database.url, applicationName: 'bench-setup', max: 2 }));
  await migrateToLatest(db);
  const config = loadConfig({ DATABASE_URL: database.url });
  await syncWorkflows(db, await loadWorkflows(undefined, { config, log }));
  await replaceDemoPostings(db, postings);
  const workflow = resolveDefaults(postingsWorkflow({ config, log }));
  const engine = new Engine({
    connectionString: database.url,
    workflows: [workflow],
    log,
    heartbeatMs: 2_000,
    forceGraceMs: 2_000,
    instanceId: 'bench-restarter',
  });
  const key = await computeLockKey(db, workflow.id, null);
  const probe = new pg.Client({ connectionString: database.url });
  await probe.connect();

  const completed = async (runId: number) =>
    (await sql<{ n: number }>`SELECT count(*)::int AS n FROM interactions WHERE run_id = ${runId} AND status = 'completed'`.execute(db)).rows[0]!.n;

  const lockFree: number[] = [];
  const restart: number[] = [];
  let previous: number | null = null;
  for (let i = 0; i < kills; i++) {
    const args = previous === null ? ['run', '3001'] : ['run', '3001', '--mode', 'single_run', '--run', String(previous)];
    const known = new Set((await db.selectFrom('workflow_runs').select('id').execute()).map((r: { id: number }) => r.id));
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: database.url, LOG_LEVEL: 'warn', WORKFLOW_HEARTBEAT_MS: '2000' },
      stdio: 'ignore',
    });
    const exited = new Promise((resolve) => child.on('close', resolve));
    const runId = await until(async () => {
      const row = await db.selectFrom('workflow_runs').select('id').where('status', '=', 'running').executeTakeFirst();
      return row && !known.has(row.id) && (await completed(row.id)) >= 20 ? row.id : undefined;
    }, 'the owner to make progress');

    const killed = performance.now();
    child.kill('SIGKILL');
    await until(async () => (await probe.query('SELECT pg_try_advisory_lock($1::bigint) AS ok', [key])).rows[0].ok, 'the lock to be free', 10_000);
    lockFree.push(performance.now() - killed);
    await probe.query('SELECT pg_advisory_unlock($1::bigint)', [key]);
    const started = await until(
      async () => {
        await engine.recoverAbandoned();
        const outcome = await engine.startRun({ workflow, mode: 'single_run', resumeRunId: runId, force: false, requestedBy: 'bench', source: 'bench' });
        return outcome.started ? outcome.run : undefined;
      },
      'a new run to start',
      10_000,
    );
    restart.push(performance.now() - killed);
    await exited;
    // Let the successor go: stop it, and kill the next owner while it resumes this one.
    await engine.requestStop(started.id, 'bench');
    const summary = await started.done;
    assert(summary.run.status === 'stopped', `successor ended ${summary.run.status}`);
    previous = started.id;
  }
  const running = await sql<{ n: number }>`SELECT count(*)::int AS n FROM interactions WHERE status = 'running'`.execute(db);
  assert(running.rows[0]!.n === 0, 'interactions left running');
  await probe.end();
  await engine.close();
  await db.destroy();

  const stats = (values: number[]) => {
    const s = [...values].sort((a, b) => a - b);
    return { p50: +s[Math.floor(s.length / 2)]!.toFixed(1), max: +s.at(-1)!.toFixed(1), min: +s[0]!.toFixed(1) };
  };
  const totalSeconds = restart.reduce((a, b) => a + b, 0) / 1000;
  printResult({
    system: 'workflow-chatops SIGKILL → restart',
    config: `${kills} kills of a \`workflow run 3001\` owner mid-run; one recoverAbandoned check, then a resume starts`,
    items: kills,
    seconds: totalSeconds,
    itemsPerSecond: kills / totalSeconds,
    peakRssMb: peakRssMb(),
    sampledPeakRssMb: peakRssMb(),
    cpuSeconds: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    details: {
      lockFreeMs: stats(lockFree),
      restartMs: stats(restart),
      targetMs: 2_000,
      figures: [
        { figure: `SIGKILL of the owner → lock free (max of ${kills})`, value: `${stats(lockFree).max} ms`, target: '', met: true },
        {
          figure: `SIGKILL of the owner → new run started (max of ${kills})`,
          value: `${stats(restart).max} ms`,
          target: '< 2 s',
          met: stats(restart).max < 2_000,
        },
      ],
    },
  });
} finally {
  await database.drop().catch((error: Error) => process.stderr.write(`could not drop the database: ${error.message}\n`));
  await server.release();
}
