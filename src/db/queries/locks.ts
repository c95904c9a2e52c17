import { sql, type Kysely } from 'kysely';
import type pg from 'pg';

// Advisory lock keys. One per (workflow) for batch runs and per (workflow,
// subject) for single-subject runs, hashed under our own namespace so they do
// not collide with other applications' advisory locks on the same database.
// Computed in SQL so every process derives the same key, and masked to 53
// bits so the key survives a round trip through a JavaScript number.
const SAFE_INTEGER_MASK = '9007199254740991';

export function lockKeySql(workflowId: number, subjectId: number | null) {
  const name = subjectId === null ? `workflow-chatops:${workflowId}` : `workflow-chatops:${workflowId}:${subjectId}`;
  return sql<number>`(hashtextextended(${name}, 0) & ${SAFE_INTEGER_MASK}::bigint)`;
}

export async function computeLockKey<DB>(db: Kysely<DB>, workflowId: number, subjectId: number | null): Promise<number> {
  const { rows } = await sql<{ key: number }>`SELECT ${lockKeySql(workflowId, subjectId)} AS key`.execute(db);
  return rows[0]!.key;
}

/** Session-level: held until released or the connection ends. */
export async function tryAdvisoryLock(client: pg.ClientBase, key: number): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [key]);
  return rows[0]!.ok;
}

/**
 * Waits for the lock at most `timeoutMs` (lock_timeout), without polling.
 * Returns false on timeout.
 */
export async function waitAdvisoryLock(client: pg.ClientBase, key: number, timeoutMs: number): Promise<boolean> {
  await client.query(`SET lock_timeout = ${Math.max(1, Math.floor(timeoutMs))}`);
  try {
    await client.query('SELECT pg_advisory_lock($1::bigint)', [key]);
    return true;
  } catch (error) {
    if ((error as { code?: string }).code === '55P03') return false; // lock_not_available
    throw error;
  } finally {
    await client.query('RESET lock_timeout').catch(() => {});
  }
}

export async function advisoryUnlock(client: pg.ClientBase, key: number): Promise<void> {
  await client.query('SELECT pg_advisory_unlock($1::bigint)', [key]);
}

/**
 * The backend pid holding the lock, if any. A bigint key shows in pg_locks
 * split in two int4 halves. Advisory locks belong to a database: without the
 * database filter, force could terminate another database's backend that
 * happens to hold the same key on a shared server.
 */
export async function lockHolderPid<DB>(db: Kysely<DB>, key: number): Promise<number | null> {
  const { rows } = await sql<{ pid: number }>`
    SELECT pid FROM pg_locks
     WHERE locktype = 'advisory' AND granted AND objsubid = 1
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND classid = ((${key}::bigint >> 32) & 4294967295)::bigint::oid
       AND objid = (${key}::bigint & 4294967295)::bigint::oid
     LIMIT 1`.execute(db);
  return rows[0]?.pid ?? null;
}

/**
 * Ends every backend of a run's owner: its lock connection and the connections
 * its writes go through. Used by force after the grace period, so that a hung
 * owner's open transactions roll back and release the row locks they hold.
 * Only this database's: run ids are per database, so `workflow-run:1` of
 * another database on the same server (staging beside production) is
 * another run altogether.
 */
export async function terminateBackends<DB>(db: Kysely<DB>, options: { pid: number | null; applicationName: string }): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
     WHERE pid <> pg_backend_pid() AND datname = current_database()
       AND (pid = ${options.pid} OR application_name = ${options.applicationName})`.execute(db);
  return rows[0]?.n ?? 0;
}
