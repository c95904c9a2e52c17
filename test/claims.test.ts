// The claim protocol (src/db/queries/claim-interactions.ts, migrations/0007)
// against a real PostgreSQL: claims of one step never overlap across runs,
// the page is read with a fresh snapshot, a batch steps around another run's
// claim, a fenced run claims nothing, and unfinished work left by a stop is
// adopted by the next run with its attempts carried on.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { createKysely, createPool } from '../src/db/connect.ts';
import { claimPage, readClaimedPage, type PageRequest } from '../src/db/queries/claim-interactions.ts';
import type { Fence } from '../src/db/queries/runs.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { eventually } from './helpers/cli.ts';
import { testEngine, type TestEngine } from './helpers/engine.ts';

const WORKFLOW_ID = 9100;
const actor = { id: 'tester', source: 'test' };

/** A run row as a live owner has it (running, with an owner token), for statements that need a fence. */
async function liveRun(t: TestEngine, mode: 'global_batch' | 'single_subject' = 'global_batch'): Promise<Fence> {
  const token = randomUUID();
  const row = await t.db
    .insertInto('workflow_runs')
    .values({
      workflow_id: WORKFLOW_ID,
      mode,
      lock_key: Math.floor(Math.random() * 1e9),
      status: 'running',
      action: 'run',
      requested_by: 'test',
      source: 'test',
      owner_token: token,
      started_at: sql`now()`,
      heartbeat_at: sql`now()`,
    } as any)
    .returning('id')
    .executeTakeFirstOrThrow();
  return { runId: row.id, ownerToken: token };
}

function page(t: TestEngine, fence: Fence, overrides: Partial<PageRequest> = {}): PageRequest {
  return {
    fence,
    workflowId: WORKFLOW_ID,
    step: 'process',
    pending: t.workflows[0]!.steps[0]!.pending(t.db),
    after: 0,
    upTo: null,
    limit: 10,
    subjectId: null,
    exclude: [],
    ...overrides,
  };
}

async function claims(t: TestEngine): Promise<{ run_id: number; first: number; last: number }[]> {
  const { rows } = await sql<{ run_id: number; first: number; last: number }>`
    SELECT run_id, lower(subjects) AS first, upper(subjects) - 1 AS last FROM interaction_claims ORDER BY lower(subjects)`.execute(t.db);
  return rows;
}

async function endRun(t: TestEngine, fence: Fence): Promise<void> {
  await t.db
    .updateTable('workflow_runs')
    .set({ status: 'stopped', ended_at: sql`now()` } as any)
    .where('id', '=', fence.runId)
    .execute();
  await sql`DELETE FROM interaction_claims WHERE run_id = ${fence.runId}`.execute(t.db);
}

describe('claims', () => {
  let t: TestEngine;
  let gate: Promise<void> = Promise.resolve();
  before(async () => {
    t = await testEngine(
      'claims',
      [
        itemsWorkflow({
          id: WORKFLOW_ID,
          concurrency: 2,
          batchSize: 10,
          rateLimitSeconds: 0,
          handle: async ({ id }) => {
            await gate;
            return `done ${id}`;
          },
        }),
      ],
      (db) => createItems(db, 30),
    );
  });
  after(() => t.close());

  test('two runs never hold overlapping claims of one step: the second gets a conflict and claims nothing; beside it, and in another step, they may', async () => {
    const a = await liveRun(t);
    const b = await liveRun(t, 'single_subject');
    const first = await claimPage(t.db, page(t, a, { after: 0, limit: 10 }));
    assert.deepEqual({ ...first, claimedAtMs: 0 }, { kind: 'claimed', claimId: (first as any).claimId, first: 1, last: 10, seen: 10, claimedAtMs: 0 });
    const overlapping = await claimPage(t.db, page(t, b, { subjectId: 7, after: Number.MIN_SAFE_INTEGER }));
    assert.deepEqual(overlapping, { kind: 'conflict', first: 7, last: 7 });
    const beside = await claimPage(t.db, page(t, b, { subjectId: 11, after: Number.MIN_SAFE_INTEGER }));
    assert.equal(beside.kind, 'claimed');
    const otherStep = await claimPage(t.db, page(t, b, { step: 'another', subjectId: 7, after: Number.MIN_SAFE_INTEGER }));
    assert.equal(otherStep.kind, 'claimed');
    assert.deepEqual(
      (await claims(t)).map((c) => [c.run_id, c.first, c.last]),
      [
        [a.runId, 1, 10],
        [b.runId, 7, 7],
        [b.runId, 11, 11],
      ],
    );
    await endRun(t, a);
    await endRun(t, b);
  });

  test('a run that is no longer running claims nothing (fenced)', async () => {
    const gone = await liveRun(t);
    await t.db
      .updateTable('workflow_runs')
      .set({ status: 'abandoned' } as any)
      .where('id', '=', gone.runId)
      .execute();
    assert.deepEqual(await claimPage(t.db, page(t, gone)), { kind: 'fenced' });
    const wrongOwner = await liveRun(t);
    assert.deepEqual(await claimPage(t.db, page(t, { runId: wrongOwner.runId, ownerToken: randomUUID() })), { kind: 'fenced' });
    assert.deepEqual(await claims(t), []);
    await endRun(t, wrongOwner);
  });

  test('a subject another run completes while the claim statement runs is not read into the page', async () => {
    // The other run holds subject 5 and is committing its result: its claim
    // deleted and the subject saved, not yet committed.
    const other = await liveRun(t, 'single_subject');
    await sql`INSERT INTO interaction_claims (run_id, workflow_id, step, subjects) VALUES (${other.runId}, ${WORKFLOW_ID}, 'process', int8range(5, 5, '[]'))`.execute(
      t.db,
    );
    const committer = new pg.Client({ connectionString: t.database.url });
    await committer.connect();
    try {
      await committer.query('BEGIN');
      await committer.query('DELETE FROM interaction_claims WHERE run_id = $1', [other.runId]);
      await committer.query(`UPDATE items SET result = 'by the other run' WHERE id = 5`);

      // Our claim statement's snapshot still sees 5 pending; its insert must wait for the other transaction.
      const ours = await liveRun(t);
      const claiming = claimPage(t.db, page(t, ours, { after: 0, limit: 10 }));
      await eventually(async () => {
        const { rows } = await sql<{ n: number }>`
          SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO interaction_claims%'`.execute(t.db);
        return rows[0]!.n === 1 || undefined;
      }, 'the claim statement waiting for the other transaction');
      await committer.query('COMMIT');
      const claimed = await claiming;
      assert.equal(claimed.kind, 'claimed');
      assert.equal((claimed as any).first, 1);
      assert.equal((claimed as any).seen, 10, "the claim's own snapshot still counted subject 5 as pending");
      const subjects = await readClaimedPage(t.db, { ...page(t, ours), first: (claimed as any).first, last: (claimed as any).last });
      const ids = subjects.map((s) => s.subjectId);
      assert.equal(ids.includes(5), false, `subject 5 was read into the page: ${ids.join(', ')}`);
      assert.deepEqual(ids, [1, 2, 3, 4, 6, 7, 8, 9, 10]);
      await endRun(t, ours);
    } finally {
      await committer.end();
      await endRun(t, other);
      await sql`UPDATE items SET result = NULL WHERE id = 5`.execute(t.db);
    }
  });

  test("a batch steps around another run's claim: everything else is processed, that subject is left to its run; the next batch takes it once the claim ends", async () => {
    const holder = await liveRun(t, 'single_subject');
    await sql`INSERT INTO interaction_claims (run_id, workflow_id, step, subjects) VALUES (${holder.runId}, ${WORKFLOW_ID}, 'process', int8range(12, 12, '[]'))`.execute(
      t.db,
    );
    const first = await t.service.handle('run 9100', actor, 'chat');
    assert.equal(first.result.kind, 'run_started', JSON.stringify(first.result));
    const summary = await (first.result as any).run.done;
    assert.equal(summary.run.status, 'completed');
    assert.equal(summary.run.interactions_completed, 29);
    const { rows: left } = await sql<{ id: number }>`SELECT id FROM items WHERE result IS NULL`.execute(t.db);
    assert.deepEqual(
      left.map((r) => r.id),
      [12],
    );
    assert.deepEqual(
      (await claims(t)).map((c) => [c.run_id, c.first, c.last]),
      [[holder.runId, 12, 12]],
      "only the other run's claim is left",
    );

    await endRun(t, holder);
    const second = await t.service.handle('run 9100', actor, 'chat');
    const again = await (second.result as any).run.done;
    assert.equal(again.run.interactions_completed, 1);
    const { rows: once } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM (SELECT subject_id FROM interactions WHERE status = 'completed' GROUP BY subject_id HAVING count(*) > 1) d`.execute(t.db);
    assert.equal(once[0]!.n, 0, 'no subject completed twice');
  });

  test('a stop leaves the unfinished items pending and no claim; the resume adopts them: one row per subject, attempts carried on', async () => {
    await sql`TRUNCATE interactions`.execute(t.db);
    await sql`UPDATE items SET result = NULL`.execute(t.db);
    let open!: () => void;
    gate = new Promise<void>((resolve) => (open = resolve));
    const { result } = await t.service.handle('run 9100', actor, 'chat');
    const run = (result as any).run;
    await eventually(async () => (run.progress().process?.running ?? 0) === 2 || undefined, 'two handlers in flight');
    const stop = await t.service.handle(`stop ${run.id}`, actor, 'chat');
    assert.equal(stop.result.kind, 'stop', JSON.stringify(stop.result));
    const stopped = await run.done;
    assert.equal(stopped.run.status, 'stopped');
    const pending = await t.db
      .selectFrom('interactions')
      .select(['subject_id', 'attempts', 'run_id'])
      .where('status', '=', 'pending')
      .orderBy('subject_id')
      .execute();
    // The two in flight were tried once; the rest of their claimed page never started.
    assert.ok(pending.length >= 2, `pending: ${pending.length}`);
    assert.equal(pending.filter((p) => p.attempts === 1).length, 2);
    assert.ok(pending.every((p) => p.run_id === run.id && (p.attempts === 0 || p.attempts === 1)));
    assert.deepEqual(await claims(t), []);

    open();
    const resume = await t.service.handle(`run 9100 --mode single_run --run ${run.id}`, actor, 'chat');
    assert.equal(resume.result.kind, 'run_started', JSON.stringify(resume.result));
    const resumed = await (resume.result as any).run.done;
    assert.equal(resumed.run.status, 'completed');
    assert.equal(resumed.run.interactions_completed, 30);
    const rows = await t.db.selectFrom('interactions').select(['subject_id', 'status', 'attempts', 'run_id']).orderBy('subject_id').execute();
    assert.equal(rows.length, 30, 'one row per subject: the pending ones were adopted, not duplicated');
    assert.ok(rows.every((r) => r.status === 'completed' && r.run_id === resumed.run.id));
    for (const p of pending) {
      assert.equal(rows.find((r) => r.subject_id === p.subject_id)!.attempts, p.attempts + 1, `subject ${p.subject_id}: attempts carried on`);
    }
    assert.deepEqual(await claims(t), []);
  });

  test('claim and page read are named prepared statements, planned per call (a generic plan could not use a partial index on the pending predicate)', async () => {
    const one = createKysely(createPool({ connectionString: t.database.url, applicationName: 'workflow-test-prepared', max: 1 }));
    try {
      await sql`UPDATE items SET result = NULL WHERE id <= 15`.execute(t.db);
      const fence = await liveRun(t);
      let after = 0;
      // More calls than the five after which the server may switch a prepared statement to its generic plan.
      for (let n = 0; n < 8; n++) {
        const claimed = await claimPage(one, { ...page(t, fence), pending: t.workflows[0]!.steps[0]!.pending(one), after, limit: 1 });
        assert.equal(claimed.kind, 'claimed');
        if (claimed.kind !== 'claimed') return;
        after = claimed.last;
        const subjects = await readClaimedPage(one, {
          ...page(t, fence),
          pending: t.workflows[0]!.steps[0]!.pending(one),
          first: claimed.first,
          last: claimed.last,
        });
        assert.equal(subjects.length, 1);
      }
      await sql`SELECT 1`.execute(one);
      const { rows } = await sql<{ statement: string; generic: number; custom: number }>`
        SELECT statement, generic_plans::int AS generic, custom_plans::int AS custom FROM pg_prepared_statements`.execute(one);
      const kind = (statement: string) =>
        statement.includes('INSERT INTO interaction_claims') ? 'claim' : statement.includes('to_jsonb(p)') ? 'read' : statement;
      // A text is named from its second call on (earlier tests of this process may have called it already).
      assert.deepEqual(
        rows.map((r) => [kind(r.statement), r.generic, r.custom >= 7]).sort(),
        [
          ['claim', 0, true],
          ['read', 0, true],
        ],
        'each hot statement prepared once, run again with a plan of its own each time; other statements are not prepared',
      );
      await endRun(t, fence);
    } finally {
      await one.destroy();
    }
  });
});
