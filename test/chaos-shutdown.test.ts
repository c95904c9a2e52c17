// Chaos: SIGTERM to a serving process in the middle of a run (graceful
// shutdown). Handlers still running after the grace period are aborted and
// their items go back to pending; those that finish within it keep their
// results; the process exits 0 and the run is released for adoption (still
// `running`, no owner), and the next serving instance takes it up and
// finishes it. A foreground run hands off the same way when a serving
// instance is up (exit 0), and otherwise ends `stopped` with reason
// `shutdown` and exits 143, as a process ended by SIGTERM does (README,
// "Exit codes"). How long the exit takes is measured in bench/, not here.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import { assertDomainMatchesInteractions, interactionStatuses, pendingPostings, recordFigure, waitForLockFree, waitForRunProgress } from './helpers/chaos.ts';
import { eventually, runCli, startCli, type CliProcess } from './helpers/cli.ts';
import type { TestDatabase } from './helpers/database.ts';
import { migratedDatabase, type TestDb } from './helpers/engine.ts';
import { startOllamaStub, type OllamaStub } from './helpers/ollama-stub.ts';

const POSTINGS = 80;
let database: TestDatabase;
let db: TestDb;
let ollama: OllamaStub;
let env: NodeJS.ProcessEnv;
const started: CliProcess[] = [];

function cli(args: string[], extra: NodeJS.ProcessEnv = {}): CliProcess {
  const child = startCli(args, { ...env, ...extra });
  started.push(child);
  return child;
}

beforeEach(async () => {
  ({ database, db } = await migratedDatabase('chaos_shutdown'));
  await replaceDemoPostings(db, POSTINGS);
  ollama = await startOllamaStub({ delayMs: 40 });
  env = { DATABASE_URL: database.url, OLLAMA_URL: ollama.url, WORKFLOW_HEARTBEAT_MS: '200' };
});

afterEach(async () => {
  for (const child of started.splice(0)) {
    if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
    await child.exited;
  }
  await ollama.close();
  await db.destroy();
  await database.drop();
});

async function serveWithRun(extra: NodeJS.ProcessEnv): Promise<{ server: CliProcess; runId: number }> {
  const server = cli(['serve'], extra);
  await server.waitFor(/serving/);
  const detached = await runCli(['run', '3001', '--detach'], env);
  assert.equal(detached.code, 0, detached.stderr);
  const runId = await waitForRunProgress(db, 5);
  return { server, runId };
}

/** The foreground run's id once it has made progress; what it printed if it did not. */
async function progressOf(owner: CliProcess): Promise<number> {
  return waitForRunProgress(db, 5, 90_000).catch((error: Error) => {
    throw new Error(`${error.message}; the foreground run printed:\n${owner.stdout}\n${owner.stderr}`);
  });
}

describe('SIGTERM during a run', () => {
  test('handlers slower than the grace period: aborted after the grace, back to pending; exit 0; run released for adoption, then taken up and finished by the next serving instance', async () => {
    const GRACE = 1_000;
    const { server, runId } = await serveWithRun({ WORKFLOW_SHUTDOWN_GRACE_MS: String(GRACE) });
    ollama.setDelay(60_000); // every call from now on outlives the grace period
    // Wait for a call made after the change: one held for 60 s is then in flight.
    const seen = ollama.requests.length;
    await eventually(() => Promise.resolve(ollama.requests.length > seen && server.child.exitCode === null), 'a held model call');
    const sent = performance.now();
    server.child.kill('SIGTERM');
    const exit = await server.exited;
    const elapsed = performance.now() - sent;
    assert.equal(exit.code, 0, exit.stderr);
    assert.match(exit.stderr, /shutting down/);
    // Held for 60 s, the calls could only end by being aborted: the process did not wait them out.
    assert.ok(ollama.aborted > 0, 'in-flight model calls were aborted');

    // Released for adoption (docs/architecture.md, Adoption): running, no owner, its owner's tenure ended by handoff.
    const run = await db.selectFrom('workflow_runs').selectAll().where('id', '=', runId).executeTakeFirstOrThrow();
    assert.equal(run.status, 'running');
    assert.equal(run.owner_token, null);
    assert.equal(run.owners.at(-1)?.ended, 'handoff');
    const statuses = await interactionStatuses(db);
    assert.equal(statuses.running, undefined, 'nothing left running');
    assert.ok((statuses.pending ?? 0) > 0, 'aborted work went back to pending');
    await assertDomainMatchesInteractions(db);
    await waitForLockFree(database.url, db, 1_000);
    const audit = await db
      .selectFrom('audit_log')
      .select(['action', 'reason'])
      .where('run_id', '=', runId)
      .where('action', '=', 'run_released')
      .executeTakeFirstOrThrow();
    assert.equal(audit.reason, 'handoff');

    // The next serving instance takes the same run up and finishes it.
    ollama.setDelay(0);
    const next = cli(['serve']);
    await next.waitFor(/serving/);
    const ended = await eventually(async () => {
      const row = await db.selectFrom('workflow_runs').selectAll().where('id', '=', runId).executeTakeFirstOrThrow();
      return row.status !== 'running' ? row : undefined;
    }, 'the adopted run to end');
    assert.equal(ended.status, 'completed');
    assert.equal(ended.owners.at(-1)?.reason, 'handoff');
    assert.equal(await pendingPostings(db), 0);
    await assertDomainMatchesInteractions(db);
    await recordFigure('sigterm-abort', { graceMs: GRACE, exitMs: Math.round(elapsed), pendingAfter: statuses.pending, abortedCalls: ollama.aborted });
  });

  test('handlers faster than the grace period: they finish and are committed, nothing is aborted', async () => {
    const GRACE = 3_000;
    const { server, runId } = await serveWithRun({ WORKFLOW_SHUTDOWN_GRACE_MS: String(GRACE) });
    ollama.setDelay(400);
    const before = ollama.requests.length;
    await eventually(() => Promise.resolve(ollama.requests.length > before), 'a model call');
    const sent = performance.now();
    server.child.kill('SIGTERM');
    const exit = await server.exited;
    const elapsed = performance.now() - sent;
    assert.equal(exit.code, 0, exit.stderr);
    assert.equal(ollama.aborted, 0, 'no model call was cut off');
    const run = await db.selectFrom('workflow_runs').selectAll().where('id', '=', runId).executeTakeFirstOrThrow();
    assert.equal(run.status, 'running');
    assert.equal(run.owner_token, null, 'released for adoption');
    assert.equal((await interactionStatuses(db)).running, undefined);
    await assertDomainMatchesInteractions(db);
    await recordFigure('sigterm-drain', { graceMs: GRACE, exitMs: Math.round(elapsed) });
  });

  test('a foreground `workflow run` on SIGTERM with no serving instance: stopped (shutdown), exit 143', async () => {
    const owner = cli(['run', '3001'], { WORKFLOW_SHUTDOWN_GRACE_MS: '500' });
    const runId = await progressOf(owner);
    ollama.setDelay(60_000);
    owner.child.kill('SIGTERM');
    const exit = await owner.exited;
    assert.equal(exit.code, 143, `exit 143, as a process ended by SIGTERM (README, "Exit codes"): ${exit.stderr}`);
    const run = await db.selectFrom('workflow_runs').selectAll().where('id', '=', runId).executeTakeFirstOrThrow();
    assert.equal(run.status, 'stopped');
    assert.equal(run.ended_reason, 'shutdown');
    assert.equal((await interactionStatuses(db)).running, undefined);
    await assertDomainMatchesInteractions(db);
  });

  test('a foreground `workflow run` on SIGTERM with a serving instance up: handed off, exit 0, completed by the serving instance, one audit record', async () => {
    const server = cli(['serve']);
    await server.waitFor(/serving/);
    const owner = cli(['run', '3001'], { WORKFLOW_SHUTDOWN_GRACE_MS: '5000' });
    const runId = await progressOf(owner);
    const started = await db.selectFrom('workflow_runs').select('owner_instance').where('id', '=', runId).executeTakeFirstOrThrow();
    assert.ok(started.owner_instance?.startsWith(`${owner.child.pid}-`), 'the foreground process owns the run');
    owner.child.kill('SIGTERM');
    const exit = await owner.exited;
    assert.equal(exit.code, 0, `a run handed off goes on elsewhere: exit 0 (README, "Exit codes"): ${exit.stderr}`);
    assert.match(exit.stderr, new RegExp(`run #${runId} handed off`));

    const ended = await eventually(async () => {
      const row = await db.selectFrom('workflow_runs').selectAll().where('id', '=', runId).executeTakeFirstOrThrow();
      return row.status !== 'running' ? row : undefined;
    }, 'the handed-off run to end');
    assert.equal(ended.status, 'completed', ended.error ?? '');
    assert.equal(ended.owners[0]?.ended, 'handoff', 'the foreground owner handed it off');
    const last = ended.owners.at(-1);
    assert.equal(last?.reason, 'handoff');
    assert.ok(last?.instance.startsWith(`${server.child.pid}-`), `the serving instance finished it: ${JSON.stringify(ended.owners)}`);
    assert.equal(await pendingPostings(db), 0);
    await assertDomainMatchesInteractions(db);
    const audit = await db.selectFrom('workflow_run_audit').selectAll().where('id', '=', runId).execute();
    assert.equal(audit.length, 1, 'one audit record');
    const records = await db.selectFrom('workflow_runs').select('id').execute();
    assert.deepEqual(
      records.map((r) => r.id),
      [runId],
      'no second run was started',
    );
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM interactions WHERE run_id = ${runId} AND status = 'completed'`.execute(db);
    assert.equal(ended.interactions_completed, rows[0]!.n, "the audit counts every owner's work");
    server.child.kill('SIGTERM');
    assert.equal((await server.exited).code, 0);
  });
});
