import { sql, type Kysely } from 'kysely';

// What a run's audit says about its start, for people reading it:
// - expected_work becomes the forecast per step (a subject pending at step 1
//   is expected at every later step of the pipeline), and pending_work keeps
//   what each step had pending when the run started, so the audit holds both;
// - metric_names keeps the order the workflow's metrics query declares them
//   in, which the jsonb of state_before and delta does not (jsonb orders keys
//   by length, then bytes);
// - a partial index finds a run's failed interactions (the thread reply under
//   its message lists them) without reading the run's other rows; only failed
//   rows pay its index write.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE workflow_runs ADD COLUMN pending_work jsonb, ADD COLUMN metric_names text[]`.execute(db);
  await sql`CREATE INDEX interactions_run_failed ON interactions (run_id, id) WHERE status = 'failed'`.execute(db);
  await sql`
    CREATE OR REPLACE VIEW workflow_run_audit AS
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
             'expected_work', r.expected_work,
             'pending_at_start', r.pending_work) AS input,
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
             'error', r.error) AS output
      FROM workflow_runs r`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE OR REPLACE VIEW workflow_run_audit AS
    SELECT r.id, r.workflow_id, r.mode, r.status, r.created_at, r.ended_at,
           jsonb_build_object(
             'workflow_id', r.workflow_id, 'mode', r.mode, 'subject_id', r.subject_id, 'resumes_run_id', r.resumes_run_id,
             'requested_by', r.requested_by, 'source', r.source, 'action', r.action,
             'state_before', r.state_before, 'expected_work', r.expected_work) AS input,
           jsonb_build_object(
             'status', r.status, 'interactions_completed', r.interactions_completed, 'interactions_failed', r.interactions_failed,
             'duration_seconds', round(extract(epoch FROM (coalesce(r.ended_at, now()) - coalesce(r.started_at, r.created_at)))::numeric, 3),
             'state_after', r.state_after, 'delta', r.delta, 'stopped_by', r.stopped_by, 'forced_by', r.forced_by,
             'forced_run_id', r.forced_run_id, 'taken_over_by_run_id', r.taken_over_by_run_id,
             'ended_reason', r.ended_reason, 'error', r.error) AS output
      FROM workflow_runs r`.execute(db);
  await sql`DROP INDEX interactions_run_failed`.execute(db);
  await sql`ALTER TABLE workflow_runs DROP COLUMN pending_work, DROP COLUMN metric_names`.execute(db);
}
