import { sql, type Kysely } from 'kysely';

// The handler calls a run's owner may have in flight at once (its
// concurrency, or maxConcurrency with 'auto'), written by whoever becomes
// the owner: the instance that starts the run, or one that adopts it. A
// joining participant counts it towards the workflow's runConcurrency
// (src/db/queries/participants.ts, joinRun): instances may be configured
// differently, so a joiner's own concurrency says nothing of the owner's.
// Null on runs started before this migration: a joiner then counts its own.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE workflow_runs ADD COLUMN owner_slots integer CHECK (owner_slots > 0)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE workflow_runs DROP COLUMN owner_slots`.execute(db);
}
