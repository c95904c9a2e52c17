// Retention (src/engine/retention.ts): what runs ended long ago left behind
// goes, in batches, from the monitor's leader or `prune`; pending work, runs
// still going, workflow_runs and audit_log stay.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { createCommands } from '../src/commands/commands.ts';
import type { CommandResult } from '../src/commands/results.ts';
import { HealthMonitor } from '../src/engine/monitor.ts';
import { Retention } from '../src/engine/retention.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { quietLog, testEngine, type TestEngine } from './helpers/engine.ts';

const ITEMS = 25;
let t: TestEngine;
let gate: Promise<void> = Promise.resolve();
let release: () => void = () => {};
const ids = { old: 0, recent: 0, running: 0 };

async function finishedRun(text: string): Promise<number> {
  const { result } = await t.service.handle(text, { id: 'tester', source: 'test' }, 'chat');
  assert.equal(result.kind, 'run_started', JSON.stringify(result));
  const summary = await (result as Extract<CommandResult, { kind: 'run_started' }>).run.done;
  assert.equal(summary.outcome, 'completed');
  return summary.run.id;
}

async function interactionsOf(runId: number): Promise<Record<string, number>> {
  const { rows } = await sql<{ status: string; n: number }>`
    SELECT status, count(*)::int AS n FROM interactions WHERE run_id = ${runId} GROUP BY status`.execute(t.db);
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

before(async () => {
  t = await testEngine(
    'retention',
    [
      itemsWorkflow({ id: 9100, name: 'old', rateLimitSeconds: 0, handle: async ({ id }) => `done ${id}` }),
      itemsWorkflow({
        id: 9101,
        name: 'slow',
        table: 'items_slow',
        rateLimitSeconds: 0,
        handle: async ({ id }) => {
          await gate;
          return `done ${id}`;
        },
      }),
    ],
    async (db) => {
      await createItems(db, ITEMS);
      await createItems(db, ITEMS, 'items_slow');
    },
  );
  ids.old = await finishedRun('run 9100');
  await sql`UPDATE items SET result = NULL`.execute(t.db);
  ids.recent = await finishedRun('run 9100');
  // The old run: ended 40 days ago, with unfinished work left pending, a run message and a click of its time.
  await sql`UPDATE workflow_runs SET ended_at = now() - interval '40 days' WHERE id = ${ids.old}`.execute(t.db);
  await sql`
    INSERT INTO interactions (run_id, workflow_id, step, subject_id, status) VALUES (${ids.old}, 9100, 'process', 999, 'pending')`.execute(t.db);
  await sql`INSERT INTO run_messages (run_id, channel, ts, claimed_by) VALUES (${ids.old}, 'C1', '1.1', 'x'), (${ids.recent}, 'C1', '1.2', 'x')`.execute(t.db);
  await sql`INSERT INTO handled_actions (key, actor, handled_at) VALUES ('old-click', 'U1', now() - interval '40 days'), ('new-click', 'U1', now())`.execute(
    t.db,
  );
  // Force requests: one decided and one left pending past its expiry that long ago, one decided today, one still pending.
  await sql`
    INSERT INTO force_requests (workflow_id, request, requested_by, requester, source, expires_at, status, decided_by, decided_at)
    VALUES (9100, '{}', 'U1', 'U1', 'slack', now() - interval '40 days', 'approved', 'U2', now() - interval '40 days'),
           (9100, '{}', 'U1', 'U1', 'slack', now() - interval '39 days', 'pending', NULL, NULL),
           (9100, '{}', 'U1', 'U1', 'slack', now() + interval '10 minutes', 'rejected', 'U2', now()),
           (9100, '{}', 'U1', 'U1', 'slack', now() + interval '10 minutes', 'pending', NULL, NULL)`.execute(t.db);
  // A run still going, whose finished interactions must stay whatever their age.
  gate = new Promise((resolve) => (release = resolve));
  const { result } = await t.service.handle('run 9101', { id: 'tester', source: 'test' }, 'chat');
  assert.equal(result.kind, 'run_started');
  ids.running = (result as Extract<CommandResult, { kind: 'run_started' }>).run.id;
  await sql`
    INSERT INTO interactions (run_id, workflow_id, step, subject_id, status, claimed_at, finished_at)
    VALUES (${ids.running}, 9101, 'process', 998, 'completed', now() - interval '90 days', now() - interval '90 days')`.execute(t.db);
});

after(async () => {
  release();
  await t?.close();
});

test('a dry run counts what would go and deletes nothing', async () => {
  const retention = new Retention({ db: t.db, log: quietLog, retentionDays: 30, batchSize: 7 });
  const counts = await retention.prune({ olderThanDays: 30, dryRun: true });
  assert.deepEqual(counts, { runs: 1, interactions: ITEMS, handledActions: 1, runMessages: 1, claims: 0, forceRequests: 2 });
  assert.deepEqual(await interactionsOf(ids.old), { completed: ITEMS, pending: 1 });
});

test('`prune` needs the admin role, deletes in batches only what old ended runs left, and is audited with its counts', async () => {
  const retention = new Retention({ db: t.db, log: quietLog, retentionDays: 30, batchSize: 7 });
  const { service } = createCommands(t.engine, { all: () => t.workflows, find: () => undefined }, undefined, retention);
  const operator = { id: 'U0OP', source: 'slack', roles: new Set(['viewer', 'operator'] as const) };
  const refused = await service.handle('prune --older-than 30d', operator, 'chat');
  assert.equal(refused.result.kind, 'refused');
  assert.deepEqual(await interactionsOf(ids.old), { completed: ITEMS, pending: 1 });

  const admin = { id: 'U0ADMIN', source: 'slack', roles: new Set(['viewer', 'operator', 'admin'] as const) };
  const { result } = await service.handle('prune --older-than 30d', admin, 'chat');
  assert.equal(result.kind, 'done', JSON.stringify(result));
  assert.deepEqual(await interactionsOf(ids.old), { pending: 1 }, 'pending work is kept');
  assert.deepEqual(await interactionsOf(ids.recent), { completed: ITEMS });
  assert.deepEqual(await interactionsOf(ids.running), { completed: 1 }, 'a running run is never touched');
  const { rows: clicks } = await sql<{ key: string }>`SELECT key FROM handled_actions ORDER BY key`.execute(t.db);
  assert.deepEqual(
    clicks.map((r) => r.key),
    ['new-click'],
  );
  const { rows: messages } = await sql<{ run_id: number }>`SELECT run_id FROM run_messages`.execute(t.db);
  assert.deepEqual(
    messages.map((r) => r.run_id),
    [ids.recent],
  );
  const { rows: requests } = await sql<{ status: string }>`SELECT status FROM force_requests ORDER BY id`.execute(t.db);
  assert.deepEqual(
    requests.map((r) => r.status),
    ['rejected', 'pending'],
    'force requests decided or expired 30 days ago are gone, recent and pending ones kept',
  );
  const { rows: runs } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM workflow_runs`.execute(t.db);
  assert.equal(runs[0]!.n, 3, 'runs are kept');
  const { rows: audit } = await sql<{ actor: string; outcome: string; details: Record<string, unknown> }>`
    SELECT actor, outcome, details FROM audit_log WHERE action = 'prune' ORDER BY id`.execute(t.db);
  assert.deepEqual(
    audit.map((a) => [a.actor, a.outcome]),
    [
      ['U0OP', 'refused'],
      ['U0ADMIN', 'accepted'],
    ],
  );
  assert.deepEqual(audit[1]!.details, {
    older_than_days: 30,
    dry_run: false,
    runs: 1,
    interactions: ITEMS,
    handled_actions: 1,
    run_messages: 1,
    claims: 0,
    force_requests: 2,
  });
});

test("the health monitor's leader prunes at its tick, and audits what it deleted", async () => {
  await sql`UPDATE workflow_runs SET ended_at = now() - interval '40 days' WHERE id = ${ids.recent}`.execute(t.db);
  const retention = new Retention({ db: t.db, log: quietLog, retentionDays: 30, batchSize: 7 });
  const monitor = new HealthMonitor({
    db: t.db,
    lockConnectionString: t.database.url,
    instanceId: 'retention-test',
    workflows: t.workflows,
    log: quietLog,
    intervalMs: 60_000,
    heartbeatMs: 60_000,
    retention,
  });
  try {
    await monitor.runOnce();
    assert.equal(monitor.isActive, true);
    await retention.idle();
  } finally {
    await monitor.close();
  }
  assert.deepEqual(await interactionsOf(ids.recent), {});
  assert.deepEqual(await interactionsOf(ids.running), { completed: 1 });
  const { rows } = await sql<{ actor: string; details: { interactions: number } }>`
    SELECT actor, details FROM audit_log WHERE action = 'prune' AND outcome = 'event'`.execute(t.db);
  assert.deepEqual(
    rows.map((r) => [r.actor, r.details.interactions]),
    [['retention', ITEMS]],
  );
});
