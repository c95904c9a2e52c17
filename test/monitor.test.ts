// The health monitor (src/engine/monitor.ts) against a real PostgreSQL:
// recovery of dead runs (and only dead ones), orphaned claims, one
// active monitor per database with takeover, service probes that alert on
// changes only, `workflow health` through the service, and /healthz, /metrics.
// Passes are driven explicitly (runOnce / check); only the timer test ticks.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import type { CustomRoute } from '@slack/bolt';
import { monitorEventMessage } from '../src/chat/blocks/health.ts';
import { resultMessage } from '../src/chat/blocks/result.ts';
import { plainText } from '../src/chat/plain-text.ts';
import { createObservability } from '../src/chat/slack/metrics.ts';
import { renderResult } from '../src/cli/render.ts';
import { computeLockKey } from '../src/db/queries/locks.ts';
import { HealthMonitor, type MonitorEvent, type MonitorOptions } from '../src/engine/monitor.ts';
import { resolveDefaults, type ResolvedWorkflow } from '../src/workflows/define.ts';
import { ollamaService } from '../src/workflows/postings/index.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { eventually } from './helpers/cli.ts';
import { quietLog, testEngine, type TestEngine } from './helpers/engine.ts';
import { startOllamaStub } from './helpers/ollama-stub.ts';

const WORKFLOW_ID = 9100;
const HEARTBEAT_MS = 200;
const actor = { id: 'U0MONITOR', source: 'test' };

let t: TestEngine;
let nextSubject = 1_000;
const monitors: HealthMonitor[] = [];

/** A handler held until the test releases it: the live run's work stays in flight. */
let release: () => void = () => {};
let gate = new Promise<void>((resolve) => (release = resolve));

function newMonitor(overrides: Partial<MonitorOptions> = {}, workflows: ResolvedWorkflow[] = t.workflows): HealthMonitor {
  const monitor = new HealthMonitor({
    db: t.engine.db,
    lockConnectionString: t.database.url,
    instanceId: overrides.instanceId ?? `test-${randomUUID().slice(0, 8)}`,
    workflows,
    log: quietLog,
    intervalMs: 60_000,
    heartbeatMs: HEARTBEAT_MS,
    ...overrides,
  });
  monitors.push(monitor);
  return monitor;
}

/**
 * A run as a SIGKILLed owner leaves it: `running`, its heartbeat `silentSeconds`
 * old, its lock free (nobody holds it) unless the test takes it, and `claims`
 * claims of one pending item each (items the run was working on).
 */
async function deadRun(options: { silentSeconds: number; claims: number; status?: string }): Promise<{ id: number; lockKey: number; subjects: number[] }> {
  const scope = nextSubject++;
  const lockKey = await computeLockKey(t.db, WORKFLOW_ID, scope);
  const row = await t.db
    .insertInto('workflow_runs')
    .values({
      workflow_id: WORKFLOW_ID,
      mode: 'single_subject',
      subject_id: scope,
      lock_key: lockKey,
      status: options.status ?? 'running',
      action: 'run',
      requested_by: 'test',
      source: 'test',
      owner_token: randomUUID(),
      owner_instance: 'killed-instance',
      started_at: sql`now() - interval '1 hour'`,
      heartbeat_at: sql`now() - make_interval(secs => ${options.silentSeconds})`,
    } as any)
    .returning('id')
    .executeTakeFirstOrThrow();
  const subjects: number[] = [];
  for (let i = 0; i < options.claims; i++) {
    const subject = nextSubject++;
    subjects.push(subject);
    await sql`INSERT INTO items (id) VALUES (${subject})`.execute(t.db);
    await sql`INSERT INTO interaction_claims (run_id, workflow_id, step, subjects)
              VALUES (${row.id}, ${WORKFLOW_ID}, 'process', int8range(${subject}, ${subject}, '[]'))`.execute(t.db);
  }
  return { id: row.id, lockKey, subjects };
}

async function claimIds(runId: number): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`SELECT id::text FROM interaction_claims WHERE run_id = ${runId}`.execute(t.db);
  return rows.map((r) => r.id);
}

async function claimCount(runId: number): Promise<number> {
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM interaction_claims WHERE run_id = ${runId}`.execute(t.db);
  return rows[0]!.n;
}

async function runStatus(id: number): Promise<string> {
  const row = await t.db.selectFrom('workflow_runs').select('status').where('id', '=', id).executeTakeFirstOrThrow();
  return row.status;
}

async function interactionStatuses(runId: number): Promise<string[]> {
  const rows = await t.db.selectFrom('interactions').select('status').where('run_id', '=', runId).orderBy('id').execute();
  return rows.map((r) => r.status);
}

/** Holds an advisory lock on a connection of its own, as a live owner does. */
async function holdLock(key: number): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: t.database.url });
  await client.connect();
  await client.query('SELECT pg_advisory_lock($1::bigint)', [key]);
  return client;
}

/** The application name of the connection holding the monitor lock, read straight from pg_locks. */
async function monitorLockHolder(): Promise<string | null> {
  const { rows } = await sql<{ application_name: string }>`
    SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND ((l.classid::bigint << 32) | l.objid::bigint) = (hashtextextended('workflow-chatops:monitor', 0) & 9007199254740991::bigint)`.execute(t.db);
  assert.ok(rows.length <= 1, 'at most one holder');
  return rows[0]?.application_name ?? null;
}

/** A stand-in for Ollama's /api/tags that can be stopped and started again on the same port. */
async function tagsServer(port = 0): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(req.url === '/api/tags' ? '{"models":[]}' : '{}');
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${bound}`,
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function serveRoutes(routes: CustomRoute[]): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const route = routes.find((r) => r.path === new URL(req.url ?? '/', 'http://x').pathname);
    if (!route) return void res.writeHead(404).end();
    route.handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

before(async () => {
  t = await testEngine(
    'monitor',
    [
      itemsWorkflow({
        id: WORKFLOW_ID,
        retries: 1,
        timeoutMs: 1_000,
        concurrency: 2,
        handle: async ({ id }, ctx) => {
          await Promise.race([gate, new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true }))]);
          return `done ${id}`;
        },
      }),
    ],
    (db) => createItems(db, 4),
  );
});

after(async () => {
  release();
  for (const m of monitors) await m.close();
  await t.close();
});

describe('health monitor: runs', () => {
  test('a run whose owner died (running, heartbeat stale, lock free) is marked abandoned, its claims released and their work left pending; the finding says so', async () => {
    const dead = await deadRun({ silentSeconds: 30, claims: 3 });
    const monitor = newMonitor();
    const events: MonitorEvent[] = [];
    monitor.on('event', (e: MonitorEvent) => events.push(e));
    const report = await monitor.runOnce();

    assert.equal(report.active, true);
    assert.equal(await runStatus(dead.id), 'abandoned');
    assert.deepEqual(await interactionStatuses(dead.id), ['pending', 'pending', 'pending']);
    assert.equal(await claimCount(dead.id), 0);
    const found = report.recovered.find((r) => r.runId === dead.id);
    assert.ok(found, 'the finding names the run');
    assert.equal(found.interactionsReleased, 3);
    assert.ok(found.silentSeconds >= 29);
    assert.equal(found.ownerInstance, 'killed-instance');
    assert.match(
      renderResult({ kind: 'health', report }),
      new RegExp(`run #${dead.id} \\(workflow ${WORKFLOW_ID}\\) marked abandoned .* 3 unfinished interactions left pending`),
    );
    const recovered = events.filter((e) => e.type === 'recovered');
    assert.equal(recovered.length, 1);
    assert.match(plainText(monitorEventMessage(recovered[0]!)).text, new RegExp(`run #${dead.id} .*marked abandoned, 3 unfinished interactions left pending`));

    // Nothing left to do: the next pass finds nothing and says nothing.
    const again = await monitor.runOnce();
    assert.equal(again.recovered.length, 0);
    assert.equal(events.filter((e) => e.type === 'recovered').length, 1);
    assert.equal(again.totals.runsRecovered, 1);
    await monitor.close();
  });

  test('a live run (fresh heartbeat, lock held by its owner) is untouched', async () => {
    const started = await t.engine.startRun({ workflow: t.workflows[0]!, mode: 'global_batch', force: true, requestedBy: 'test', source: 'test' });
    assert.ok(started.started);
    const run = started.run;
    const monitor = newMonitor();
    try {
      await eventually(async () => (run.progress().process?.running ?? 0) >= 2, 'handlers in flight');
      const claims = await claimIds(run.id);
      assert.ok(claims.length > 0, 'the run holds claims');
      const report = await monitor.runOnce();
      assert.equal(
        report.recovered.some((r) => r.runId === run.id),
        false,
      );
      assert.equal(
        report.stuck.some((r) => r.runId === run.id),
        false,
      );
      assert.equal(
        report.orphans.some((o) => o.runId === run.id),
        false,
      );
      assert.equal(await runStatus(run.id), 'running');
      // The live run may claim further pages meanwhile; none of its claims is released.
      const after = new Set(await claimIds(run.id));
      assert.ok(
        claims.every((id) => after.has(id)),
        'its claims kept',
      );
      assert.ok((run.progress().process?.running ?? 0) >= 2, 'its work still in flight');
      assert.deepEqual(await interactionStatuses(run.id), [], 'nothing handed back');
    } finally {
      release();
    }
    const summary = await run.done;
    assert.equal(summary.outcome, 'completed');
    gate = new Promise<void>((resolve) => (release = resolve));
    await monitor.close();
  });

  test('a stale heartbeat with the lock still held is reported stuck, not recovered, and announced once', async () => {
    const stuck = await deadRun({ silentSeconds: 30, claims: 1 });
    const owner = await holdLock(stuck.lockKey);
    try {
      const monitor = newMonitor();
      const events: MonitorEvent[] = [];
      monitor.on('event', (e: MonitorEvent) => events.push(e));
      const first = await monitor.runOnce();
      await monitor.runOnce();
      assert.deepEqual(
        first.stuck.map((r) => r.runId),
        [stuck.id],
      );
      assert.equal(first.recovered.length, 0);
      assert.equal(await runStatus(stuck.id), 'running');
      assert.equal(await claimCount(stuck.id), 1, 'its claim kept');
      assert.equal(events.filter((e) => e.type === 'stuck').length, 1, 'announced once over two passes');
      await monitor.close();
    } finally {
      await owner.end();
    }
    // The owner is gone now: the next pass recovers it.
    const monitor = newMonitor();
    const report = await monitor.runOnce();
    assert.deepEqual(
      report.recovered.map((r) => r.runId),
      [stuck.id],
    );
    assert.equal(await runStatus(stuck.id), 'abandoned');
    await monitor.close();
  });

  test('a run that finished between the scan and the fix is untouched', async () => {
    const finishing = await deadRun({ silentSeconds: 30, claims: 2 });
    const monitor = newMonitor({
      beforeRecover: async (candidates) => {
        assert.ok(
          candidates.some((c) => c.id === finishing.id),
          'the scan saw it running and stale',
        );
        // Its owner ends it now, as a slow final commit would.
        await t.db
          .updateTable('workflow_runs')
          .set({ status: 'completed', ended_at: sql`now()` } as any)
          .where('id', '=', finishing.id)
          .execute();
        await sql`DELETE FROM interaction_claims WHERE run_id = ${finishing.id}`.execute(t.db);
        await sql`UPDATE items SET result = 'finished' WHERE id = ANY(${finishing.subjects}::bigint[])`.execute(t.db);
      },
    });
    const report = await monitor.runOnce();
    assert.equal(report.recovered.length, 0);
    assert.equal(await runStatus(finishing.id), 'completed');
    assert.deepEqual(await interactionStatuses(finishing.id), [], 'nothing left pending');
    const audit = await t.db.selectFrom('audit_log').select('action').where('run_id', '=', finishing.id).execute();
    assert.equal(
      audit.some((a) => a.action === 'run_abandoned'),
      false,
    );
    await monitor.close();
  });

  test("claims an ended run still holds are released, their work left pending (attempts carried on); a live run's are left alone", async () => {
    const ended = await deadRun({ silentSeconds: 30, claims: 2, status: 'failed' });
    // The second subject was already left pending once, by an earlier run.
    const earlier = await deadRun({ silentSeconds: 30, claims: 0, status: 'stopped' });
    await t.db
      .insertInto('interactions')
      .values({ run_id: earlier.id, workflow_id: WORKFLOW_ID, step: 'process', subject_id: ended.subjects[1]!, status: 'pending', attempts: 2 } as any)
      .execute();
    const live = await deadRun({ silentSeconds: 0, claims: 1 });
    const owner = await holdLock(live.lockKey);
    try {
      const monitor = newMonitor();
      const report = await monitor.runOnce();
      assert.deepEqual(report.orphans, [{ runId: ended.id, workflowId: WORKFLOW_ID, status: 'failed', claims: 2, interactionsReleased: 2 }]);
      assert.equal(await claimCount(ended.id), 0);
      const left = await t.db
        .selectFrom('interactions')
        .select(['run_id', 'subject_id', 'status', 'attempts'])
        .where('subject_id', 'in', ended.subjects)
        .orderBy('subject_id')
        .execute();
      assert.deepEqual(left, [
        { run_id: ended.id, subject_id: ended.subjects[0]!, status: 'pending', attempts: 1 },
        { run_id: ended.id, subject_id: ended.subjects[1]!, status: 'pending', attempts: 3 },
      ]);
      assert.match(
        renderResult({ kind: 'health', report }),
        new RegExp(`orphaned claims: run #${ended.id} .*still held 2: released, 2 unfinished interactions left pending`),
      );
      assert.equal(await claimCount(live.id), 1, "the live run's claim kept");
      await monitor.close();
    } finally {
      await owner.end();
      await t.db
        .updateTable('workflow_runs')
        .set({ status: 'completed' } as any)
        .where('id', '=', live.id)
        .execute();
      await sql`DELETE FROM interaction_claims WHERE run_id = ${live.id}`.execute(t.db);
    }
  });
});

describe('health monitor: one active per database', () => {
  test('two monitors: one holds the lock; when it closes the other takes over at its next tick; a killed connection hands over too', async () => {
    const a = newMonitor({ instanceId: 'mon-a' });
    const b = newMonitor({ instanceId: 'mon-b' });
    const ra = await a.runOnce();
    const rb = await b.runOnce();
    assert.equal(ra.active, true);
    assert.equal(rb.active, false);
    assert.equal(rb.activeInstance, 'mon-a');
    assert.equal(await monitorLockHolder(), 'workflow-monitor:mon-a');
    // A standby does not recover: a dead run waits for the active one (or `health`).
    const dead = await deadRun({ silentSeconds: 30, claims: 1 });
    assert.equal((await b.runOnce()).recovered.length, 0);
    assert.equal(await runStatus(dead.id), 'running');

    await a.close();
    assert.equal(await monitorLockHolder(), null);
    const taken = await b.runOnce();
    assert.equal(taken.active, true);
    assert.deepEqual(
      taken.recovered.map((r) => r.runId),
      [dead.id],
    );
    assert.equal(await monitorLockHolder(), 'workflow-monitor:mon-b');

    // The active instance dies (its backend terminated, as a SIGKILL ends its session).
    const c = newMonitor({ instanceId: 'mon-c' });
    assert.equal((await c.runOnce()).active, false);
    await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'workflow-monitor:mon-b' AND datname = current_database()`.execute(
      t.db,
    );
    await eventually(async () => (await monitorLockHolder()) === null, 'the lock freed with its session');
    assert.equal((await c.runOnce()).active, true);
    assert.equal(await monitorLockHolder(), 'workflow-monitor:mon-c');
    assert.equal((await b.runOnce()).active, false, 'the old one comes back as standby');
    await b.close();
    await c.close();
  });

  test('the timer ticks every intervalMs and recovers without being asked', async () => {
    const monitor = newMonitor({ intervalMs: 50 });
    monitor.start();
    const dead = await deadRun({ silentSeconds: 30, claims: 1 });
    await eventually(async () => (await runStatus(dead.id)) === 'abandoned', 'the ticking monitor to recover the run', 10_000);
    await monitor.close();
    assert.equal(await monitorLockHolder(), null, 'close releases the lock');
  });
});

describe('health monitor: external services', () => {
  test('a probe against a server stopped and started again: exactly one "down" and one "up" across several passes', async () => {
    const stub = await startOllamaStub();
    const port = Number(new URL(stub.url).port);
    const workflow = resolveDefaults({ ...itemsWorkflow({ id: WORKFLOW_ID, handle: async () => 'x' }), services: [ollamaService(stub.url)] });
    const monitor = newMonitor({ probeTimeoutMs: 1_000 }, [workflow]);
    const events: MonitorEvent[] = [];
    monitor.on('event', (e: MonitorEvent) => events.push(e));

    assert.equal((await monitor.runOnce()).services[0]!.up, true);
    await monitor.runOnce();
    await stub.close();
    const down = await monitor.runOnce();
    assert.equal(down.services[0]!.up, false);
    assert.match(down.services[0]!.error ?? '', /cannot reach ollama at http:\/\/127\.0\.0\.1:\d+\/api\/tags/);
    await monitor.runOnce();
    await monitor.runOnce();
    const again = await tagsServer(port);
    try {
      assert.equal((await monitor.runOnce()).services[0]!.up, true);
      await monitor.runOnce();
    } finally {
      await again.close();
    }
    assert.deepEqual(
      events.map((e) => e.type),
      ['service_down', 'service_up'],
    );
    const [downEvent, upEvent] = events as [Extract<MonitorEvent, { type: 'service_down' }>, Extract<MonitorEvent, { type: 'service_up' }>];
    assert.equal(downEvent.service, 'ollama');
    assert.deepEqual(downEvent.workflows, [WORKFLOW_ID]);
    assert.match(plainText(monitorEventMessage(downEvent)).text, /ollama is down/);
    assert.match(plainText(monitorEventMessage(upEvent)).text, /ollama is back/);
    await monitor.close();
  });

  test('a standby probes (its /healthz knows) but never alerts', async () => {
    const server = await tagsServer();
    const workflow = resolveDefaults({ ...itemsWorkflow({ id: WORKFLOW_ID, handle: async () => 'x' }), services: [ollamaService(server.url)] });
    const active = newMonitor({ probeTimeoutMs: 1_000 }, [workflow]);
    const standby = newMonitor({ probeTimeoutMs: 1_000 }, [workflow]);
    const heard: MonitorEvent[] = [];
    active.on('event', (e: MonitorEvent) => heard.push(e));
    standby.on('event', (e: MonitorEvent) => heard.push(e));
    await active.runOnce();
    await standby.runOnce();
    await server.close();
    await active.runOnce();
    const report = await standby.runOnce();
    assert.equal(report.active, false);
    assert.equal(report.services[0]!.up, false);
    assert.deepEqual(
      heard.map((e) => e.type),
      ['service_down'],
      'one alert, from the active monitor',
    );
    await active.close();
    await standby.close();
  });
});

describe('workflow health and /healthz', () => {
  test('`health` through the service runs a pass now and returns the findings', async () => {
    const server = await tagsServer();
    const workflow = resolveDefaults({ ...itemsWorkflow({ id: WORKFLOW_ID, handle: async () => 'x' }), services: [ollamaService(server.url)] });
    const monitor = newMonitor({ probeTimeoutMs: 1_000 }, [workflow]);
    t.health.setMonitor(monitor);
    try {
      const dead = await deadRun({ silentSeconds: 30, claims: 2 });
      const { result } = await t.service.handle('health', actor, 'chat');
      assert.equal(result.kind, 'health');
      if (result.kind !== 'health') return;
      assert.deepEqual(
        result.report.recovered.map((r) => [r.runId, r.interactionsReleased]),
        [[dead.id, 2]],
      );
      assert.equal(result.report.services[0]!.up, true);
      assert.ok(result.report.lastPassAt);
      assert.equal(await runStatus(dead.id), 'abandoned');
      const text = renderResult(result);
      assert.match(text, /service ollama: up/);
      const chat = plainText(resultMessage(result)).text;
      assert.match(chat, new RegExp(`run #${dead.id} \\(workflow ${WORKFLOW_ID}\\) marked abandoned`));
      assert.match(chat, /ollama.* up/);
    } finally {
      await server.close();
    }
  });

  test('/healthz: 200 "degraded", naming the down service to METRICS_TOKEN\'s bearer only (documented: a shared service down is not this instance\'s fault); /metrics has the monitor figures', async () => {
    const server = await tagsServer();
    const workflow = resolveDefaults({ ...itemsWorkflow({ id: WORKFLOW_ID, handle: async () => 'x' }), services: [ollamaService(server.url)] });
    const monitor = newMonitor({ probeTimeoutMs: 1_000 }, [workflow]);
    t.health.setMonitor(monitor);
    const token = 'monitor-test-metrics-token';
    const bearer = { headers: { authorization: `Bearer ${token}` } };
    const observability = createObservability({ health: t.health, processMetrics: false, metricsToken: token });
    const served = await serveRoutes(observability.routes);
    try {
      await monitor.runOnce();
      let response = await fetch(`${served.url}/healthz`, bearer);
      let body = (await response.json()) as Record<string, any>;
      assert.equal(response.status, 200);
      assert.equal(body.status, 'ok');
      assert.deepEqual(body.services, { ollama: 'up' });
      assert.equal(body.monitor.active, true);

      await server.close();
      await monitor.runOnce();
      response = await fetch(`${served.url}/healthz`, bearer);
      body = (await response.json()) as Record<string, any>;
      assert.equal(response.status, 200);
      assert.equal(body.status, 'degraded');
      assert.match(body.reason, /^ollama down: cannot reach ollama/);
      assert.deepEqual(body.services, { ollama: 'down' });
      // Without the token: the status, nothing about what is behind it.
      response = await fetch(`${served.url}/healthz`);
      assert.deepEqual(await response.json(), { status: 'degraded' });

      const metrics = await (await fetch(`${served.url}/metrics`, bearer)).text();
      assert.match(metrics, /^workflow_service_up\{service="ollama"\} 0$/m);
      assert.match(metrics, /^workflow_monitor_active 1$/m);
      assert.match(metrics, /^workflow_monitor_last_pass_timestamp_seconds \d+(\.\d+)?(e\+\d+)?$/m);
      assert.match(metrics, /^workflow_monitor_runs_recovered_total 0$/m);
    } finally {
      await served.close();
    }
  });
});
