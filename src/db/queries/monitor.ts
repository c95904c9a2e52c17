import { sql, type Kysely } from 'kysely';
import type pg from 'pg';
import type { EngineTables } from '../schema.ts';

// The health monitor's statements (src/engine/monitor.ts): its own advisory
// lock and the scan for runs whose heartbeat went stale. Run recovery itself
// is recoverRun's (src/engine/recovery.ts), guarded there; claims left by
// ended runs are found and released by src/db/queries/release-claims.ts.

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
