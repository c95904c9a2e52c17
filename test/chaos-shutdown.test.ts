// Chaos: SIGTERM to a serving process in the middle of a run (graceful
// shutdown). It exits 0 within the grace period plus a second; the run is
// released for adoption (still `running`, no owner); handlers that finish
// within the grace period keep their results; the rest go back to pending and
// the next serving instance takes the run up and finishes it. A foreground
// run with no serving instance ends `stopped` with reason `shutdown`.
import assert from 'node:assert/strict';
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

describe('SIGTERM during a run', () => {
  test('handlers slower than the grace period: aborted, back to pending; exit 0 within grace + 1 s; run released for adoption, then taken up and finished by the next serving instance', async () => {
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
    assert.ok(elapsed < GRACE + 1_000, `exited ${Math.round(elapsed)} ms after SIGTERM (grace ${GRACE} ms)`);
    assert.match(exit.stderr, /shutting down/);

    // Released for adoption (docs/architecture.md, Adoption): running, no owner, its owner's tenure ended by handoff.
    const run = await db.selectFrom('workflow_runs').selectAll().where('id', '=', runId).executeTakeFirstOrThrow();
    assert.equal(run.status, 'running');
    assert.equal(run.owner_token, null);
    assert.equal(run.owners.at(-1)?.ended, 'handoff');
    const statuses = await interactionStatuses(db);
    assert.equal(statuses.running, undefined, 'nothing left running');
    assert.ok((statuses.pending ?? 0) > 0, 'aborted work went back to pending');
    assert.ok(ollama.aborted > 0, 'in-flight model calls were aborted');
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
    assert.ok(elapsed < GRACE + 1_000, `exited ${Math.round(elapsed)} ms after SIGTERM`);
    assert.equal(ollama.aborted, 0, 'no model call was cut off');
    const run = await db.selectFrom('workflow_runs').selectAll().where('id', '=', runId).executeTakeFirstOrThrow();
    assert.equal(run.status, 'running');
    assert.equal(run.owner_token, null, 'released for adoption');
    assert.equal((await interactionStatuses(db)).running, undefined);
    await assertDomainMatchesInteractions(db);
    await recordFigure('sigterm-drain', { graceMs: GRACE, exitMs: Math.round(elapsed) });
  });

  test('a foreground `workflow run` on SIGTERM shuts down the same way', async () => {
    const owner = cli(['run', '3001'], { WORKFLOW_SHUTDOWN_GRACE_MS: '500' });
    const runId = await waitForRunProgress(db, 5);
    ollama.setDelay(60_000);
    owner.child.kill('SIGTERM');
    const exit = await owner.exited;
    assert.equal(exit.code, 0, exit.stderr);
    const run = await db.selectFrom('workflow_runs').selectAll().where('id', '=', runId).executeTakeFirstOrThrow();
    assert.equal(run.status, 'stopped');
    assert.equal(run.ended_reason, 'shutdown');
    assert.equal((await interactionStatuses(db)).running, undefined);
    await assertDomainMatchesInteractions(db);
  });
});
