// Chaos: 20 SIGKILLs of a process at random moments of runs (seeded: set
// CHAOS_SEED to replay). Each round starts a process that resumes the run the
// last round killed (the first starts a global_batch): a foreground
// `workflow run`, or every fourth round a `serve` given the run through
// `run --detach`. It is killed before its run exists, just as it starts, or
// after a random number of completed interactions. After each kill: the lock
// is free, one check (engine.recoverAbandoned, as `workflow status` and the
// monitor do) marks the run abandoned, no interaction stays running, and
// domain rows match completed interactions one to one. The last resume
// completes the work.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { refuseQueuedRun } from '../src/db/queries/runs.ts';
import type { Engine } from '../src/engine/engine.ts';
import postingsWorkflow from '../src/workflows/postings/index.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import { loadConfig } from '../src/config.ts';
import { resolveDefaults } from '../src/workflows/define.ts';
import {
  assertDomainMatchesInteractions,
  completedCount,
  createRandom,
  interactionStatuses,
  pendingPostings,
  recordFigure,
  waitForLockFree,
} from './helpers/chaos.ts';
import { eventually, runCli, startCli, type CliProcess } from './helpers/cli.ts';
import type { TestDatabase } from './helpers/database.ts';
import { migratedDatabase, quietLog, startEngine, type TestDb } from './helpers/engine.ts';
import { startOllamaStub, type OllamaStub } from './helpers/ollama-stub.ts';

const KILLS = Number(process.env.CHAOS_KILLS ?? 20);
const SEED = Number(process.env.CHAOS_SEED ?? 4242);
const POSTINGS = 400;

describe(`${KILLS} SIGKILLs at random moments of runs`, () => {
  let database: TestDatabase;
  let db: TestDb;
  let ollama: OllamaStub;
  let env: NodeJS.ProcessEnv;
  let checker: Engine;
  const children: CliProcess[] = [];

  before(async () => {
    ({ database, db } = await migratedDatabase('chaos_kill'));
    await replaceDemoPostings(db, POSTINGS);
    ollama = await startOllamaStub({ delayMs: 25 });
    env = { DATABASE_URL: database.url, OLLAMA_URL: ollama.url, WORKFLOW_HEARTBEAT_MS: '200' };
    const workflow = resolveDefaults(postingsWorkflow({ config: loadConfig({ OLLAMA_URL: ollama.url }), log: quietLog }));
    checker = startEngine(database.url, [workflow]);
  });

  after(async () => {
    for (const child of children) if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exited));
    await checker?.close();
    await ollama?.close();
    await db?.destroy();
    await database?.drop();
  });

  test('after each kill: lock free, run abandoned in one check, nothing running, domain = interactions; a resume completes the work', async () => {
    const random = createRandom(SEED);
    const rounds: { round: number; surface: string; moment: string; runId: number | null; lockFreeMs: number; recoverMs: number; completed: number }[] = [];
    let previous: number | null = null; // the last run, to resume
    for (let round = 1; round <= KILLS; round++) {
      const surface = round % 4 === 0 ? 'serve' : 'run';
      const r = random();
      const moment = r < 0.15 ? 'before-run' : r < 0.35 ? 'at-start' : 'mid-run';
      const threshold = 1 + Math.floor(random() * 40);
      const delayMs = Math.floor(random() * 1_500);
      const runArgs = previous === null ? ['run', '3001'] : ['run', '3001', '--mode', 'single_run', '--run', String(previous)];
      const knownRuns = new Set((await db.selectFrom('workflow_runs').select('id').execute()).map((x) => x.id));
      const completedBefore = await completedCount(db);

      let victim: CliProcess;
      if (surface === 'serve') {
        victim = startCli(['serve'], env);
        children.push(victim);
        await victim.waitFor(/serving/);
        const queued = await runCli([...runArgs, '--detach'], env);
        assert.equal(queued.code, 0, queued.stderr);
      } else {
        victim = startCli(runArgs, env);
        children.push(victim);
      }
      const newRun = async () => {
        const rows = await db.selectFrom('workflow_runs').select(['id', 'status']).where('status', 'in', ['running']).execute();
        return rows.find((row) => !knownRuns.has(row.id));
      };
      if (moment === 'before-run') {
        // A random moment from start-up on: loading, migrating, taking the lock, starting the run.
        const deadline = Date.now() + delayMs;
        await eventually(async () => Date.now() >= deadline || (await newRun()), 'the moment');
      } else if (moment === 'at-start') {
        await eventually(newRun, 'the run to start', 30_000);
      } else {
        await eventually(
          async () => (await newRun()) && (await completedCount(db)) >= completedBefore + threshold,
          `${threshold} more completed interactions`,
          30_000,
        );
      }
      victim.child.kill('SIGKILL');
      await victim.exited;
      const lockFreeMs = await waitForLockFree(database.url, db);

      const started = (await db.selectFrom('workflow_runs').selectAll().orderBy('id', 'desc').execute()).filter(
        (row) => !knownRuns.has(row.id) && row.status !== 'queued',
      );
      assert.ok(started.length <= 1, 'at most one run started per round');
      const run = started[0];
      const recoverStart = performance.now();
      const recovered = await checker.recoverAbandoned();
      const recoverMs = performance.now() - recoverStart;
      if (run) {
        const now = await db.selectFrom('workflow_runs').selectAll().where('id', '=', run.id).executeTakeFirstOrThrow();
        assert.notEqual(now.status, 'running', `round ${round}: run #${run.id} still running after one check`);
        if (run.status === 'running') {
          assert.equal(now.status, 'abandoned', `round ${round} (${moment})`);
          assert.ok(recovered.some((x) => x.id === run.id));
        }
        assert.notEqual(now.status, 'completed', `round ${round}: the work ran out (raise POSTINGS)`);
        previous = run.id;
      }
      // Runs queued for a killed serve stay queued; take them out of the way.
      for (const queued of await db.selectFrom('workflow_runs').select('id').where('status', '=', 'queued').execute()) {
        await refuseQueuedRun(db, queued.id, 'chaos: its server was killed before taking it');
      }
      assert.equal((await interactionStatuses(db)).running, undefined, `round ${round}: no interaction left running`);
      await assertDomainMatchesInteractions(db);
      rounds.push({
        round,
        surface,
        moment,
        runId: run?.id ?? null,
        lockFreeMs: Math.round(lockFreeMs),
        recoverMs: Math.round(recoverMs),
        completed: await completedCount(db),
      });
    }

    // The last resume completes the work.
    assert.ok(previous !== null, 'some round started a run');
    ollama.setDelay(0);
    const resume = await runCli(['run', '3001', '--mode', 'single_run', '--run', String(previous)], env);
    assert.equal(resume.code, 0, resume.stderr);
    assert.equal(await pendingPostings(db), 0);
    assert.equal((await interactionStatuses(db)).running, undefined);
    await assertDomainMatchesInteractions(db);
    const statuses = await db.selectFrom('workflow_runs').select('status').execute();
    const byStatus: Record<string, number> = {};
    for (const s of statuses) byStatus[s.status] = (byStatus[s.status] ?? 0) + 1;
    const lock = rounds.map((x) => x.lockFreeMs).sort((a, b) => a - b);
    const rec = rounds.map((x) => x.recoverMs).sort((a, b) => a - b);
    await recordFigure('sigkill', {
      kills: KILLS,
      seed: SEED,
      moments: Object.fromEntries(['before-run', 'at-start', 'mid-run'].map((m) => [m, rounds.filter((x) => x.moment === m).length])),
      serveKills: rounds.filter((x) => x.surface === 'serve').length,
      lockFreeMsMax: lock.at(-1),
      recoverMsP50: rec[Math.floor(rec.length / 2)],
      recoverMsMax: rec.at(-1),
      runs: byStatus,
    });
  });
});
