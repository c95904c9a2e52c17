// The scheduler with an injected clock: the leading instance starts a
// scheduled workflow's batch when its cron ticks (in its time zone), as
// `schedule`, under the usual rules and audited; ticks missed while nothing
// served fold into one catch-up run; pause skips ticks; a second instance
// does not start anything while the first leads; `schedules` lists the next
// start. Real PostgreSQL, real engine.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Scheduler } from '../src/engine/scheduler.ts';
import type { WorkflowDefinition } from '../src/workflows/define.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { eventually } from './helpers/cli.ts';
import { quietLog, testEngine, type TestEngine } from './helpers/engine.ts';

const PARIS_3AM = { cron: '0 3 * * *', timezone: 'Europe/Paris' };
const scheduled = (id: number, table: string, extra: Partial<WorkflowDefinition> = {}): WorkflowDefinition => ({
  ...itemsWorkflow({ id, name: table.replace(/_/g, '-'), table, rateLimitSeconds: 1, handle: async ({ id: item }) => `ok ${item}` }),
  schedule: PARIS_3AM,
  ...extra,
});

describe('scheduler', () => {
  let t: TestEngine;
  let clock = new Date('2026-03-01T00:00:00Z');
  const schedulers: Scheduler[] = [];

  before(async () => {
    t = await testEngine(
      'scheduler',
      [
        scheduled(9401, 'daily_items'),
        scheduled(9402, 'missed_items'),
        scheduled(9403, 'paused_items'),
        scheduled(9404, 'leader_items'),
        scheduled(9405, 'limited_items', { rateLimitSeconds: 3_600 }),
      ],
      async (db) => {
        for (const table of ['daily_items', 'missed_items', 'paused_items', 'leader_items', 'limited_items']) await createItems(db, 4, table);
      },
    );
  });

  afterEach(async () => {
    for (const s of schedulers.splice(0)) await s.close();
  });

  after(async () => {
    await t?.close();
  });

  async function scheduler(ids: number[]): Promise<Scheduler> {
    const s = new Scheduler({
      engine: t.engine,
      connectionString: t.database.url,
      workflows: t.workflows.filter((w) => ids.includes(w.id)),
      log: quietLog,
      now: () => clock,
      timer: false,
    });
    schedulers.push(s);
    await s.start();
    return s;
  }

  const runsOf = (workflowId: number) => t.db.selectFrom('workflow_runs').selectAll().where('workflow_id', '=', workflowId).orderBy('id').execute();
  const auditOf = (workflowId: number) =>
    t.db.selectFrom('audit_log').selectAll().where('workflow_id', '=', workflowId).where('actor', '=', 'schedule').orderBy('id').execute();
  const finished = (runId: number) =>
    eventually(async () => {
      const run = await t.db.selectFrom('workflow_runs').selectAll().where('id', '=', runId).executeTakeFirstOrThrow();
      return run.status === 'running' ? undefined : run;
    }, `run #${runId} to end`);

  test('first seen, nothing is due; at 03:00 Paris time a batch starts, requested by and audited as schedule', async () => {
    clock = new Date('2026-03-01T00:00:00Z');
    const s = await scheduler([9401]);
    assert.ok(s.isLeader);
    assert.deepEqual(await runsOf(9401), []);
    // 01:59 UTC is 02:59 in Paris (CET, UTC+1): not yet.
    clock = new Date('2026-03-01T01:59:00Z');
    const early = await s.tick();
    assert.equal(early[0]!.outcome, 'not_due');
    assert.equal(early[0]!.outcome === 'not_due' && early[0]!.next?.toISOString(), '2026-03-01T02:00:00.000Z');
    clock = new Date('2026-03-01T02:00:05Z');
    const [outcome] = await s.tick();
    assert.equal(outcome!.outcome, 'started', JSON.stringify(outcome));
    const [run] = await runsOf(9401);
    assert.equal(run!.requested_by, 'schedule');
    assert.equal(run!.source, 'schedule');
    assert.equal(run!.mode, 'global_batch');
    assert.equal((await finished(run!.id)).status, 'completed');
    const [entry] = await auditOf(9401);
    assert.equal(entry!.outcome, 'accepted');
    assert.equal(entry!.run_id, run!.id);
    assert.deepEqual(entry!.details, { mode: 'global_batch', tick: '2026-03-01T02:00:00.000Z', missed_ticks: 0, cron: '0 3 * * *', timezone: 'Europe/Paris' });
    // The same tick is not acted on twice.
    assert.equal((await s.tick())[0]!.outcome, 'not_due');
    assert.equal((await runsOf(9401)).length, 1);
  });

  test('ticks missed while no instance served give one catch-up run, not one per tick', async () => {
    clock = new Date('2026-03-01T12:00:00Z');
    let s = await scheduler([9402]);
    await s.close();
    // Three 03:00 ticks pass with nobody serving.
    clock = new Date('2026-03-04T12:00:00Z');
    s = await scheduler([9402]);
    const runs = await runsOf(9402);
    assert.equal(runs.length, 1, 'one run for three missed ticks');
    await finished(runs[0]!.id);
    const [entry] = await auditOf(9402);
    assert.equal((entry!.details as { missed_ticks: number }).missed_ticks, 2);
    assert.equal((entry!.details as { tick: string }).tick, '2026-03-04T02:00:00.000Z');
    assert.equal((await s.tick())[0]!.outcome, 'not_due');
  });

  test('pause skips ticks (audited); after resume the next tick starts a run', async () => {
    clock = new Date('2026-03-01T12:00:00Z');
    const s = await scheduler([9403]);
    const admin = { id: 'ana@laptop', source: 'cli' };
    const paused = await t.service.execute({ verb: 'pause', workflow: '9403' }, admin, 'cli');
    assert.equal(paused.kind, 'done', JSON.stringify(paused));
    clock = new Date('2026-03-02T02:00:01Z');
    const [skipped] = await s.tick();
    assert.equal(skipped!.outcome === 'refused' && skipped!.reason, 'paused');
    assert.deepEqual(await runsOf(9403), []);
    assert.equal((await auditOf(9403))[0]!.outcome, 'refused');
    await t.service.execute({ verb: 'resume', workflow: '9403' }, admin, 'cli');
    // The skipped tick stays skipped: resume sets off no backlog.
    assert.equal((await s.tick())[0]!.outcome, 'not_due');
    clock = new Date('2026-03-03T02:00:01Z');
    assert.equal((await s.tick())[0]!.outcome, 'started');
    await finished((await runsOf(9403))[0]!.id);
  });

  test('the rate limit applies: a tick inside it is refused and audited with the next allowed time', async () => {
    clock = new Date('2026-03-01T12:00:00Z');
    const s = await scheduler([9405]);
    const manual = await t.service.execute(
      { verb: 'run', workflow: '9405', mode: 'global_batch', force: false, detach: false },
      { id: 'ana@laptop', source: 'cli' },
    );
    assert.equal(manual.kind, 'run_started');
    if (manual.kind === 'run_started') await manual.run.done;
    clock = new Date('2026-03-02T02:00:01Z');
    const [outcome] = await s.tick();
    assert.equal(outcome!.outcome === 'refused' && outcome!.reason, 'rate_limited', JSON.stringify(outcome));
    const [entry] = await auditOf(9405);
    assert.equal(entry!.outcome, 'refused');
    assert.match(entry!.reason!, /the next start is allowed at/);
  });

  test('only the leading instance starts runs', async () => {
    clock = new Date('2026-03-01T12:00:00Z');
    const first = await scheduler([9404]);
    const second = await scheduler([9404]);
    assert.ok(first.isLeader);
    assert.ok(!second.isLeader);
    clock = new Date('2026-03-02T02:00:01Z');
    assert.deepEqual(await second.tick(), []);
    assert.equal((await first.tick())[0]!.outcome, 'started');
    assert.equal((await runsOf(9404)).length, 1);
    await finished((await runsOf(9404))[0]!.id);
    // When the leader goes, the other takes over at its next try.
    await first.close();
    await eventually(
      async () => {
        await (second as unknown as { tryLead(): Promise<void> }).tryLead();
        return second.isLeader;
      },
      'the second instance to lead',
      10_000,
    );
  });

  test('schedules lists each scheduled workflow with its next start; pause is allowed for it', async () => {
    const result = await t.service.execute({ verb: 'schedules' }, { id: 'vera', source: 'cli' });
    assert.equal(result.kind, 'schedules');
    const daily = result.kind === 'schedules' ? result.schedules.find((s) => s.workflowId === 9401) : undefined;
    assert.ok(daily);
    assert.equal(daily.cron, '0 3 * * *');
    assert.equal(daily.timezone, 'Europe/Paris');
    // Its last tick was 2026-03-01 02:00 UTC; the next is the day after.
    assert.equal(daily.next, '2026-03-02T02:00:00.000Z');
    assert.equal(daily.overdue, true, 'that day has passed in real time: the leader catches up at its next look');
  });
});
