// Timeouts on the command path (docs/operations.md, Timeouts): a lock held
// elsewhere makes commands answer "database busy, try again" instead of
// hanging, and slow /metrics scrapes, on a pool of their own whose
// statements the server cancels, never starve the commands' pool.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createObservability } from '../src/chat/slack/metrics.ts';
import { createCommands, type Commands } from '../src/commands/commands.ts';
import { createKysely, createPool } from '../src/db/connect.ts';
import { DATABASE_BUSY } from '../src/db/errors.ts';
import { Engine } from '../src/engine/engine.ts';
import { Store } from '../src/engine/store.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { migratedDatabase, quietLog, registerWorkflows, type TestDb } from './helpers/engine.ts';
import type { TestDatabase } from './helpers/database.ts';

const actor = { id: 'tester', source: 'test' };
/** A hang fails the test here instead of passing late: the commands must answer within their lock timeout. */
const HANG = { timeout: 20_000 };

describe('timeouts on the command path', () => {
  let database: TestDatabase;
  let db: TestDb;
  let engine: Engine;
  let commands: Commands;
  let holder: pg.Client;
  let figuresPool: pg.Pool;

  before(async () => {
    ({ database, db } = await migratedDatabase('timeouts'));
    await createItems(db, 10);
    const workflows = await registerWorkflows(db, [itemsWorkflow({ handle: async ({ id }) => `done ${id}` })]);
    engine = new Engine({
      connectionString: database.url,
      workflows,
      log: quietLog,
      heartbeatMs: 200,
      forceGraceMs: 1_000,
      timeouts: { statementMs: 2_000, lockMs: 300 },
    });
    commands = createCommands(engine, { all: () => workflows, find: (ref) => workflows.find((w) => String(w.id) === String(ref)) });
    // As src/app.ts wires it, with a shorter timeout.
    figuresPool = createPool({ connectionString: database.url, applicationName: 'workflow-metrics:test', max: 2, statementTimeoutMs: 200, lockTimeoutMs: 200 });
    commands.health.readFiguresFrom(new Store(createKysely(figuresPool), engine.instanceId));
    holder = new pg.Client({ connectionString: database.url, application_name: 'lock-holder' });
    await holder.connect();
  });
  after(async () => {
    await holder?.end().catch(() => {});
    await figuresPool?.end().catch(() => {});
    await engine?.close();
    await db?.destroy();
    await database?.drop();
  });

  async function holding<T>(table: string, work: () => Promise<T>): Promise<T> {
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    try {
      return await work();
    } finally {
      await holder.query('ROLLBACK');
    }
  }

  test('with audit_log locked elsewhere, an audited command answers "database busy, try again"', HANG, async () => {
    const { result } = await holding('audit_log', () => commands.service.handle('stop 999', actor, 'chat'));
    assert.deepEqual(result, { kind: 'refused', reason: 'busy', message: DATABASE_BUSY });
    const again = await commands.service.handle('stop 999', actor, 'chat');
    assert.equal(again.result.kind, 'not_found', 'and answers normally once the lock is gone');
  });

  test('with the runs locked elsewhere, `list` answers busy too', HANG, async () => {
    const { result } = await holding('workflow_runs', () => commands.service.handle('list', actor, 'chat'));
    assert.deepEqual(result, { kind: 'refused', reason: 'busy', message: DATABASE_BUSY });
  });

  test("ten slow /metrics scrapes leave the commands' pool alone, and the server cancels each", HANG, async () => {
    const observability = createObservability({ health: commands.health, processMetrics: false, healthTimeoutMs: 100 });
    await holding('interactions', async () => {
      for (let i = 0; i < 10; i++) await observability.metrics();
      const { result } = await commands.service.handle('list', actor, 'chat');
      assert.equal(result.kind, 'runs', 'list answers while the scrapes are stuck');
      const { rows } = await holder.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'workflow-metrics:test' AND state = 'active' AND pid <> pg_backend_pid()",
      );
      // A scrape's statement may still be waiting for its cancel to land; never the ten of them.
      assert.ok(rows[0]!.n <= 1, `${rows[0]!.n} scrapes still running on the server`);
    });
    assert.match(await observability.metrics(), /workflow_database_up 1/);
  });
});
