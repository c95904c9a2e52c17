import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { z } from 'zod';
import { loadConfig } from '../src/config.ts';
import { renderSummary } from '../src/cli/render.ts';
import { exitCode, type CommandResult } from '../src/commands/results.ts';
import postingsWorkflow from '../src/workflows/postings/index.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { quietLog, testEngine, type TestEngine } from './helpers/engine.ts';

const actor = { id: 'tester', source: 'test' };
const postings = () => postingsWorkflow({ config: loadConfig({}), log: quietLog });

async function directCounts(t: TestEngine) {
  const { rows } = await sql<Record<string, number>>`
    SELECT count(*)::int AS postings_total, count(summary)::int AS postings_with_summary,
           count(skills)::int AS postings_with_skills, count(ihl_score)::int AS postings_with_ihl
      FROM postings`.execute(t.db);
  return rows[0]!;
}

async function runToEnd(t: TestEngine, text: string) {
  const { result } = await t.service.handle(text, actor, 'chat');
  assert.equal(result.kind, 'run_started', JSON.stringify(result));
  const summary = await (result as Extract<CommandResult, { kind: 'run_started' }>).run.done;
  return summary;
}

describe('workflow 3001 global_batch', () => {
  let t: TestEngine;
  before(async () => {
    t = await testEngine('engine_batch', [postings()], async (db) => void (await replaceDemoPostings(db, 300)));
  });
  after(() => t.close());

  test('takes every posting through all three steps in one run, with a delta that matches a direct count', async () => {
    const before = await directCounts(t);
    assert.deepEqual(before, { postings_total: 300, postings_with_summary: 0, postings_with_skills: 0, postings_with_ihl: 0 });
    const summary = await runToEnd(t, '/workflow run 3001');
    assert.equal(summary.outcome, 'completed');
    assert.equal(summary.run.status, 'completed');
    const afterCounts = await directCounts(t);
    assert.deepEqual(afterCounts, { postings_total: 300, postings_with_summary: 300, postings_with_skills: 300, postings_with_ihl: 300 });
    assert.deepEqual(summary.stateAfter, afterCounts);
    assert.deepEqual(summary.delta, { postings_total: 0, postings_with_summary: 300, postings_with_skills: 300, postings_with_ihl: 300 });
    assert.equal(summary.run.interactions_completed, 900);
    // The forecast: every posting pending for summary is expected at skills and ihl too; the audit keeps what was pending.
    assert.deepEqual(summary.run.expected_work, { summary: 300, skills: 300, ihl: 300 });
    assert.deepEqual(summary.run.pending_work, { summary: 300, skills: 0, ihl: 0 });
    assert.deepEqual(summary.run.metric_names, ['postings_total', 'postings_with_summary', 'postings_with_skills', 'postings_with_ihl']);
    // One completed interaction per (step, posting), each downstream one linked to its parent.
    const { rows } = await sql<{ step: string; n: number; with_parent: number }>`
      SELECT step, count(DISTINCT subject_id)::int AS n, count(parent_id)::int AS with_parent
        FROM interactions WHERE run_id = ${summary.run.id} AND status = 'completed' GROUP BY step ORDER BY step`.execute(t.db);
    assert.deepEqual(rows, [
      { step: 'ihl', n: 300, with_parent: 300 },
      { step: 'skills', n: 300, with_parent: 300 },
      { step: 'summary', n: 300, with_parent: 0 },
    ]);
  });

  test('a second batch inside the interval is refused with the next allowed time; force passes and finds no work', async () => {
    const { result } = await t.service.handle('run 3001', actor, 'chat');
    assert.equal(result.kind, 'refused');
    assert.ok(result.kind === 'refused' && result.reason === 'rate_limited');
    assert.ok(result.nextAllowedAt && new Date(result.nextAllowedAt).getTime() > Date.now());
    assert.match(result.message, /next start is allowed at/);

    const forced = await runToEnd(t, 'force 3001');
    assert.equal(forced.run.status, 'completed');
    assert.equal(forced.run.ended_reason, 'no_work');
    assert.equal(forced.run.interactions_completed, 0);
    assert.match(renderSummary(((await t.service.execute({ verb: 'status', runId: forced.run.id }, actor)) as any).run), /no pending work/);

    const audit = await t.db.selectFrom('audit_log').select(['action', 'outcome', 'reason']).where('actor', '=', 'tester').orderBy('id').execute();
    assert.deepEqual(
      audit.filter((a) => a.outcome !== 'event').map((a) => `${a.action}:${a.outcome}`),
      ['run:accepted', 'run:refused', 'force:accepted'],
    );
  });

  test('the audit view returns the seed JSON per run', async () => {
    const row = await t.db.selectFrom('workflow_run_audit').selectAll().orderBy('id').executeTakeFirstOrThrow();
    assert.equal((row.input as any).workflow_id, 3001);
    assert.equal((row.input as any).mode, 'global_batch');
    assert.equal((row.input as any).requested_by, 'tester');
    assert.equal((row.input as any).action, 'run');
    assert.equal((row.input as any).state_before.postings_with_summary, 0);
    assert.deepEqual((row.input as any).expected_work, { summary: 300, skills: 300, ihl: 300 });
    assert.deepEqual((row.input as any).pending_at_start, { summary: 300, skills: 0, ihl: 0 });
    assert.equal((row.output as any).status, 'completed');
    assert.equal((row.output as any).interactions_completed, 900);
    assert.equal((row.output as any).delta.postings_with_ihl, 300);
    assert.equal((row.output as any).state_after.postings_with_ihl, 300);
    assert.equal(typeof (row.output as any).duration_seconds, 'number');
  });

  test('stopping a run that has ended is refused (exit 3) and audited', async () => {
    const first = await t.db.selectFrom('workflow_runs').select('id').orderBy('id').executeTakeFirstOrThrow();
    const { result } = await t.service.handle(`stop ${first.id}`, actor, 'chat');
    assert.equal(result.kind, 'stop');
    assert.ok(result.kind === 'stop' && result.outcome === 'not_running');
    assert.match(result.message, /is not running \(it is completed\)/);
    assert.equal(exitCode(result), 3);
    const entry = await t.db.selectFrom('audit_log').selectAll().orderBy('id', 'desc').executeTakeFirstOrThrow();
    assert.deepEqual([entry.action, entry.outcome, entry.run_id], ['stop', 'refused', first.id]);
  });

  test('the audit log is append-only', async () => {
    await assert.rejects(sql`UPDATE audit_log SET actor = 'someone else'`.execute(t.db), /append-only/);
    await assert.rejects(sql`DELETE FROM audit_log`.execute(t.db), /append-only/);
    await assert.rejects(sql`TRUNCATE audit_log`.execute(t.db), /append-only/);
  });
});

describe('single_subject', () => {
  let t: TestEngine;
  before(async () => {
    t = await testEngine('engine_subject', [postings()], async (db) => void (await replaceDemoPostings(db, 50)));
  });
  after(() => t.close());

  test('carries one posting through every step and touches no other', async () => {
    const summary = await runToEnd(t, 'run 3001 --mode single_posting --posting-id 7');
    assert.equal(summary.run.status, 'completed');
    assert.equal(summary.run.subject_id, 7);
    assert.equal(summary.run.interactions_completed, 3);
    const { rows } = await sql<{ id: number }>`SELECT id FROM postings WHERE ihl_score IS NOT NULL`.execute(t.db);
    assert.deepEqual(
      rows.map((r) => r.id),
      [7],
    );
  });

  test('beside a batch, no (step, subject) is processed twice', async () => {
    const runs = await Promise.all([
      t.service.handle('run 3001', actor, 'chat'),
      ...[1, 2, 3, 20, 30].map((id) => t.service.handle(`run 3001 --subject ${id}`, actor, 'chat')),
    ]);
    for (const { result } of runs) {
      assert.equal(result.kind, 'run_started', JSON.stringify(result));
      await (result as any).run.done;
    }
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM (
        SELECT step, subject_id FROM interactions WHERE status = 'completed' GROUP BY step, subject_id HAVING count(*) > 1) d`.execute(t.db);
    assert.equal(rows[0]!.n, 0);
    const counts = await directCounts(t);
    assert.equal(counts.postings_with_ihl, 50);
  });
});

describe('failing handlers', () => {
  let t: TestEngine;
  let calls: Map<number, number>;
  before(async () => {
    calls = new Map();
    const workflow = itemsWorkflow({
      retries: 2,
      timeoutMs: 200,
      output: z.string().min(1),
      handle: async ({ id }, { signal }) => {
        calls.set(id, (calls.get(id) ?? 0) + 1);
        if (id === 2) throw new Error('model exploded');
        if (id === 3) return new Promise<string>(() => {}); // hangs, ignoring its signal
        if (id === 4) return ''; // output the step rejects
        if (signal.aborted) throw new Error('aborted');
        return `ok ${id}`;
      },
    });
    t = await testEngine('engine_fail', [workflow], (db) => createItems(db, 10));
  });
  after(() => t.close());

  test('fail with their error after the configured retries; the run completes with the failed count', async () => {
    const summary = await runToEnd(t, 'run 9100');
    assert.equal(summary.run.status, 'completed');
    assert.equal(summary.run.interactions_completed, 7);
    assert.equal(summary.run.interactions_failed, 3);
    for (const id of [2, 3, 4]) assert.equal(calls.get(id), 3, `item ${id} tried 1 + 2 retries`);
    const failed = await t.db
      .selectFrom('interactions')
      .select(['subject_id', 'error', 'attempts'])
      .where('status', '=', 'failed')
      .orderBy('subject_id')
      .execute();
    assert.deepEqual(
      failed.map((f) => f.attempts),
      [3, 3, 3],
    );
    assert.match(failed[0]!.error!, /model exploded/);
    assert.match(failed[1]!.error!, /timed out after 200 ms/);
    assert.match(failed[2]!.error!, /output rejected by step process/);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM items WHERE result IS NOT NULL`.execute(t.db);
    assert.equal(rows[0]!.n, 7);
    const view = await t.service.execute({ verb: 'status', runId: summary.run.id }, actor);
    assert.match(renderSummary((view as any).run), /7 done, 3 failed/);
  });
});

describe('bad input through the service', () => {
  let t: TestEngine;
  before(async () => {
    t = await testEngine('engine_bad', [postings()], async (db) => void (await replaceDemoPostings(db, 5)));
  });
  after(() => t.close());

  for (const [text, kind, pattern] of [
    ['run 4242', 'invalid', /unknown workflow "4242"/],
    ['run nosuch', 'invalid', /unknown workflow "nosuch"/],
    ['status 999', 'not_found', /run 999 does not exist/],
    ['stop 999', 'not_found', /run 999 does not exist/],
    ['run 3001 --mode single_run --run 999', 'not_found', /run 999 does not exist/],
    ['launch 3001', 'invalid', /unknown/],
    ['run', 'invalid', /workflow/],
    ['run 3001 --subject abc', 'invalid', /--subject/],
    ["run 3001'; DROP TABLE workflow_runs; --", 'invalid', /./],
    ['x'.repeat(10_000), 'invalid', /too long/],
  ] as const) {
    test(`${text.slice(0, 40)} → ${kind}, nothing written but the audit entry`, async () => {
      const count = async () => {
        const { rows } = await sql<{ runs: number; interactions: number; audit: number }>`
          SELECT (SELECT count(*) FROM workflow_runs)::int AS runs, (SELECT count(*) FROM interactions)::int AS interactions,
                 (SELECT count(*) FROM audit_log)::int AS audit`.execute(t.db);
        return rows[0]!;
      };
      const before = await count();
      const { result } = await t.service.handle(text, actor, 'chat');
      assert.equal(result.kind, kind);
      assert.match((result as { message: string }).message, pattern);
      assert.ok(!(result as { message: string }).message.includes('\n'), 'one-line reason');
      const afterCounts = await count();
      assert.deepEqual({ ...afterCounts, audit: afterCounts.audit - 1 }, before);
    });
  }
});

describe('force --run (a forced resume)', () => {
  let t: TestEngine;
  before(async () => {
    t = await testEngine('engine_force_resume', [itemsWorkflow({ handle: async ({ id }) => `ok ${id}` })], (db) => createItems(db, 5));
  });
  after(() => t.close());

  test('is stored on the run with the action it is audited as', async () => {
    const first = await runToEnd(t, 'run 9100');
    // Only an ended run that did not complete can be resumed.
    await sql`UPDATE workflow_runs SET status = 'stopped' WHERE id = ${first.run.id}`.execute(t.db);
    const resumed = await runToEnd(t, `force --run ${first.run.id}`);
    assert.equal(resumed.run.resumes_run_id, first.run.id);
    const audited = await t.db
      .selectFrom('audit_log')
      .select('action')
      .where('run_id', '=', resumed.run.id)
      .where('outcome', '=', 'accepted')
      .executeTakeFirstOrThrow();
    assert.equal(audited.action, 'force');
    assert.equal(resumed.run.action, audited.action);
  });
});
