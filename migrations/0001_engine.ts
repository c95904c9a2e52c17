import { sql, type Kysely } from 'kysely';

// The engine's own tables. Domain tables (postings, …) belong to workflows and
// come in their own migrations.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE workflows (
      id          integer PRIMARY KEY,
      name        text NOT NULL UNIQUE,
      description text NOT NULL DEFAULT '',
      definition  jsonb NOT NULL,
      synced_at   timestamptz NOT NULL DEFAULT now()
    )`.execute(db);

  // One row per run; its audit record (docs/architecture.md, Audit) lives in its columns and
  // the workflow_run_audit view shapes it into the seed's JSON.
  await sql`
    CREATE TABLE workflow_runs (
      id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      workflow_id            integer NOT NULL REFERENCES workflows (id),
      mode                   text NOT NULL CHECK (mode IN ('global_batch', 'single_subject', 'single_run')),
      subject_id             bigint,
      resumes_run_id         bigint REFERENCES workflow_runs (id),
      lock_key               bigint NOT NULL,
      status                 text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'stopped', 'abandoned')),
      action                 text NOT NULL CHECK (action IN ('run', 'force', 'resume')),
      requested_by           text NOT NULL,
      source                 text NOT NULL,
      owner_token            uuid,
      owner_instance         text,
      state_before           jsonb,
      expected_work          jsonb,
      state_after            jsonb,
      delta                  jsonb,
      progress               jsonb,
      interactions_completed integer NOT NULL DEFAULT 0,
      interactions_failed    integer NOT NULL DEFAULT 0,
      stop_requested_by      text,
      stop_requested_at      timestamptz,
      stopped_by             text,
      forced_by              text,
      forced_run_id          bigint REFERENCES workflow_runs (id),
      taken_over_by_run_id   bigint REFERENCES workflow_runs (id),
      ended_reason           text,
      error                  text,
      created_at             timestamptz NOT NULL DEFAULT now(),
      started_at             timestamptz,
      heartbeat_at           timestamptz,
      ended_at               timestamptz
    )`.execute(db);
  await sql`CREATE INDEX workflow_runs_active ON workflow_runs (workflow_id) WHERE status IN ('queued', 'running')`.execute(db);
  await sql`CREATE INDEX workflow_runs_history ON workflow_runs (workflow_id, id DESC)`.execute(db);

  // Interactions are the hot table: one row per (run, step, subject). No
  // foreign key to workflow_runs on purpose: its row trigger costs more per
  // claimed row than the rest of the insert, and rows are only ever written by
  // the engine with a run id it just read.
  await sql`
    CREATE TABLE interactions (
      id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      run_id      bigint NOT NULL,
      workflow_id integer NOT NULL,
      step        text NOT NULL,
      subject_id  bigint NOT NULL,
      status      text NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
      parent_id   bigint,
      attempts    integer NOT NULL DEFAULT 0,
      input       jsonb,
      output      jsonb,
      error       text,
      claimed_at  timestamptz NOT NULL DEFAULT now(),
      finished_at timestamptz
    )`.execute(db);
  // The claim key: at most one live (pending or running) interaction per
  // (workflow, step, subject), whichever run or instance holds it. Partial, so
  // finished rows cost it nothing.
  await sql`
    CREATE UNIQUE INDEX interactions_live_key ON interactions (workflow_id, step, subject_id)
      WHERE status IN ('pending', 'running')`.execute(db);
  await sql`CREATE INDEX interactions_run ON interactions (run_id)`.execute(db);
  // Lineage (the upstream step's interaction) and "what happened to subject N".
  await sql`CREATE INDEX interactions_subject ON interactions (workflow_id, subject_id)`.execute(db);

  await sql`
    CREATE TABLE audit_log (
      id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      at          timestamptz NOT NULL DEFAULT now(),
      actor       text NOT NULL,
      source      text NOT NULL,
      action      text NOT NULL,
      outcome     text NOT NULL CHECK (outcome IN ('accepted', 'refused', 'invalid', 'event')),
      workflow_id integer,
      run_id      bigint,
      reason      text,
      details     jsonb NOT NULL DEFAULT '{}'
    )`.execute(db);
  await sql`CREATE INDEX audit_log_run ON audit_log (run_id) WHERE run_id IS NOT NULL`.execute(db);
  await sql`
    CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END $$`.execute(db);
  await sql`
    CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
      FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()`.execute(db);
  await sql`
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
      FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()`.execute(db);

  // The seed's audit JSON per run, so its history query works with only the
  // table name changed.
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
             'expected_work', r.expected_work) AS input,
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
  await sql`DROP VIEW workflow_run_audit`.execute(db);
  await sql`DROP TABLE audit_log, interactions, workflow_runs, workflows`.execute(db);
  await sql`DROP FUNCTION audit_log_append_only()`.execute(db);
}
