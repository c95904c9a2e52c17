import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import type pg from 'pg';
import type { OwnerRecord, OwnershipEnding } from '../run-states.ts';
import type { EngineTables, RunProgress, RunRow } from '../schema.ts';
import type { Fence, RunOwner } from './runs.ts';

// Adoption (docs/architecture.md, Adoption): the statements a serving
// instance uses to find runs whose owner is gone and to take them over, and
// the ones an owner uses to hand its run off or to mark the item it is about
// to start in careful mode.

type Db = Kysely<EngineTables>;

const SAFE_INTEGER_MASK = '9007199254740991';

/**
 * The presence key of a workflow's adopters: every serving instance that
 * defines the workflow (and lets it be adopted) holds it in shared mode on
 * its adopter session, so anyone can tell from pg_locks whether a lost run
 * will be adopted. "adopter" is no workflow id, so the key cannot be a run's
 * ("workflow-chatops:<id>[:<subject>]", src/db/queries/locks.ts).
 */
function adopterKeySql(workflowId: number) {
  return sql<number>`(hashtextextended(${`workflow-chatops:adopter:${workflowId}`}, 0) & ${sql.raw(SAFE_INTEGER_MASK)}::bigint)`;
}

/** pg_locks shows a bigint key as two int4 halves; only this database's locks count. */
function heldAdvisory(key: RawBuilder<number> | ReturnType<typeof sql.ref>) {
  return sql`EXISTS (SELECT 1 FROM pg_locks l
                      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                        AND l.classid = ((${key} >> 32) & 4294967295)::bigint::oid
                        AND l.objid = (${key} & 4294967295)::bigint::oid)`;
}

/** Takes the presence locks (shared: every adopter holds them at once) on the adopter's own session. */
export async function holdAdopterLocks(client: pg.ClientBase, workflowIds: number[]): Promise<void> {
  for (const id of workflowIds) {
    await client.query(`SELECT pg_advisory_lock_shared(hashtextextended($1, 0) & ${SAFE_INTEGER_MASK}::bigint)`, [`workflow-chatops:adopter:${id}`]);
  }
}

/** Whether some serving instance will adopt a lost run of this workflow. */
export async function adopterPresent<DB>(db: Kysely<DB>, workflowId: number): Promise<boolean> {
  const { rows } = await sql<{ present: boolean }>`SELECT ${heldAdvisory(adopterKeySql(workflowId))} AS present`.execute(db);
  return rows[0]?.present ?? false;
}

/**
 * Whether the database server restarted under this run: it started less than
 * `seconds` ago, after the run's last heartbeat. A restart ends every session
 * at once, owners, adopters and their presence locks, all reconnecting with
 * their backoff: a free run lock then says nothing of its owner, and no
 * presence lock nothing of the adopters. A run started since is judged as
 * usual.
 */
export async function restartedUnder<DB>(db: Kysely<DB>, run: { heartbeat_at: Date | string | null }, seconds: number): Promise<boolean> {
  const { rows } = await sql<{ recent: boolean }>`
    SELECT pg_postmaster_start_time() > now() - make_interval(secs => ${seconds})
       AND coalesce(${run.heartbeat_at}::timestamptz, '-infinity') < pg_postmaster_start_time() AS recent`.execute(db);
  return rows[0]?.recent ?? false;
}

/**
 * Running runs of these workflows whose lock nobody holds: their owner is
 * gone or released them. Why this shape: one statement every second per
 * serving instance, so it takes no lock and opens no connection; it reads
 * the active runs through their partial index (workflow_runs_active) and
 * pg_locks, which is not transactional: a run that ends while this runs can
 * show up, and taking its lock then finds it ended (takeOver re-reads it FOR
 * UPDATE under the lock).
 */
export async function ownerlessRuns(db: Db, workflowIds: number[]): Promise<{ id: number; workflow_id: number; lock_key: number }[]> {
  if (workflowIds.length === 0) return [];
  const { rows } = await sql<{ id: number; workflow_id: number; lock_key: number }>`
    SELECT r.id, r.workflow_id, r.lock_key FROM workflow_runs r
     WHERE r.status = 'running' AND r.workflow_id = ANY(${workflowIds}::int[])
       AND NOT ${heldAdvisory(sql.ref('r.lock_key'))}
     ORDER BY r.id`.execute(db);
  return rows;
}

/** The run row, locked against its old owner's fenced writes (they take FOR KEY SHARE), while it is still running. */
export async function lockRunningRun(tx: Transaction<EngineTables>, runId: number): Promise<RunRow | undefined> {
  return tx.selectFrom('workflow_runs').selectAll().where('id', '=', runId).where('status', '=', 'running').forUpdate().executeTakeFirst();
}

/**
 * What a run has finished, per step, counted from its interactions: the
 * true totals whoever owned it (a pending row a run left and a later run
 * completed belongs to the later run). Read through interactions_run; its
 * cost grows with the run, so it is read when a run changes hands or ends
 * without its owner, never per item.
 */
export async function runTotals<DB>(db: Kysely<DB>, runId: number): Promise<RunProgress> {
  const { rows } = await sql<{ step: string; done: number; failed: number }>`
    SELECT step, count(*) FILTER (WHERE status = 'completed')::int AS done, count(*) FILTER (WHERE status = 'failed')::int AS failed
      FROM interactions WHERE run_id = ${runId} AND status IN ('completed', 'failed')
     GROUP BY step`.execute(db);
  const progress: RunProgress = {};
  for (const row of rows) progress[row.step] = { done: row.done, failed: row.failed, running: 0 };
  return progress;
}

/**
 * Subjects that failed in the run, per step: its next owner, a participant,
 * and every runner of a distributed run at each wave do not claim them
 * again. Read through interactions_run_failed (failed rows only), so its
 * cost is the run's failures, not its size.
 */
export async function failedSubjects(db: Kysely<EngineTables>, runId: number): Promise<Record<string, number[]>> {
  const { rows } = await sql<{ step: string; subjects: number[] }>`
    SELECT step, array_agg(subject_id ORDER BY subject_id) AS subjects
      FROM interactions WHERE run_id = ${runId} AND status = 'failed' GROUP BY step`.execute(db);
  return Object.fromEntries(rows.map((r) => [r.step, r.subjects.map(Number)]));
}

/** The ranges a lost owner held, lowest first, to say what it had in flight. */
export async function heldClaims(tx: Transaction<EngineTables>, runId: number): Promise<{ step: string; first: number; last: number }[]> {
  const { rows } = await sql<{ step: string; first: number; last: number }>`
    SELECT step, lower(subjects) AS first, upper(subjects) - 1 AS last
      FROM interaction_claims WHERE run_id = ${runId} ORDER BY step, lower(subjects)`.execute(tx);
  return rows;
}

/** The fence moves to the new owner: from this commit on, every write of an earlier owner matches nothing. */
export async function transferOwnership(
  tx: Transaction<EngineTables>,
  runId: number,
  owner: RunOwner,
  values: { owners: OwnerRecord[]; progress: RunProgress },
): Promise<RunRow> {
  return tx
    .updateTable('workflow_runs')
    .set({
      owner_token: owner.token,
      owner_instance: owner.instance,
      owner_slots: owner.slots,
      owners: JSON.stringify(values.owners),
      progress: JSON.stringify(values.progress),
      in_flight: null,
      heartbeat_at: sql`now()`,
    })
    .where('id', '=', runId)
    .where('status', '=', 'running')
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** The last entry of `owners` closed with how its tenure ended, unless an adopter closed it already. */
export function closeLastOwner(ended: OwnershipEnding) {
  return sql<string>`CASE WHEN jsonb_array_length(owners) = 0 OR (owners -> -1) ->> 'until' IS NOT NULL THEN owners
    ELSE jsonb_set(owners, ARRAY[(jsonb_array_length(owners) - 1)::text], (owners -> -1) || jsonb_build_object('until', now(), 'ended', ${ended}::text)) END`;
}

/** A run's first owner: the one that starts it. */
export function firstOwner(instance: string) {
  return sql<string>`jsonb_build_array(jsonb_build_object('instance', ${instance}::text, 'reason', 'start', 'since', now(),
    'interactions_at_start', 0, 'no_progress', 0))`;
}

/**
 * The owner hands its run off (graceful shutdown): the fence is cleared, so
 * nothing of this owner is written any more, and the run stays `running`
 * for an adopter, which finds its lock free once this owner closes its lock
 * connection. The caller has written its unfinished items as pending and
 * ended its claims in this transaction (leaveUnfinished).
 */
export async function releaseRun(tx: Transaction<EngineTables>, fence: Fence, progress: RunProgress): Promise<RunRow | undefined> {
  return tx
    .updateTable('workflow_runs')
    .set({
      owner_token: null,
      in_flight: null,
      progress: JSON.stringify(progress),
      heartbeat_at: sql`now()`,
      owners: closeLastOwner('handoff'),
    })
    .where('id', '=', fence.runId)
    .where('owner_token', '=', fence.ownerToken)
    .where('status', '=', 'running')
    .returningAll()
    .executeTakeFirst();
}

/**
 * Careful mode: the item about to start, written (fenced) before its handler
 * is called, with the progress so far, so that if the handler kills the
 * process the next adopter knows which subject did it. False: fenced.
 */
export async function markInFlight(db: Db, fence: Fence, item: { step: string; subject: number }, progress: RunProgress): Promise<boolean> {
  const result = await db
    .updateTable('workflow_runs')
    .set({ in_flight: JSON.stringify(item), progress: JSON.stringify(progress), heartbeat_at: sql`now()` })
    .where('id', '=', fence.runId)
    .where('owner_token', '=', fence.ownerToken)
    .where('status', '=', 'running')
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}
