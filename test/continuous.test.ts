// Continuous workflows (src/engine/continuous.ts): runs started by new work,
// debounced, rate-limited and audited; pause/resume; missed notifications
// caught by the reconnect and periodic checks; one reacting instance.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { sql } from 'kysely';
import pg from 'pg';
import { ConfigError, loadConfig } from '../src/config.ts';
import type { CommandResult } from '../src/commands/results.ts';
import { ContinuousStarter, type AttemptOutcome } from '../src/engine/continuous.ts';
import type { Engine } from '../src/engine/engine.ts';
import postingsWorkflow from '../src/workflows/postings/index.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { quietLog, startEngine, testEngine, type TestEngine } from './helpers/engine.ts';

const operator = { id: 'U_OPERATOR', source: 'test' };

const BURSTS = { id: 9301, name: 'bursts', table: 'burst_items' };
const PAUSABLE = { id: 9302, name: 'pausable', table: 'pause_items' };
const PLAIN = { id: 9303, name: 'plain', table: 'plain_items' };
const DROPPED = { id: 9304, name: 'dropped', table: 'dropped_items' };
const BYPASS = { id: 9305, name: 'bypass', table: 'bypass_items' };

function continuousItems(w: { id: number; name: string; table: string }, continuous: { debounceMs: number; checkIntervalMs: number } | undefined) {
  return {
    ...itemsWorkflow({ id: w.id, name: w.name, table: w.table, rateLimitSeconds: 1, concurrency: 8, batchSize: 100, handle: async ({ id }) => `r${id}` }),
    ...(continuous ? { continuous: { table: w.table, ...continuous } } : {}),
  };
}

/** Polls `check` until it returns a value other than undefined/false, or fails at the deadline. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(25);
  }
}

/** The next 'attempt' of the starter matching `match`; subscribe before acting. */
function nextAttempt(starter: ContinuousStarter, match: (a: AttemptOutcome) => boolean, timeoutMs = 10_000): Promise<AttemptOutcome> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      starter.off('attempt', listener);
      reject(new Error(`no matching continuous attempt within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (attempt: AttemptOutcome) => {
      if (!match(attempt)) return;
      clearTimeout(timer);
      starter.off('attempt', listener);
      resolve(attempt);
    };
    starter.on('attempt', listener);
  });
}

function nextEvent(emitter: ContinuousStarter, event: string, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
    emitter.once(event, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function counts(t: TestEngine, table: string, workflowId: number) {
  const { rows } = await sql<{ total: number; done: number; completed: number; subjects: number; other: number; running: number }>`
    SELECT (SELECT count(*)::int FROM ${sql.table(table)}) AS total,
           (SELECT count(result)::int FROM ${sql.table(table)}) AS done,
           (SELECT count(*)::int FROM interactions WHERE workflow_id = ${workflowId} AND status = 'completed') AS completed,
           (SELECT count(DISTINCT subject_id)::int FROM interactions WHERE workflow_id = ${workflowId} AND status = 'completed') AS subjects,
           (SELECT count(*)::int FROM interactions WHERE workflow_id = ${workflowId} AND status <> 'completed') AS other,
           (SELECT count(*)::int FROM workflow_runs WHERE workflow_id = ${workflowId} AND status = 'running') AS running`.execute(t.db);
  return rows[0]!;
}

/** Every subject of the table processed, and no run still going. */
function allProcessed(t: TestEngine, table: string, workflowId: number, total: number) {
  return waitFor(`${total} ${table} processed`, async () => {
    const c = await counts(t, table, workflowId);
    return c.total === total && c.done === total && c.running === 0 ? c : undefined;
  });
}

async function runsOf(t: TestEngine, workflowId: number) {
  return t.db.selectFrom('workflow_runs').selectAll().where('workflow_id', '=', workflowId).orderBy('id').execute();
}

async function auditOf(t: TestEngine, workflowId: number, filter: { source?: string; action?: string } = {}) {
  let q = t.db.selectFrom('audit_log').selectAll().where('workflow_id', '=', workflowId);
  if (filter.source) q = q.where('source', '=', filter.source);
  if (filter.action) q = q.where('action', '=', filter.action);
  return q.orderBy('id').execute();
}

describe('continuous workflows', () => {
  let t: TestEngine;
  let starter: ContinuousStarter;
  const extras: { engine?: Engine; starter?: ContinuousStarter } = {};

  before(async () => {
    t = await testEngine(
      'continuous',
      [
        continuousItems(BURSTS, { debounceMs: 100, checkIntervalMs: 60_000 }),
        continuousItems(PAUSABLE, { debounceMs: 50, checkIntervalMs: 60_000 }),
        continuousItems(PLAIN, undefined),
        continuousItems(DROPPED, { debounceMs: 50, checkIntervalMs: 60_000 }),
        continuousItems(BYPASS, { debounceMs: 50, checkIntervalMs: 300 }),
      ],
      async (db) => {
        for (const w of [BURSTS, PAUSABLE, PLAIN, DROPPED, BYPASS]) await createItems(db, 0, w.table);
      },
    );
    starter = new ContinuousStarter({ engine: t.engine, connectionString: t.database.url, workflows: t.workflows, log: quietLog });
    const leading = nextEvent(starter, 'leader');
    await starter.start();
    await leading;
  });

  after(async () => {
    await starter?.close();
    await extras.starter?.close();
    await extras.engine?.close();
    await t?.close();
  });

  test('creates one statement-level work trigger per continuous workflow, idempotently', async () => {
    assert.deepEqual(starter.workflowIds.sort(), [BURSTS.id, PAUSABLE.id, DROPPED.id, BYPASS.id]);
    const { rows } = await sql<{ tgname: string; table: string; row_level: boolean }>`
      SELECT tgname, tgrelid::regclass::text AS table, (tgtype & 1) = 1 AS row_level
        FROM pg_trigger WHERE tgname LIKE 'workflow_work_%' ORDER BY tgname`.execute(t.db);
    assert.deepEqual(rows, [
      { tgname: 'workflow_work_9301', table: 'burst_items', row_level: false },
      { tgname: 'workflow_work_9302', table: 'pause_items', row_level: false },
      { tgname: 'workflow_work_9304', table: 'dropped_items', row_level: false },
      { tgname: 'workflow_work_9305', table: 'bypass_items', row_level: false },
    ]);
  });

  test('1,000 subjects in 10 bursts: a few debounced runs, every start audited, every subject processed once', async (ctx) => {
    const startedAt = Date.now();
    for (let burst = 0; burst < 10; burst++) {
      await sql`INSERT INTO burst_items (id) SELECT g FROM generate_series(${burst * 100 + 1}::int, ${burst * 100 + 100}::int) g`.execute(t.db);
      await delay(100); // pacing the load (a burst every 100 ms, longer than the debounce), not synchronisation
    }
    const insertedAt = Date.now();
    const c = await allProcessed(t, BURSTS.table, BURSTS.id, 1_000);
    const processedAt = Date.now();
    assert.deepEqual({ completed: c.completed, subjects: c.subjects, other: c.other }, { completed: 1_000, subjects: 1_000, other: 0 });

    const runs = await runsOf(t, BURSTS.id);
    assert.ok(runs.length >= 1 && runs.length <= 4, `expected 1 to 4 runs, got ${runs.length}`);
    for (const run of runs) {
      assert.equal(run.requested_by, 'continuous');
      assert.equal(run.source, 'continuous');
      assert.equal(run.mode, 'global_batch');
      assert.equal(run.status, 'completed');
    }
    // At least the rate limit between two starts.
    for (let i = 1; i < runs.length; i++) {
      assert.ok(new Date(runs[i]!.started_at!).getTime() - new Date(runs[i - 1]!.started_at!).getTime() >= 1_000);
    }
    const audit = await auditOf(t, BURSTS.id, { source: 'continuous', action: 'run' });
    const accepted = audit.filter((a) => a.outcome === 'accepted');
    const refused = audit.filter((a) => a.outcome === 'refused');
    assert.deepEqual(
      accepted.map((a) => a.run_id),
      runs.map((r) => r.id),
      'one accepted entry per run',
    );
    for (const a of accepted) assert.equal(a.actor, 'continuous');
    for (const r of refused) {
      assert.equal((r.details as { refusal?: string }).refusal, 'rate_limited', JSON.stringify(r));
      assert.match(r.reason ?? '', /next start is allowed at/);
    }
    assert.equal(audit.length, accepted.length + refused.length);
    ctx.diagnostic(
      `bursts: ${runs.length} run(s) [${runs.map((r) => `#${r.id} ${r.interactions_completed} items`).join(', ')}], ` +
        `${refused.length} rate-limit refusal(s) audited; inserts took ${insertedAt - startedAt} ms, ` +
        `all 1,000 processed ${processedAt - startedAt} ms after the first insert (${processedAt - insertedAt} ms after the last)`,
    );
  });

  test('pause: new work starts nothing (one NOTIFY for a 1,000-row insert); resume starts it; both audited', async () => {
    const paused = await t.service.execute({ verb: 'pause', workflow: PAUSABLE.name }, operator);
    assert.equal(paused.kind, 'done', JSON.stringify(paused));
    assert.match((paused as { message: string }).message, /paused/);

    const listed = (await t.service.execute({ verb: 'workflows' }, operator)) as Extract<CommandResult, { kind: 'workflows' }>;
    const view = listed.workflows.find((w) => w.id === PAUSABLE.id)!;
    assert.equal(view.continuous, true);
    assert.equal(view.paused?.by, operator.id);
    assert.equal(listed.workflows.find((w) => w.id === BURSTS.id)!.paused, null);
    assert.equal(listed.workflows.find((w) => w.id === PLAIN.id)!.continuous, false);

    // Count what the trigger sends, on a connection of our own.
    const listener = new pg.Client({ connectionString: t.database.url });
    await listener.connect();
    const payloads: string[] = [];
    let marker!: () => void;
    const markerSeen = new Promise<void>((resolve) => (marker = resolve));
    listener.on('notification', (m) => (m.payload === 'marker' ? marker() : payloads.push(m.payload ?? '')));
    await listener.query('LISTEN workflow_work');
    try {
      const sawPaused = nextAttempt(starter, (a) => a.workflowId === PAUSABLE.id && a.outcome === 'paused');
      await sql`INSERT INTO pause_items (id) SELECT g FROM generate_series(1, 1000) g`.execute(t.db);
      await sql`SELECT pg_notify('workflow_work', 'marker')`.execute(t.db);
      await markerSeen;
      assert.deepEqual(payloads, [String(PAUSABLE.id)], 'a 1,000-row insert sends one notification');
      await sawPaused;
    } finally {
      await listener.end();
    }
    assert.equal((await runsOf(t, PAUSABLE.id)).length, 0, 'a paused workflow starts no run');

    const resumed = await t.service.execute({ verb: 'resume', workflow: String(PAUSABLE.id) }, operator);
    assert.equal(resumed.kind, 'done', JSON.stringify(resumed));
    assert.match((resumed as { message: string }).message, /resumed/);
    await allProcessed(t, PAUSABLE.table, PAUSABLE.id, 1_000);
    const runs = await runsOf(t, PAUSABLE.id);
    assert.ok(runs.length >= 1 && runs.every((r) => r.source === 'continuous'));

    const entries = await auditOf(t, PAUSABLE.id, { source: operator.source });
    assert.deepEqual(
      entries.map((a) => [a.action, a.outcome, a.actor]),
      [
        ['pause', 'accepted', operator.id],
        ['resume', 'accepted', operator.id],
      ],
    );
    const starts = await auditOf(t, PAUSABLE.id, { source: 'continuous', action: 'run' });
    assert.equal(starts.filter((a) => a.outcome === 'accepted').length, runs.length);
  });

  test('pause and resume of a workflow that is not continuous are refused, audited; viewers may not pause', async () => {
    for (const verb of ['pause', 'resume'] as const) {
      const result = await t.service.execute({ verb, workflow: PLAIN.name }, operator);
      assert.equal(result.kind, 'refused', JSON.stringify(result));
      assert.equal((result as { reason: string }).reason, 'not_continuous');
      assert.match((result as { message: string }).message, /is neither continuous nor scheduled/);
    }
    const entries = await auditOf(t, PLAIN.id, { source: operator.source });
    assert.deepEqual(
      entries.map((a) => [a.action, a.outcome]),
      [
        ['pause', 'refused'],
        ['resume', 'refused'],
      ],
    );
    assert.ok(entries.every((a) => /is neither continuous nor scheduled/.test(a.reason ?? '')));

    const viewer = { ...operator, id: 'U_VIEWER', roles: new Set(['viewer'] as const) };
    const forbidden = await t.service.execute({ verb: 'pause', workflow: BURSTS.name }, viewer);
    assert.equal(forbidden.kind, 'refused');
    assert.equal((forbidden as { reason: string }).reason, 'permission');
    assert.equal(await isPausedNow(t, BURSTS.id), false);
  });

  test('a notification missed while the listener was disconnected is caught when it reconnects', async () => {
    const disconnected = nextEvent(starter, 'disconnected');
    const { rows } = await sql<{ n: number }>`
      SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = ${starter.applicationName}`.execute(t.db);
    assert.equal(rows[0]!.n, 1);
    await disconnected;
    assert.equal(starter.isLeader, false);
    await sql`INSERT INTO dropped_items (id) SELECT g FROM generate_series(1, 200) g`.execute(t.db);
    await allProcessed(t, DROPPED.table, DROPPED.id, 200);
    assert.equal(starter.isLeader, true);
    const starts = (await auditOf(t, DROPPED.id, { source: 'continuous', action: 'run' })).filter((a) => a.outcome === 'accepted');
    assert.equal(starts.length, 1);
    assert.ok(['reconnect', 'check'].includes((starts[0]!.details as { trigger: string }).trigger), JSON.stringify(starts[0]));
  });

  test('work that sent no notification at all is caught by the periodic pending-work check', async () => {
    // session_replication_role = replica skips triggers: the insert announces nothing.
    await t.db.transaction().execute(async (tx) => {
      await sql`SET LOCAL session_replication_role = replica`.execute(tx);
      await sql`INSERT INTO bypass_items (id) SELECT g FROM generate_series(1, 100) g`.execute(tx);
    });
    await allProcessed(t, BYPASS.table, BYPASS.id, 100);
    const starts = (await auditOf(t, BYPASS.id, { source: 'continuous', action: 'run' })).filter((a) => a.outcome === 'accepted');
    assert.equal(starts.length, 1);
    assert.equal((starts[0]!.details as { trigger: string }).trigger, 'check');
  });

  test('several instances: one leader reacts; when it goes, another takes over', async () => {
    extras.engine = startEngine(t.database.url, t.workflows);
    extras.starter = new ContinuousStarter({ engine: extras.engine, connectionString: t.database.url, workflows: t.workflows, log: quietLog });
    const second = extras.starter;
    await second.start();
    assert.equal(starter.isLeader, true);
    assert.equal(second.isLeader, false);
    // Its start re-created the triggers: still one each.
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_trigger WHERE tgname LIKE 'workflow_work_%'`.execute(t.db);
    assert.equal(rows[0]!.n, 4);

    const takesOver = nextEvent(second, 'leader');
    await starter.close();
    await takesOver;
    await sql`INSERT INTO burst_items (id) SELECT g FROM generate_series(1001, 1100) g`.execute(t.db);
    await allProcessed(t, BURSTS.table, BURSTS.id, 1_100);
    const last = (await runsOf(t, BURSTS.id)).at(-1)!;
    assert.equal(last.owner_instance, extras.engine.instanceId);
    assert.equal(last.interactions_completed, 100);
  });
});

async function isPausedNow(t: TestEngine, workflowId: number): Promise<boolean> {
  const row = await t.db.selectFrom('workflows').select('paused').where('id', '=', workflowId).executeTakeFirstOrThrow();
  return row.paused;
}

describe('WORKFLOW_CONTINUOUS', () => {
  test('lists workflow ids; the example 3001 is continuous on postings only when listed', () => {
    assert.deepEqual(loadConfig({}).WORKFLOW_CONTINUOUS, []);
    assert.deepEqual(loadConfig({ WORKFLOW_CONTINUOUS: ' 3001, 42,3001 ' }).WORKFLOW_CONTINUOUS, [3001, 42]);
    assert.throws(
      () => loadConfig({ WORKFLOW_CONTINUOUS: '3001,postings' }),
      (error) => error instanceof ConfigError && /WORKFLOW_CONTINUOUS/.test(error.message),
    );
    assert.equal(postingsWorkflow({ config: loadConfig({}), log: quietLog }).continuous, undefined);
    assert.deepEqual(postingsWorkflow({ config: loadConfig({ WORKFLOW_CONTINUOUS: '3001' }), log: quietLog }).continuous, { table: 'postings' });
  });
});
