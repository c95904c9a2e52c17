import { sql, type Kysely } from 'kysely';

// Fewer index writes per interaction, measured with bench/noop-engine.ts.
// Completing an interaction changes `status`, which a partial index's
// predicate reads, so the UPDATE can never be HOT: every index whose
// predicate the new row version satisfies gets a new entry. Both indexes
// below now cover only the rows their queries ask for:
// - by run: only live rows (recovery and stop hand back a run's running rows);
// - by subject: only completed rows (lineage looks up the upstream step's
//   completed interaction).
// Claiming then writes 3 index entries instead of 4, completing 2 instead of 3.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX interactions_run`.execute(db);
  await sql`CREATE INDEX interactions_run_live ON interactions (run_id) WHERE status IN ('pending', 'running')`.execute(db);
  await sql`DROP INDEX interactions_subject`.execute(db);
  await sql`CREATE INDEX interactions_subject_completed ON interactions (workflow_id, subject_id, step) WHERE status = 'completed'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX interactions_subject_completed`.execute(db);
  await sql`CREATE INDEX interactions_subject ON interactions (workflow_id, subject_id)`.execute(db);
  await sql`DROP INDEX interactions_run_live`.execute(db);
  await sql`CREATE INDEX interactions_run ON interactions (run_id)`.execute(db);
}
