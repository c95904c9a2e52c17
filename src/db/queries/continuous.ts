import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import type { EngineTables } from '../schema.ts';

// Continuous workflows (src/engine/continuous.ts): the work triggers on
// subject tables, the pause switch, and the leader lock of the instances that
// react to new work.

/** Where subject tables announce new work; the payload is the workflow id. */
export const WORK_CHANNEL = 'workflow_work';

/**
 * Creates (or re-creates) the trigger that announces work for `workflowId` on
 * `table`. Statement-level, so a 1,000-row INSERT sends one NOTIFY, not
 * 1,000; and NOTIFY is delivered at commit and folded per transaction, so a
 * rolled-back insert announces nothing and a transaction of many statements
 * announces once. It also fires on the engine's own UPDATEs (a run saving its
 * results): the listener treats every notification as "look", never as
 * "start", so those cost one cheap check, and work written by another
 * workflow's run is still seen.
 *
 * Idempotent, and safe from several instances at once: a transaction-level
 * advisory lock serialises them (CREATE OR REPLACE FUNCTION raises "tuple
 * concurrently updated" when two run together), and lock_timeout keeps a long
 * transaction on the table from hanging start-up (the periodic check covers a
 * workflow whose trigger could not be made).
 */
export async function ensureWorkTrigger<DB>(db: Kysely<DB>, workflowId: number, table: string): Promise<void> {
  // Already there: nothing to do, no lock taken on the table. It is made by
  // the schema's owner at start-up (src/app.ts), since the app's own role may
  // create neither functions nor triggers (docs/security.md, The database).
  const { rows } = await sql<{ present: boolean }>`
    SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(${table}) AND tgname = ${`workflow_work_${workflowId}`})
       AND EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'workflow_work_notify' AND pronamespace = current_schema()::regnamespace) AS present`.execute(db);
  if (rows[0]?.present) return;
  const trigger = sql.id(`workflow_work_${workflowId}`);
  // The id is a validated positive integer (registry.ts), so it is safe as a literal;
  // trigger arguments must be literals.
  const argument = sql.raw(`'${Math.trunc(workflowId)}'`);
  await db.transaction().execute(async (tx) => {
    await sql`SET LOCAL lock_timeout = '5s'`.execute(tx);
    await sql`SELECT pg_advisory_xact_lock(hashtextextended('workflow-chatops:work-triggers', 0))`.execute(tx);
    await sql`
      CREATE OR REPLACE FUNCTION workflow_work_notify() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify(${sql.raw(`'${WORK_CHANNEL}'`)}, TG_ARGV[0]);
        RETURN NULL;
      END $$`.execute(tx);
    await sql`DROP TRIGGER IF EXISTS ${trigger} ON ${sql.table(table)}`.execute(tx);
    await sql`
      CREATE TRIGGER ${trigger} AFTER INSERT OR UPDATE ON ${sql.table(table)}
        FOR EACH STATEMENT EXECUTE FUNCTION workflow_work_notify(${argument})`.execute(tx);
  });
}

/** Announces work by hand (resume uses it, so the serving leader looks at once). */
export async function notifyWork<DB>(db: Kysely<DB>, workflowId: number): Promise<void> {
  await sql`SELECT pg_notify(${WORK_CHANNEL}, ${String(workflowId)})`.execute(db);
}

export interface PauseState {
  paused: boolean;
  pausedBy: string | null;
  pausedAt: Date | null;
}

/**
 * Sets the pause switch. Returns the state before the change (undefined when
 * the workflow is not registered): the self-join reads the row as it was
 * before this UPDATE, so one statement both changes it and says whether it
 * changed anything.
 */
export async function setPaused(db: Kysely<EngineTables>, workflowId: number, paused: boolean, by: string): Promise<PauseState | undefined> {
  const { rows } = await sql<{ paused: boolean; paused_by: string | null; paused_at: Date | null }>`
    UPDATE workflows AS w
       SET paused = ${paused},
           paused_by = CASE WHEN ${paused} THEN ${by} ELSE NULL END,
           paused_at = CASE WHEN ${paused} THEN now() ELSE NULL END
      FROM workflows AS old
     WHERE w.id = old.id AND w.id = ${workflowId}
     RETURNING old.paused, old.paused_by, old.paused_at`.execute(db);
  const row = rows[0];
  return row && { paused: row.paused, pausedBy: row.paused_by, pausedAt: row.paused_at };
}

export async function isPaused(db: Kysely<EngineTables>, workflowId: number): Promise<boolean> {
  const row = await db.selectFrom('workflows').select('paused').where('id', '=', workflowId).executeTakeFirst();
  return row?.paused ?? false;
}

/** Pause state of every registered workflow, for the `workflows` view. */
export async function pauseStates(db: Kysely<EngineTables>): Promise<Map<number, PauseState>> {
  const rows = await db.selectFrom('workflows').select(['id', 'paused', 'paused_by', 'paused_at']).execute();
  return new Map(rows.map((r) => [r.id, { paused: r.paused, pausedBy: r.paused_by, pausedAt: r.paused_at }]));
}

/**
 * The "continuous leader" lock: a session advisory lock on the listener's own
 * connection, so it is released the moment that connection dies and another
 * instance can take over. Keyed in our namespace like the run locks (locks.ts).
 */
export async function tryLeaderLock(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(
    "SELECT pg_try_advisory_lock(hashtextextended('workflow-chatops:continuous-leader', 0) & 9007199254740991) AS ok",
  );
  return rows[0]!.ok;
}
