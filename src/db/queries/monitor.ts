import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import type { EngineTables } from '../schema.ts';

// The health monitor's statements (src/engine/monitor.ts): its own advisory
// lock, the scan for runs whose heartbeat went stale, and the release of
// orphaned interactions. Run recovery itself is recoverRun's
// (src/engine/recovery.ts), guarded there.

type Db = Kysely<EngineTables>;

/**
 * The monitor's advisory lock key: hashed under our namespace like the run
 * keys (src/db/queries/locks.ts), from a name no workflow id can produce
 * ("workflow-chatops:<number>[:<number>]"), masked to 53 bits for the same
 * round trip through a JavaScript number.
 */
const MONITOR_KEY_SQL = `(hashtextextended('workflow-chatops:monitor', 0) & 9007199254740991::bigint)`;

/** Session-level, on the monitor's own connection: one active monitor per database. */
export async function tryMonitorLock(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${MONITOR_KEY_SQL}) AS ok`);
  return rows[0]!.ok;
}

/**
 * Which connection holds the monitor lock, by its application name
 * (`workflow-monitor:<instance>`), for `workflow health` to say who is active.
 * pg_locks shows a bigint key as two int4 halves (classid high, objid low),
 * and shows every database's locks: advisory keys are per database, so only
 * this database's count.
 */
export async function monitorLockHolder(db: Db): Promise<string | null> {
  const { rows } = await sql<{ application_name: string }>`
    SELECT a.application_name
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.classid = ((${sql.raw(MONITOR_KEY_SQL)} >> 32) & 4294967295)::bigint::oid
       AND l.objid = (${sql.raw(MONITOR_KEY_SQL)} & 4294967295)::bigint::oid
     LIMIT 1`.execute(db);
  return rows[0]?.application_name ?? null;
}

export interface StaleRun {
  id: number;
  workflow_id: number;
  lock_key: number;
  owner_instance: string | null;
  heartbeat_at: Date | null;
  /** Seconds since the last heartbeat (or the start, for a run that never beat). */
  silent_seconds: number;
}

/**
 * Running runs whose heartbeat is older than `staleMs`. Only candidates: the
 * caller tries each run's lock and recovers through recoverRun, whose
 * `status = 'running'` guard leaves a run that ended since this scan alone.
 * `status = 'running'` lets the planner use the partial index on active runs
 * (workflow_runs_active), so the scan never reads the run history.
 */
export async function staleRunningRuns(db: Db, staleMs: number): Promise<StaleRun[]> {
  const { rows } = await sql<StaleRun>`
    SELECT id, workflow_id, lock_key, owner_instance, heartbeat_at,
           extract(epoch FROM now() - coalesce(heartbeat_at, started_at, created_at))::float8 AS silent_seconds
      FROM workflow_runs
     WHERE status = 'running'
       AND coalesce(heartbeat_at, started_at, created_at) < now() - make_interval(secs => ${staleMs / 1000})
     ORDER BY id`.execute(db);
  return rows;
}

/**
 * A recovered run's running interactions, counted while the monitor holds the
 * run's lock (its owner is gone and only recovery moves a running row of an
 * ownerless run), so the count is what recoverRun then releases.
 */
export async function countRunningInteractions(db: Db, runId: number): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM interactions WHERE run_id = ${runId} AND status = 'running'`.execute(db);
  return rows[0]?.n ?? 0;
}

export interface InteractionTimeout {
  workflowId: number;
  /** Claimed longer ago than this = past its timeout (timeoutMs × (retries + 1) + margin). */
  limitMs: number;
  /** Claims (attempts) at which a timed-out orphan is failed instead of returned to pending. */
  maxAttempts: number;
}

export interface ReleasedInteraction {
  id: number;
  run_id: number;
  workflow_id: number;
  step: string;
  subject_id: number;
  attempts: number;
  /** What it became: pending (retried by the next run) or failed. */
  status: 'pending' | 'failed';
}

/**
 * Interactions still `running` long past their workflow's timeout whose run
 * is no longer running (orphans: nothing will ever finish them; a live run's
 * interactions are its runner's business and are never touched here).
 *
 * They go back to `pending`, as recoverRun does for an abandoned run's work:
 * handlers are idempotent and delivery is at-least-once, so the next run (or
 * a resume) adopts them with their attempts carried on. One that has been
 * claimed `maxAttempts` times already is failed instead, with the reason in
 * its error: a subject whose every claim ends with its run gone is likely what
 * kills the run, and a failure is visible where another silent retry is not.
 *
 * One statement: the per-workflow limits come in as arrays (unnest), and the
 * guards (`status = 'running'`, same run id, run not running) are in the
 * UPDATE's own WHERE, so a row that changed since anyone looked is left alone.
 * `status = 'running'` lets the planner use the partial live-key index
 * (interactions_live_key) instead of reading finished history.
 */
export async function releaseOrphanedInteractions(db: Db, limits: InteractionTimeout[]): Promise<ReleasedInteraction[]> {
  if (limits.length === 0) return [];
  const { rows } = await sql<ReleasedInteraction>`
    UPDATE interactions i
       SET status = CASE WHEN i.attempts >= t.max_attempts THEN 'failed' ELSE 'pending' END,
           error = CASE WHEN i.attempts >= t.max_attempts
                        THEN 'timed out: still running ' || round(extract(epoch FROM now() - i.claimed_at)) || ' s after its claim, its run #' || i.run_id || ' ' || r.status || ', after ' || i.attempts || ' claims (health monitor)'
                        ELSE i.error END,
           finished_at = CASE WHEN i.attempts >= t.max_attempts THEN now() ELSE i.finished_at END,
           claimed_at = now()
      FROM unnest(${limits.map((l) => l.workflowId)}::int[], ${limits.map((l) => l.limitMs)}::float8[], ${limits.map((l) => l.maxAttempts)}::int[])
             AS t(workflow_id, limit_ms, max_attempts),
           workflow_runs r
     WHERE i.workflow_id = t.workflow_id
       AND i.status = 'running'
       AND i.claimed_at < now() - make_interval(secs => t.limit_ms / 1000)
       AND r.id = i.run_id
       AND r.status <> 'running'
    RETURNING i.id, i.run_id, i.workflow_id, i.step, i.subject_id, i.attempts, i.status`.execute(db);
  return rows;
}
