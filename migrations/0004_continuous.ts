import { sql, type Kysely } from 'kysely';

// Continuous workflows (src/engine/continuous.ts): whether an operator has
// paused one, and who did it when. The work triggers on subject tables and
// their function are not created here: they belong to whichever workflows the
// serving instances define as continuous, so serve creates them at start-up,
// idempotently (src/db/queries/continuous.ts).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE workflows
      ADD COLUMN paused    boolean NOT NULL DEFAULT false,
      ADD COLUMN paused_by text,
      ADD COLUMN paused_at timestamptz`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // CASCADE: the per-table triggers serve created call this function.
  await sql`DROP FUNCTION IF EXISTS workflow_work_notify() CASCADE`.execute(db);
  await sql`ALTER TABLE workflows DROP COLUMN paused, DROP COLUMN paused_by, DROP COLUMN paused_at`.execute(db);
}
