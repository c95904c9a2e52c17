import { sql, type Kysely } from 'kysely';

// Scheduled workflows (src/engine/scheduler.ts): the latest tick of each
// workflow's schedule that has been acted on. A tick after it that is due
// starts one run; ticks missed while no instance served fold into that one
// (one catch-up run, not one per tick). The leading instance moves it with a
// compare-and-set, so a tick is acted on once whichever instance leads.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE workflow_schedules (
      workflow_id integer PRIMARY KEY REFERENCES workflows (id),
      cron        text NOT NULL,
      timezone    text NOT NULL,
      last_tick   timestamptz NOT NULL,
      updated_at  timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE workflow_schedules`.execute(db);
}
