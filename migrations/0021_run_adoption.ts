import { sql, type Kysely } from 'kysely';

// Runs that outlive their owner (docs/architecture.md, Adoption):
// - owners: every owner a run has had, in order, with how each tenure began
//   (start, owner_lost, handoff) and ended, the run's finished interactions
//   when it began and the adoptions in a row without progress: the run's one
//   audit record lists them. A list in the row, not a table, because it is
//   written in the same UPDATE that moves the fence to the new owner and read
//   with the row by every surface;
// - in_flight: the item an owner in careful mode (after an adoption without
//   progress) is about to start, written before each handler call, so that a
//   crash loop names the subject that kills its process.
// The audit view gains `owners`. It is redefined with every key it had,
// `pending_at_start` (migrations/0020_run_forecast.ts) included.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE workflow_runs ADD COLUMN owners jsonb NOT NULL DEFAULT '[]', ADD COLUMN in_flight jsonb`.execute(db);
  await createView(db, true);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP VIEW workflow_run_audit`.execute(db);
  await createView(db, false);
  await sql`ALTER TABLE workflow_runs DROP COLUMN owners, DROP COLUMN in_flight`.execute(db);
}

async function createView(db: Kysely<unknown>, withOwners: boolean): Promise<void> {
  const owners = withOwners ? sql`, 'owners', r.owners` : sql``;
  await sql`DROP VIEW IF EXISTS workflow_run_audit`.execute(db);
  await sql`
    CREATE VIEW workflow_run_audit AS
    SELECT r.id,
           r.workflow_id,
           r.mode,
           r.status,
           r.created_at,
           r.ended_at,
           jsonb_build_object(
             'workflow_id', r.workflow_id,
             'mode', r.mode,
             'subject_id', r.subject_id,
             'resumes_run_id', r.resumes_run_id,
             'requested_by', r.requested_by,
             'source', r.source,
             'action', r.action,
             'state_before', r.state_before,
             'expected_work', r.expected_work, 'pending_at_start', r.pending_work) AS input,
           jsonb_build_object(
             'status', r.status,
             'interactions_completed', r.interactions_completed,
             'interactions_failed', r.interactions_failed,
             'duration_seconds', round(extract(epoch FROM (coalesce(r.ended_at, now()) - coalesce(r.started_at, r.created_at)))::numeric, 3),
             'state_after', r.state_after,
             'delta', r.delta,
             'stopped_by', r.stopped_by,
             'forced_by', r.forced_by,
             'forced_run_id', r.forced_run_id,
             'taken_over_by_run_id', r.taken_over_by_run_id,
             'ended_reason', r.ended_reason,
             'error', r.error ${owners}) AS output
      FROM workflow_runs r`.execute(db);
}
