import { sql, type Kysely } from 'kysely';

// Indexes for what must not cost a scan of a table that grows forever:
// retention's search for old ended runs and old button clicks
// (src/db/queries/prune.ts), and the /metrics figures
// (src/db/queries/stats.ts), which now read counters and small sets only.
export async function up(db: Kysely<unknown>): Promise<void> {
  // Ended runs by age: retention walks the old ones, /metrics the recent ones.
  await sql`CREATE INDEX IF NOT EXISTS workflow_runs_ended ON workflow_runs (ended_at, id) WHERE ended_at IS NOT NULL`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS handled_actions_age ON handled_actions (handled_at)`.execute(db);
  // Run requests refused at the lock, counted by /metrics: the refusals only,
  // never the whole append-only log. The predicate is the query's, word for word.
  await sql`
    CREATE INDEX IF NOT EXISTS audit_log_lock_waits ON audit_log (workflow_id, (details->>'refusal'))
      WHERE outcome = 'refused' AND details->>'refusal' IN ('duplicate', 'busy') AND workflow_id IS NOT NULL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX IF EXISTS audit_log_lock_waits, handled_actions_age, workflow_runs_ended`.execute(db);
}
