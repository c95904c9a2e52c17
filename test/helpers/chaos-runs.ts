// Shared pieces of the chaos tests that run real `workflow` processes over
// the adoption fixture (test/fixtures/adoption/workflow.ts):
// test/chaos-adoption.test.ts and test/chaos-participants.test.ts. The
// processes a test starts, the fixture's items, the run row as those tests
// read it, and the check every disaster must pass: each (subject, step)
// saved exactly once.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import type { RunProgress } from '../../src/db/schema.ts';
import { ADOPT_TABLES_SQL, ADOPT_WORKFLOW_ID } from '../fixtures/adoption/workflow.ts';
import { eventually, startCli, type CliProcess } from './cli.ts';
import type { TestDb } from './engine.ts';

/** The fixture, for WORKFLOW_MODULES. */
export const ADOPT_MODULE = fileURLToPath(new URL('../fixtures/adoption/workflow.ts', import.meta.url));
/** The fixture's workflow, as the CLI takes it. */
export const WF = String(ADOPT_WORKFLOW_ID);

export interface ChaosProcesses {
  /** Starts `workflow <args>` with the test's environment and `extra`. */
  cli(args: string[], extra?: NodeJS.ProcessEnv): CliProcess;
  /** Starts `workflow serve` and resolves once it serves. */
  serve(extra?: NodeJS.ProcessEnv): Promise<CliProcess>;
  /** Kills (SIGCONT first, for a frozen one) every process still alive and waits for them all. */
  killAll(): Promise<void>;
}

/** The processes of a test file; `env` is read at each start, since each test makes its own database. */
export function chaosProcesses(env: () => NodeJS.ProcessEnv): ChaosProcesses {
  const started: CliProcess[] = [];
  const cli = (args: string[], extra: NodeJS.ProcessEnv = {}): CliProcess => {
    const child = startCli(args, { ...env(), ...extra });
    started.push(child);
    return child;
  };
  return {
    cli,
    async serve(extra = {}) {
      const server = cli(['serve'], extra);
      await server.waitFor(/serving/, 60_000);
      return server;
    },
    async killAll() {
      for (const child of started.splice(0)) {
        if (child.child.exitCode === null && child.child.signalCode === null) {
          child.child.kill('SIGCONT');
          child.child.kill('SIGKILL');
        }
        await child.exited;
      }
    },
  };
}

/** The fixture's tables, with items 1..count to process. */
export async function createItems(db: TestDb, count: number): Promise<void> {
  for (const statement of ADOPT_TABLES_SQL) await sql.raw(statement).execute(db);
  await sql`INSERT INTO adopt_items (id) SELECT g FROM generate_series(1, ${count}) g`.execute(db);
}

/** The columns of workflow_runs these tests read. */
export interface RunRecord {
  id: number;
  status: string;
  ended_reason: string | null;
  error: string | null;
  owner_instance: string | null;
  owner_token: string | null;
  interactions_completed: number;
  interactions_failed: number;
  progress: RunProgress | null;
  state_after: Record<string, number> | null;
  delta: Record<string, number> | null;
  owners: { instance: string; reason: string; since: string; ended?: string; no_progress: number; in_flight_at_loss?: string }[];
  ended_at: Date | null;
}

export async function runRow(db: TestDb, id: number): Promise<RunRecord> {
  return (await db.selectFrom('workflow_runs').selectAll().where('id', '=', id).executeTakeFirstOrThrow()) as unknown as RunRecord;
}

/** The id of the fixture's running run, once there is one. */
export function runningRun(db: TestDb): Promise<number> {
  return eventually(async () => {
    const row = await db
      .selectFrom('workflow_runs')
      .select('id')
      .where('status', '=', 'running')
      .where('workflow_id', '=', ADOPT_WORKFLOW_ID)
      .executeTakeFirst();
    return row?.id;
  }, 'a running run');
}

/** The run once it has had more than one owner. */
export function adoptedRun(db: TestDb, id: number): Promise<RunRecord> {
  return eventually(async () => {
    const row = await runRow(db, id);
    return row.owners.length > 1 ? row : undefined;
  }, 'the run to be adopted');
}

export function waitForEnd(db: TestDb, id: number, timeoutMs = 120_000): Promise<RunRecord> {
  return eventually(
    async () => {
      const row = await runRow(db, id);
      return row.status !== 'running' ? row : undefined;
    },
    `run #${id} to end`,
    timeoutMs,
  );
}

export async function savedAtLeast(db: TestDb, n: number): Promise<void> {
  await eventually(async () => {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM adopt_saves`.execute(db);
    return rows[0]!.n >= n;
  }, `${n} saves`);
}

/** Saves per process id. */
export async function savesByPid(db: TestDb): Promise<Map<number, number>> {
  const { rows } = await sql<{ pid: number; n: number }>`SELECT pid, count(*)::int AS n FROM adopt_saves GROUP BY pid`.execute(db);
  return new Map(rows.map((r) => [r.pid, r.n]));
}

/** Every (subject, step) saved at most once; exactly `expected` saves and as many completed interactions. */
export async function assertSavedOnce(db: TestDb, expected: number): Promise<void> {
  const { rows } = await sql<{ subject: number; step: string; n: number }>`
    SELECT subject, step, count(*)::int AS n FROM adopt_saves GROUP BY subject, step HAVING count(*) > 1`.execute(db);
  assert.deepEqual(rows, [], 'no subject saved twice in a step');
  const { rows: total } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM adopt_saves`.execute(db);
  assert.equal(total[0]!.n, expected, 'saves');
  const { rows: interactions } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM interactions WHERE status = 'completed'`.execute(db);
  assert.equal(interactions[0]!.n, expected, 'one completed interaction per save');
}
