// runConcurrency counts the owner's own slots as the run row has them
// (migrations/0034_run_owner_slots.ts), whatever the joining instance is
// configured with: instances of one workflow may run different concurrency
// (one beside a bigger model server, say), and a joiner that put its own
// number in the owner's place let the run exceed its cap.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { joinRun } from '../src/db/queries/participants.ts';
import { insertRunningRun } from '../src/db/queries/runs.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { testEngine, type TestEngine } from './helpers/engine.ts';

const WORKFLOW_ID = 9100;

describe('runConcurrency and the owner slots on the run row', () => {
  let t: TestEngine;
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));

  before(async () => {
    t = await testEngine(
      'run_concurrency',
      [
        itemsWorkflow({
          id: WORKFLOW_ID,
          concurrency: 3,
          rateLimitSeconds: 0,
          handle: async () => {
            await held;
            return 'ok';
          },
        }),
      ],
      (db) => createItems(db, 6),
    );
  });
  after(async () => {
    release();
    await t?.close();
  });

  async function ownedRun(slots: number | null): Promise<number> {
    const row = await insertRunningRun(
      t.db,
      {
        workflowId: WORKFLOW_ID,
        mode: 'global_batch',
        subjectId: null,
        resumesRunId: null,
        lockKey: Math.floor(Math.random() * 1e9),
        action: 'run',
        requestedBy: 'test',
        source: 'test',
        forcedBy: null,
        forcedRunId: null,
        notifyChannel: null,
      },
      { token: randomUUID(), instance: 'owner-instance', slots: slots ?? 1 },
    );
    if (slots === null) await sql`UPDATE workflow_runs SET owner_slots = NULL WHERE id = ${row.id}`.execute(t.db);
    return row.id;
  }

  const join = (runId: number, slots: number) =>
    joinRun(t.db, { runId, token: randomUUID(), instance: `joiner-${randomUUID()}`, slots, ownerSlots: slots, cap: 8 });

  test("an owner of 4 slots, cap 8: two joiners of 2 fit, a third is refused (counting the joiner's 2 as the owner's let it in)", async () => {
    const runId = await ownedRun(4);
    assert.equal(await join(runId, 2), 1);
    assert.equal(await join(runId, 2), 2);
    assert.equal(await join(runId, 2), null, '4 + 2 + 2 + 2 = 10 slots would exceed runConcurrency 8');
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM run_participants WHERE run_id = ${runId}`.execute(t.db);
    assert.equal(rows[0]!.n, 2, 'the refused joiner left no row');
  });

  test('an owner of 8 slots, cap 8: no joiner of any size fits', async () => {
    const runId = await ownedRun(8);
    assert.equal(await join(runId, 1), null);
  });

  test("a run row without owner slots (started before the migration): the joiner's own number stands in, as before", async () => {
    const runId = await ownedRun(null);
    assert.equal(await join(runId, 2), 1);
    assert.equal(await join(runId, 2), 2);
    assert.equal(await join(runId, 2), 3, '2 + 2 + 2 + 2 = 8 fits when the owner is taken to have 2');
    assert.equal(await join(runId, 2), null);
  });

  test('the engine writes its concurrency on the run it starts', async () => {
    const outcome = await t.engine.startRun({ workflow: t.workflows[0]!, mode: 'global_batch', force: false, requestedBy: 'tester', source: 'test' });
    if (!outcome.started) throw new Error(`refused: ${outcome.refusal.message}`);
    const row = await t.db.selectFrom('workflow_runs').select(['owner_slots', 'status']).where('id', '=', outcome.run.id).executeTakeFirstOrThrow();
    assert.deepEqual(row, { owner_slots: 3, status: 'running' });
    release();
    assert.equal((await outcome.run.done).outcome, 'completed');
  });
});
