// Chaos: the run's lock connection terminated from outside
// (pg_terminate_backend of the session holding the advisory lock, as an
// operator or a failover would). The runner notices within one heartbeat,
// stops, and writes nothing afterwards, even from handlers that finish later;
// the next check marks the run abandoned and a resume completes the work.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { computeLockKey, lockHolderPid } from '../src/db/queries/locks.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { eventually } from './helpers/cli.ts';
import { recordFigure } from './helpers/chaos.ts';
import { startEngine, testEngine, type TestEngine } from './helpers/engine.ts';

const HEARTBEAT_MS = 200;
const ITEMS = 200;

describe('lock connection terminated from outside', () => {
  let t: TestEngine;
  let releaseHandlers: () => void = () => {};
  const held = new Promise<void>((resolve) => (releaseHandlers = resolve));
  let calls = 0;

  before(async () => {
    const workflow = itemsWorkflow({
      id: 9300,
      concurrency: 8,
      batchSize: 20,
      rateLimitSeconds: 0,
      // After the first 40 items, handlers wait for the test and ignore their abort signal.
      handle: async ({ id }) => {
        if (++calls > 40) await held;
        return `done ${id}`;
      },
    });
    t = await testEngine('chaos_lock', [workflow], (db) => createItems(db, ITEMS));
  });

  after(async () => {
    releaseHandlers();
    await t?.close();
  });

  const counts = async () => {
    const { rows } = await sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM interactions GROUP BY status ORDER BY status`.execute(
      t.db,
    );
    const { rows: domain } = await sql<{ n: number }>`SELECT count(result)::int AS n FROM items`.execute(t.db);
    const run = await t.db.selectFrom('workflow_runs').select(['status', 'heartbeat_at', 'interactions_completed', 'progress']).executeTakeFirstOrThrow();
    return { interactions: Object.fromEntries(rows.map((r) => [r.status, r.n])), domain: domain[0]!.n, run };
  };

  test('the runner notices within one heartbeat, stops, and writes nothing after', async () => {
    const outcome = await t.engine.startRun({ workflow: t.workflows[0]!, mode: 'global_batch', force: false, requestedBy: 'chaos', source: 'test' });
    assert.ok(outcome.started);
    const run = outcome.run;
    await eventually(async () => (await counts()).domain >= 40 && run.progress().process!.running >= 8, 'handlers held in flight');
    const key = await computeLockKey(t.db, 9300, null);
    const pid = await lockHolderPid(t.db, key);
    assert.ok(pid, 'someone holds the lock');

    const atTermination = await counts();
    const terminated = performance.now();
    await sql`SELECT pg_terminate_backend(${pid}::int)`.execute(t.db);
    const summary = await run.done;
    const noticedMs = performance.now() - terminated;
    assert.equal(summary.outcome, 'lock_lost');

    // The held handlers now finish; their results must go nowhere.
    releaseHandlers();
    const afterStop = await counts();
    assert.deepEqual(afterStop, atTermination, 'nothing written between the termination and the stop');
    // Two heartbeats later, still nothing (no heartbeat, no completion, no end record).
    const observeUntil = Date.now() + 3 * HEARTBEAT_MS;
    while (Date.now() < observeUntil) {
      assert.deepEqual(await counts(), atTermination, 'nothing written after the stop');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    // One check by another instance: abandoned, nothing running; a resume completes the work.
    const checker = startEngine(t.database.url, t.workflows);
    try {
      const recovered = await checker.recoverAbandoned();
      assert.deepEqual(
        recovered.map((r) => [r.id, r.status]),
        [[run.id, 'abandoned']],
      );
      const after = await counts();
      assert.equal(after.interactions.running, undefined);
      const resumed = await checker.startRun({
        workflow: t.workflows[0]!,
        mode: 'single_run',
        resumeRunId: run.id,
        force: false,
        requestedBy: 'chaos',
        source: 'test',
      });
      assert.ok(resumed.started);
      const end = await resumed.run.done;
      assert.equal(end.outcome, 'completed');
      const final = await counts();
      assert.equal(final.domain, ITEMS);
      assert.equal(final.interactions.completed, ITEMS);
    } finally {
      await checker.close();
    }
    await recordFigure('lock-terminated', {
      heartbeatMs: HEARTBEAT_MS,
      noticedMs: Math.round(noticedMs),
      completedAtTermination: atTermination.interactions.completed ?? 0,
      writesAfter: 0,
    });
  });
});
