import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import type { EngineTables } from '../schema.ts';

// The schedules' state (migrations/0030_schedules.ts) and the scheduler's
// leader lock. One row per scheduled workflow, read and moved by primary key.

export interface ScheduleState {
  workflowId: number;
  cron: string;
  timezone: string;
  lastTick: Date;
}

export async function scheduleStates(db: Kysely<EngineTables>): Promise<Map<number, ScheduleState>> {
  const rows = await db.selectFrom('workflow_schedules').selectAll().execute();
  return new Map(rows.map((r) => [r.workflow_id, { workflowId: r.workflow_id, cron: r.cron, timezone: r.timezone, lastTick: new Date(r.last_tick) }]));
}

/**
 * The state of a schedule, made on first sight with `now` as its last tick
 * (a schedule starts counting when it is first served), and started again
 * from `now` when its cron or time zone changed.
 */
export async function ensureSchedule(db: Kysely<EngineTables>, workflowId: number, cron: string, timezone: string, now: Date): Promise<ScheduleState> {
  const row = await db
    .insertInto('workflow_schedules')
    .values({ workflow_id: workflowId, cron, timezone, last_tick: now })
    .onConflict((oc) =>
      oc.column('workflow_id').doUpdateSet({
        cron,
        timezone,
        last_tick: sql`CASE WHEN workflow_schedules.cron = ${cron} AND workflow_schedules.timezone = ${timezone} THEN workflow_schedules.last_tick ELSE ${now} END`,
        updated_at: sql`now()`,
      }),
    )
    .returningAll()
    .executeTakeFirstOrThrow();
  return { workflowId: row.workflow_id, cron: row.cron, timezone: row.timezone, lastTick: new Date(row.last_tick) };
}

/** Moves a schedule's last tick from `from` to `to`; false when another instance moved it first. */
export async function advanceSchedule(db: Kysely<EngineTables>, workflowId: number, from: Date, to: Date): Promise<boolean> {
  const result = await db
    .updateTable('workflow_schedules')
    .set({ last_tick: to, updated_at: sql`now()` })
    .where('workflow_id', '=', workflowId)
    .where('last_tick', '=', from)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** The scheduler's leader lock, on the leader's own session: released when that session ends. */
export async function trySchedulerLeaderLock(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(
    "SELECT pg_try_advisory_lock(hashtextextended('workflow-chatops:scheduler-leader', 0) & 9007199254740991) AS ok",
  );
  return rows[0]!.ok;
}
