import { sql, type Kysely } from 'kysely';

// Claims become ranges of subjects, and an interaction row is written once,
// when its item finishes (bench/RESULTS.md).
//
// Before: a claim was one `running` interactions row per subject (INSERT …
// ON CONFLICT on a partial unique "live" key), completed by an UPDATE that
// could never be HOT (status is in every partial index). Two row versions and
// five index entries per item, plus the domain write: the no-op benchmark was
// bound by them, level with graphile-worker, which writes less and keeps
// nothing.
//
// Now a run claims a page of a step's pending subjects as ONE row here: the
// range [first, last] of the page's subject ids. The exclusion constraint is
// the claim key: no two live claims of one (workflow, step) overlap, whichever
// run or instance holds them, so no subject is handed to two runs at once
// (docs/architecture.md, Claims). A single_subject run claims [id, id]. The claim is
// deleted in the transaction that commits the last result of its page (or
// when its run ends); interactions then get one INSERT per item, in the
// transaction that commits the item's result.
//
// btree_gist gives `=` on integer and text inside a GiST exclusion constraint;
// it ships with PostgreSQL's contrib modules and is a trusted extension
// (PostgreSQL 13+), so a database owner may create it.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE EXTENSION IF NOT EXISTS btree_gist`.execute(db);
  await sql`
    CREATE TABLE interaction_claims (
      id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      run_id      bigint NOT NULL,
      workflow_id integer NOT NULL,
      step        text NOT NULL,
      subjects    int8range NOT NULL CHECK (NOT isempty(subjects)),
      claimed_at  timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT interaction_claims_no_overlap EXCLUDE USING gist (workflow_id WITH =, step WITH =, subjects WITH &&)
    )`.execute(db);
  // Releasing a run's claims (stop, end, recovery) and the monitor's sweep for
  // claims whose run has ended.
  await sql`CREATE INDEX interaction_claims_run ON interaction_claims (run_id)`.execute(db);

  // No interaction is `running` any more: work in flight is the claims'.
  // Rows the previous engine left running (its runs are gone by the time this
  // migrates) are unfinished work, i.e. pending; the old live key allowed at
  // most one live row per (workflow, step, subject), so the new pending key
  // holds.
  await sql`UPDATE interactions SET status = 'pending' WHERE status = 'running'`.execute(db);
  await sql`DROP INDEX interactions_live_key`.execute(db);
  await sql`DROP INDEX interactions_run_live`.execute(db);
  await sql`DROP INDEX interactions_subject_completed`.execute(db);
  await sql`ALTER TABLE interactions DROP CONSTRAINT interactions_status_check`.execute(db);
  await sql`ALTER TABLE interactions ADD CONSTRAINT interactions_status_check CHECK (status IN ('pending', 'completed', 'failed'))`.execute(db);
  // Unfinished work a stopped or lost run left behind: at most one row per
  // (workflow, step, subject); the next run that processes the subject adopts
  // it (its attempts carry on). Rows are rarely pending, so the index is tiny
  // and finished rows never enter it.
  await sql`
    CREATE UNIQUE INDEX interactions_pending_key ON interactions (workflow_id, step, subject_id)
      WHERE status = 'pending'`.execute(db);
  // Lineage (the upstream step's latest completed interaction), a lost run's
  // failures when its claims are released, and "what happened to subject N".
  // Not partial: rows are inserted finished and never change these columns.
  await sql`CREATE INDEX interactions_subject ON interactions (workflow_id, subject_id, step)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX interactions_subject`.execute(db);
  await sql`DROP INDEX interactions_pending_key`.execute(db);
  await sql`ALTER TABLE interactions DROP CONSTRAINT interactions_status_check`.execute(db);
  await sql`ALTER TABLE interactions ADD CONSTRAINT interactions_status_check CHECK (status IN ('pending', 'running', 'completed', 'failed'))`.execute(db);
  await sql`CREATE INDEX interactions_subject_completed ON interactions (workflow_id, subject_id, step) WHERE status = 'completed'`.execute(db);
  await sql`CREATE INDEX interactions_run_live ON interactions (run_id) WHERE status IN ('pending', 'running')`.execute(db);
  await sql`
    CREATE UNIQUE INDEX interactions_live_key ON interactions (workflow_id, step, subject_id)
      WHERE status IN ('pending', 'running')`.execute(db);
  await sql`DROP TABLE interaction_claims`.execute(db);
}
