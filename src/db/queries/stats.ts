import { sql, type Kysely } from 'kysely';
import { ENDED_RUN_STATUSES, type RunStatus } from '../run-states.ts';
import type { EngineTables } from '../schema.ts';

// Read-only statements for the HTTP server's /healthz and /metrics
// (src/chat/slack/metrics.ts). The chat layer holds no SQL, so they live here
// and reach it through the command layer's Health (src/commands/health.ts),
// on a small pool of their own whose statement_timeout is the scrape's, so a
// slow scrape is cancelled by the server and never holds the commands' pool.
//
// No statement here reads a table that grows with the work done: the figures
// come from counters (each run's recorded progress) and from partial indexes
// over small sets (live interactions, lock-wait refusals, recently ended
// runs), so a scrape costs the same at 3 interactions or 30 million.

type Db = Kysely<EngineTables>;

/** Health: the database answers a trivial statement. */
export async function ping(db: Db): Promise<void> {
  await sql`SELECT 1`.execute(db);
}

export interface ObservabilityStats {
  /** Runs per workflow and status (every run ever recorded; queued included). */
  runs: { workflow_id: number; status: RunStatus; count: number }[];
  /**
   * Interactions per workflow, step and status. `completed` and `failed` are
   * the runs' own counters (each run's progress: final for a run its owner
   * ended, the last heartbeat's for one recovered), so they survive pruning
   * (src/engine/retention.ts) and cost one row per run, not one per
   * interaction; `pending` counts the unfinished rows through the partial
   * index on live interactions; `running` is what running runs have in
   * flight (their last heartbeat's counters): no interaction row exists until
   * its item finishes (migrations/0007_claim_ranges.ts).
   */
  interactions: { workflow_id: number; step: string; status: string; count: number }[];
  /**
   * Run requests refused because the workflow's advisory lock was held
   * (`duplicate`: another run holds it) or being taken or released (`busy`),
   * from the append-only audit log, so the count is the same on every
   * instance and survives restarts.
   */
  lockWaits: { workflow_id: number; reason: 'duplicate' | 'busy'; count: number }[];
  /** The adaptive limit (concurrency: 'auto') of each running run that has one, from its last heartbeat's progress. */
  concurrencyLimits: { workflow_id: number; run_id: number; limit: number }[];
  /** Runs that ended at or after `endedSince` (minus the overlap), with their durations. */
  ended: { id: number; workflow_id: number; status: RunStatus; duration_seconds: number; ended_at_ms: number }[];
}

/**
 * How far before the newest end already seen to look again: a run's ended_at
 * is its ending transaction's start, so a slow commit can make a run visible
 * after a later-stamped one. The caller de-duplicates by run id.
 */
export const ENDED_OVERLAP_SECONDS = 300;

/**
 * Everything /metrics shows from the database, in one statement (one round
 * trip, one pooled connection, one snapshot). Costs: one pass over
 * workflow_runs (a row per run); the pending interactions through the
 * partial index interactions_live_key (the WHERE is its predicate word for
 * word, so the planner can use it); the lock-wait refusals through the
 * partial index audit_log_lock_waits (migrations/0009_retention.ts), whose
 * predicate the WHERE repeats likewise; recent ends through
 * workflow_runs_ended.
 */
export async function observabilityStats(db: Db, endedSince: Date | null): Promise<ObservabilityStats> {
  const since = endedSince ?? new Date(0);
  const { rows } = await sql<ObservabilityStats>`
    SELECT
      (SELECT coalesce(json_agg(r), '[]') FROM (
         SELECT workflow_id, status, count(*)::int AS count
           FROM workflow_runs GROUP BY workflow_id, status) r) AS runs,
      (SELECT coalesce(json_agg(i), '[]') FROM (
         SELECT r.workflow_id, s.key AS step, c.status, sum(c.n)::int AS count
           FROM workflow_runs r
          CROSS JOIN LATERAL jsonb_each(r.progress) s
          CROSS JOIN LATERAL (VALUES ('completed', (s.value->>'done')::int), ('failed', (s.value->>'failed')::int)) c (status, n)
          WHERE jsonb_typeof(r.progress) = 'object'
          GROUP BY r.workflow_id, s.key, c.status
         UNION ALL
         SELECT workflow_id, step, 'pending', count(*)::int
           FROM interactions WHERE status IN ('pending', 'running') GROUP BY workflow_id, step
         UNION ALL
         SELECT r.workflow_id, s.key, 'running', sum((s.value->>'running')::int)::int
           FROM workflow_runs r, jsonb_each(r.progress) s
          WHERE r.status = 'running' AND jsonb_typeof(r.progress) = 'object'
          GROUP BY r.workflow_id, s.key) i) AS interactions,
      (SELECT coalesce(json_agg(w), '[]') FROM (
         SELECT workflow_id, details->>'refusal' AS reason, count(*)::int AS count
           FROM audit_log
          WHERE outcome = 'refused' AND details->>'refusal' IN ('duplicate', 'busy') AND workflow_id IS NOT NULL
          GROUP BY workflow_id, details->>'refusal') w) AS "lockWaits",
      (SELECT coalesce(json_agg(l), '[]') FROM (
         SELECT r.workflow_id, r.id AS run_id, max((s.value->>'limit')::int) AS limit
           FROM workflow_runs r, jsonb_each(r.progress) s
          WHERE r.status = 'running' AND jsonb_typeof(r.progress) = 'object' AND s.value ? 'limit'
          GROUP BY r.workflow_id, r.id) l) AS "concurrencyLimits",
      (SELECT coalesce(json_agg(e), '[]') FROM (
         SELECT id, workflow_id, status,
                extract(epoch FROM ended_at - coalesce(started_at, created_at))::float8 AS duration_seconds,
                (extract(epoch FROM ended_at) * 1000)::float8 AS ended_at_ms
           FROM workflow_runs
          WHERE ended_at IS NOT NULL
            AND status IN (${sql.join(ENDED_RUN_STATUSES.map((s) => sql.lit(s)))})
            AND ended_at >= ${since}::timestamptz - make_interval(secs => ${ENDED_OVERLAP_SECONDS})) e) AS ended`.execute(db);
  return rows[0]!;
}
