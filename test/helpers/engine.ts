// An engine and command service on a fresh test database, wired as the app
// wires them, for tests that drive the engine in-process.
import { createKysely, createPool, type Db } from '../../src/db/connect.ts';
import { migrateToLatest } from '../../src/db/migrate.ts';
import { createCommands, type Commands } from '../../src/commands/commands.ts';
import { Engine } from '../../src/engine/engine.ts';
import { createLogger } from '../../src/log.ts';
import { resolveDefaults, type ResolvedWorkflow, type WorkflowDefinition } from '../../src/workflows/define.ts';
import type { PostingsTables } from '../../src/workflows/postings/schema.ts';
import type { ItemsTables } from '../fixtures/items-workflow.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';

/** A test database: the engine's tables, the example's postings and the items of test/fixtures/items-workflow.ts. */
export type TestDb = Db<PostingsTables & ItemsTables>;

export interface TestEngine extends Commands {
  database: TestDatabase;
  db: TestDb;
  engine: Engine;
  workflows: ResolvedWorkflow[];
  close(): Promise<void>;
}

export const quietLog = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

export async function migratedDatabase(prefix: string): Promise<{ database: TestDatabase; db: TestDb }> {
  const database = await createTestDatabase(prefix);
  const db = createKysely<PostingsTables & ItemsTables>(createPool({ connectionString: database.url, applicationName: 'workflow-test', max: 4 }));
  await migrateToLatest(db);
  return { database, db };
}

export async function registerWorkflows(db: Db, definitions: WorkflowDefinition[]): Promise<ResolvedWorkflow[]> {
  const workflows = definitions.map(resolveDefaults);
  for (const w of workflows) {
    await db
      .insertInto('workflows')
      .values({ id: w.id, name: w.name, definition: JSON.stringify({ steps: w.steps.map((s) => s.name) }) })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
  }
  return workflows;
}

export function startEngine(url: string, workflows: ResolvedWorkflow[], options: { forceGraceMs?: number; heartbeatMs?: number } = {}): Engine {
  return new Engine({
    connectionString: url,
    workflows,
    log: quietLog,
    heartbeatMs: options.heartbeatMs ?? 200,
    forceGraceMs: options.forceGraceMs ?? 1_000,
  });
}

export async function testEngine(prefix: string, definitions: WorkflowDefinition[], setup?: (db: TestDb) => Promise<void>): Promise<TestEngine> {
  const { database, db } = await migratedDatabase(prefix);
  if (setup) await setup(db);
  const workflows = await registerWorkflows(db, definitions);
  const engine = startEngine(database.url, workflows);
  const commands = createCommands(engine, {
    all: () => workflows,
    find: (ref) => workflows.find((w) => String(w.id) === String(ref) || w.name === String(ref).toLowerCase()),
  });
  return {
    database,
    db,
    engine,
    ...commands,
    workflows,
    async close() {
      await engine.close();
      await db.destroy();
      await database.drop();
    },
  };
}
