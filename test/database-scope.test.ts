// Two databases on one server (staging beside production): run ids and
// serving instances are per database, so nothing one database's instances do
// may reach the other's connections.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { terminateBackends } from '../src/db/queries/locks.ts';
import { runApplicationName } from '../src/engine/engine.ts';
import { itemsWorkflow } from './fixtures/items-workflow.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { testEngine, type TestEngine } from './helpers/engine.ts';

let a: TestEngine;
let other: TestDatabase;

before(async () => {
  a = await testEngine('scope_a', [itemsWorkflow({ handle: async ({ id }) => `done ${id}` })]);
  other = await createTestDatabase('scope_b');
});
after(async () => {
  await a?.close();
  await other?.drop();
});

async function connectTo(url: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  client.on('error', () => {});
  await client.connect();
  return client;
}

test("force's termination by application name spares another database's run of the same id", async () => {
  const theirs = await connectTo(other.url, runApplicationName(1));
  try {
    const terminated = await terminateBackends(a.db, { pid: null, applicationName: runApplicationName(1) });
    assert.equal(terminated, 0);
    const { rows } = await theirs.query<{ ok: number }>('SELECT 1 AS ok');
    assert.equal(rows[0]!.ok, 1, "the other database's connection is still alive");
  } finally {
    await theirs.end().catch(() => {});
  }
});

test("force's termination by application name still ends this database's run connections", async () => {
  const ours = await connectTo(a.database.url, runApplicationName(1));
  try {
    assert.equal(await terminateBackends(a.db, { pid: null, applicationName: runApplicationName(1) }), 1);
    await assert.rejects(ours.query('SELECT 1'));
  } finally {
    await ours.end().catch(() => {});
  }
});

test('run --detach does not count a serve attached to another database as serving', async () => {
  const theirServe = await connectTo(other.url, 'workflow-serve:elsewhere');
  try {
    const workflow = a.workflows[0]!;
    const outcome = await a.engine.queueRun({ workflow, mode: 'global_batch', force: false, requestedBy: 'tester', source: 'test' });
    assert.equal(outcome.queued, false);
    assert.equal(!outcome.queued && outcome.refusal.reason, 'no_server');
  } finally {
    await theirServe.end();
  }
  const ourServe = await connectTo(a.database.url, 'workflow-serve:here');
  try {
    const outcome = await a.engine.queueRun({ workflow: a.workflows[0]!, mode: 'global_batch', force: false, requestedBy: 'tester', source: 'test' });
    assert.equal(outcome.queued, true, 'a serve on this database counts');
  } finally {
    await ourServe.end();
  }
});
