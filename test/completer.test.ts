// The completer (src/engine/completer.ts) against a real PostgreSQL: a drain
// commits every buffered result, also those that arrive while both of a
// step's flushes are in flight, and releases the claims of finished pages.
// (A drain that returned early let a wave end with results uncommitted and
// their page still claimed: the next wave then overlapped its own claim.)
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { Completer } from '../src/engine/completer.ts';
import type { Item, Page, Result, StepRun } from '../src/engine/work.ts';
import { defineStep } from '../src/workflows/define.ts';
import { migratedDatabase, type TestDb } from './helpers/engine.ts';
import type { TestDatabase } from './helpers/database.ts';

describe('completer', () => {
  let database: TestDatabase;
  let db: TestDb;
  before(async () => ({ database, db } = await migratedDatabase('completer')));
  after(async () => {
    await db.destroy();
    await database.drop();
  });

  test('drain commits what arrived while the flushes were in flight, then releases the finished page', async () => {
    const token = randomUUID();
    await db.insertInto('workflows').values({ id: 1, name: 'completer', definition: '{}' }).execute();
    const run = await db
      .insertInto('workflow_runs')
      .values({
        workflow_id: 1,
        mode: 'global_batch',
        lock_key: 1,
        status: 'running',
        action: 'run',
        requested_by: 'test',
        source: 'test',
        owner_token: token,
        started_at: sql`now()`,
      } as any)
      .returning('id')
      .executeTakeFirstOrThrow();
    const claim = await sql<{ id: number }>`
      INSERT INTO interaction_claims (run_id, workflow_id, step, subjects) VALUES (${run.id}, 1, 'process', int8range(1, 5, '[]')) RETURNING id`.execute(db);

    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const saved: number[] = [];
    const step: StepRun = {
      definition: defineStep<any, object, string>({
        name: 'process',
        pending: (d) => d.selectFrom('workflow_runs').select('id as subject_id'),
        handle: async () => 'x',
        save: async (_tx, items) => {
          await gate;
          saved.push(...items.map((i) => i.subjectId));
        },
      }),
      name: 'process',
      previousStep: null,
      counter: { done: 0, failed: 0, running: 0 },
      failedSubjects: [],
    };
    const page: Page = { claimId: claim.rows[0]!.id, step, items: [], open: 5 };
    const committed: number[] = [];
    // Batches of 4, one flush in flight at a time: the fifth result waits for the first flush.
    const completer = new Completer(
      db,
      { runId: run.id, ownerToken: token },
      1,
      4,
      {
        committed: (_step, results) => committed.push(...results.map((r) => r.item.subjectId)),
        fatal: (error) => assert.fail(error),
      },
      1,
    );
    const result = (subjectId: number): Result => {
      const item: Item = {
        page,
        subjectId,
        input: {},
        inputJson: '{}',
        pendingId: null,
        claimedAtMs: Date.now(),
        attempts: 1,
        state: 'running',
        output: 'x',
        outputJson: '"x"',
      };
      page.items.push(item);
      return { item, status: 'completed', error: null };
    };
    for (let id = 1; id <= 5; id++) await completer.add(result(id));
    const draining = completer.drainAndRelease();
    open();
    await draining;

    assert.deepEqual(
      [...committed].sort((a, b) => a - b),
      [1, 2, 3, 4, 5],
    );
    assert.deepEqual(
      [...saved].sort((a, b) => a - b),
      [1, 2, 3, 4, 5],
    );
    assert.equal(page.open, 0);
    const { rows } = await sql<{ n: number; claims: number }>`
      SELECT (SELECT count(*)::int FROM interactions WHERE run_id = ${run.id} AND status = 'completed') AS n,
             (SELECT count(*)::int FROM interaction_claims WHERE run_id = ${run.id}) AS claims`.execute(db);
    assert.deepEqual(rows[0], { n: 5, claims: 0 });
  });
});
