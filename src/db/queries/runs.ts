import { sql, type Kysely, type Transaction } from 'kysely';
import { ACTIVE_RUN_STATUSES, type OwnerEnding, type QueueEnding, type RecoveryEnding, type RunAction } from '../run-states.ts';
import type { EngineTables, ExpectedWork, Metrics, RunMode, RunProgress, RunRow } from '../schema.ts';
import { closeLastOwner, firstOwner } from './adoption.ts';

// Every statement on workflow_runs. Writes made by a run's owner carry its
// owner token and `status = 'running'` in the WHERE (docs/architecture.md, Fencing):
// once a run has been taken over or recovered, its old owner's writes match
// nothing.

type Db = Kysely<EngineTables>;

export interface Fence {
  runId: number;
  ownerToken: string;
}

export interface NewRunValues {
  workflowId: number;
  mode: RunMode;
  subjectId: number | null;
  resumesRunId: number | null;
  lockKey: number;
  action: RunAction;
  requestedBy: string;
  source: string;
  forcedBy: string | null;
  forcedRunId: number | null;
  notifyChannel: string | null;
}

function newRunRow(values: NewRunValues) {
  return {
    workflow_id: values.workflowId,
    mode: values.mode,
    subject_id: values.subjectId,
    resumes_run_id: values.resumesRunId,
    lock_key: values.lockKey,
    action: values.action,
    requested_by: values.requestedBy,
    source: values.source,
    forced_by: values.forcedBy,
    forced_run_id: values.forcedRunId,
    notify_channel: values.notifyChannel,
  };
}

/** Who owns a running run: its fence token, its instance, and the handler calls it may have in flight at once. */
export interface RunOwner {
  token: string;
  instance: string;
  /** Counted by joiners towards the workflow's runConcurrency (migrations/0034_run_owner_slots.ts). */
  slots: number;
}

/** A run that starts now, in this process, which holds its lock. */
export async function insertRunningRun(db: Db, values: NewRunValues, owner: RunOwner): Promise<RunRow> {
  return db
    .insertInto('workflow_runs')
    .values({
      ...newRunRow(values),
      status: 'running',
      owner_token: owner.token,
      owner_instance: owner.instance,
      owner_slots: owner.slots,
      owners: firstOwner(owner.instance),
      started_at: sql`now()`,
      heartbeat_at: sql`now()`,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** A run handed to a serving instance (`run --detach`); it has no owner yet. */
export async function insertQueuedRun(db: Db, values: NewRunValues): Promise<RunRow> {
  return db
    .insertInto('workflow_runs')
    .values({ ...newRunRow(values), status: 'queued' })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/**
 * A serving instance takes the oldest queued run by writing its name on it;
 * SKIP LOCKED lets several instances race for the queue without waiting.
 */
export async function takeQueuedRun(db: Db, instance: string): Promise<RunRow | undefined> {
  return db
    .updateTable('workflow_runs')
    .set({ owner_instance: instance })
    .where('id', '=', (eb) =>
      eb
        .selectFrom('workflow_runs')
        .select('id')
        .where('status', '=', 'queued')
        .where('owner_instance', 'is', null)
        .orderBy('id')
        .limit(1)
        .forUpdate()
        .skipLocked(),
    )
    .where('owner_instance', 'is', null)
    .returningAll()
    .executeTakeFirst();
}

/** A queued run becomes this process's running run. */
export async function startQueuedRun(db: Db, runId: number, lockKey: number, owner: RunOwner): Promise<RunRow | undefined> {
  return db
    .updateTable('workflow_runs')
    .set({
      status: 'running',
      lock_key: lockKey,
      owner_token: owner.token,
      owner_instance: owner.instance,
      owner_slots: owner.slots,
      owners: firstOwner(owner.instance),
      started_at: sql`now()`,
      heartbeat_at: sql`now()`,
    })
    .where('id', '=', runId)
    .where('status', '=', 'queued')
    .where('owner_instance', '=', owner.instance)
    .returningAll()
    .executeTakeFirst();
}

/** A queued run that will not start: `message` says why (the error column). */
export async function refuseQueuedRun(db: Db, runId: number, message: string): Promise<void> {
  const ending: QueueEnding = { status: 'failed', reason: 'refused' };
  await db
    .updateTable('workflow_runs')
    .set({ status: ending.status, ended_reason: ending.reason, error: message, ended_at: sql`now()` })
    .where('id', '=', runId)
    .where('status', '=', 'queued')
    .execute();
}

/** The state a run starts from: metrics (with their declared order), the forecast per step and what was pending. */
export async function recordStartState(
  db: Db,
  fence: Fence,
  start: { stateBefore: Metrics; expectedWork: ExpectedWork; pendingWork: ExpectedWork },
): Promise<boolean> {
  const result = await db
    .updateTable('workflow_runs')
    .set({
      state_before: JSON.stringify(start.stateBefore),
      expected_work: JSON.stringify(start.expectedWork),
      pending_work: JSON.stringify(start.pendingWork),
      metric_names: Object.keys(start.stateBefore),
    })
    .where('id', '=', fence.runId)
    .where('owner_token', '=', fence.ownerToken)
    .where('status', '=', 'running')
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/**
 * The heartbeat also carries the progress counters (the runner's own, never a
 * scan of domain tables) and returns a pending stop request, so a stop whose
 * NOTIFY was missed still arrives within one heartbeat. No row back = fenced.
 */
export async function heartbeat(db: Db, fence: Fence, progress: RunProgress): Promise<{ stopRequestedBy: string | null } | undefined> {
  const row = await db
    .updateTable('workflow_runs')
    .set({ heartbeat_at: sql`now()`, progress: JSON.stringify(progress) })
    .where('id', '=', fence.runId)
    .where('owner_token', '=', fence.ownerToken)
    .where('status', '=', 'running')
    .returning('stop_requested_by')
    .executeTakeFirst();
  return row && { stopRequestedBy: row.stop_requested_by };
}

export interface RunEnding {
  ending: OwnerEnding;
  stateAfter: Metrics | null;
  delta: Metrics | null;
  completed: number;
  failed: number;
  progress: RunProgress;
  error: string | null;
}

/** The owner ends its run. Stopped-by comes from the stop request, written by whoever asked. */
export async function endRun(tx: Transaction<EngineTables>, fence: Fence, ending: RunEnding): Promise<RunRow | undefined> {
  return tx
    .updateTable('workflow_runs')
    .set({
      status: ending.ending.status,
      state_after: ending.stateAfter === null ? null : JSON.stringify(ending.stateAfter),
      delta: ending.delta === null ? null : JSON.stringify(ending.delta),
      interactions_completed: ending.completed,
      interactions_failed: ending.failed,
      progress: JSON.stringify(ending.progress),
      stopped_by: ending.ending.status === 'stopped' ? sql`stop_requested_by` : null,
      ended_reason: ending.ending.reason,
      error: ending.error,
      ended_at: sql`now()`,
      heartbeat_at: sql`now()`,
      in_flight: null,
      owners: closeLastOwner('ended'),
    })
    .where('id', '=', fence.runId)
    .where('owner_token', '=', fence.ownerToken)
    .where('status', '=', 'running')
    .returningAll()
    .executeTakeFirst();
}

/**
 * The fence at the head of an owner's write transaction: locks the run row
 * while the run is still ours. FOR KEY SHARE, the weakest row lock, because
 * it must not queue the heartbeat's and stop request's UPDATEs behind every
 * batch; it conflicts only with the FOR UPDATE that recovery and force take
 * before ending a run (endRunWithoutOwner), which is the one it must order.
 */
export async function lockOwnedRun(tx: Transaction<EngineTables>, fence: Fence): Promise<boolean> {
  const row = await tx
    .selectFrom('workflow_runs')
    .select('id')
    .where('id', '=', fence.runId)
    .where('owner_token', '=', fence.ownerToken)
    .where('status', '=', 'running')
    .forKeyShare()
    .executeTakeFirst();
  return row !== undefined;
}

export async function requestStop(db: Db, runId: number, by: string, notice: { channel: string; payload: object }): Promise<RunRow | undefined> {
  // The flag and the NOTIFY in one statement: the owner and every participant
  // hear of the stop one round trip sooner, which under load was up to a
  // quarter of a second (bench/participant-stop.ts). The NOTIFY is sent only
  // if the run was running, and delivered at the flag's commit.
  const { rows } = await sql<RunRow>`
    WITH flagged AS (
      UPDATE workflow_runs
         SET stop_requested_by = coalesce(stop_requested_by, ${by}), stop_requested_at = coalesce(stop_requested_at, now())
       WHERE id = ${runId} AND status = 'running'
      RETURNING *
    )
    SELECT flagged.* FROM flagged, LATERAL (SELECT pg_notify(${notice.channel}, ${JSON.stringify(notice.payload)})) AS sent`.execute(db);
  return rows[0];
}

/** What a run ended without its owner did in all (counted from its interactions) and the state it left. */
export interface RecoveredTotals {
  completed: number;
  failed: number;
  progress: RunProgress;
  /** Null when the recovering process does not define the workflow (no metrics query here). */
  stateAfter: Metrics | null;
  delta: Metrics | null;
}

/**
 * Ends a run on behalf of an owner that is gone (abandoned) or was forced out
 * (stopped), with its true totals. Only a row still `running` matches, so a
 * run that just finished on its own is never touched.
 */
export async function endRunWithoutOwner(
  tx: Transaction<EngineTables>,
  runId: number,
  ending: RecoveryEnding & { stoppedBy: string | null; takenOverByRunId?: number | null; error?: string | null },
  totals?: RecoveredTotals,
): Promise<RunRow | undefined> {
  return (
    tx
      .updateTable('workflow_runs')
      .set({
        status: ending.status,
        stopped_by: ending.stoppedBy,
        ended_reason: ending.reason,
        taken_over_by_run_id: ending.takenOverByRunId ?? null,
        ended_at: sql`now()`,
        in_flight: null,
        owners: closeLastOwner('recovered'),
        ...(ending.error ? { error: ending.error } : {}),
        ...(totals
          ? {
              interactions_completed: totals.completed,
              interactions_failed: totals.failed,
              progress: JSON.stringify(totals.progress),
              state_after: totals.stateAfter === null ? null : JSON.stringify(totals.stateAfter),
              delta: totals.delta === null ? null : JSON.stringify(totals.delta),
            }
          : {}),
      })
      // FOR UPDATE first: waits for the owner's fenced transactions (FOR KEY
      // SHARE) in flight, and makes every later one find the run ended.
      .where('id', '=', (eb) => eb.selectFrom('workflow_runs').select('id').where('id', '=', runId).where('status', '=', 'running').forUpdate())
      .where('status', '=', 'running')
      .returningAll()
      .executeTakeFirst()
  );
}

export async function setTakenOverBy(db: Db, runId: number, byRunId: number): Promise<void> {
  await db.updateTable('workflow_runs').set({ taken_over_by_run_id: byRunId }).where('id', '=', runId).execute();
}

export async function getRun(db: Db, runId: number): Promise<RunRow | undefined> {
  return db.selectFrom('workflow_runs').selectAll().where('id', '=', runId).executeTakeFirst();
}

export async function runningRunWithLockKey(db: Db, lockKey: number): Promise<RunRow | undefined> {
  return db.selectFrom('workflow_runs').selectAll().where('lock_key', '=', lockKey).where('status', '=', 'running').orderBy('id', 'desc').executeTakeFirst();
}

export async function activeRuns(db: Db): Promise<RunRow[]> {
  return db.selectFrom('workflow_runs').selectAll().where('status', 'in', ACTIVE_RUN_STATUSES).orderBy('id').execute();
}

/** The latest global_batch start of a workflow, for the rate limit. */
export async function lastBatchStart(db: Db, workflowId: number): Promise<Date | null> {
  const row = await db
    .selectFrom('workflow_runs')
    .select((eb) => eb.fn.max('started_at').as('at'))
    .where('workflow_id', '=', workflowId)
    .where('mode', '=', 'global_batch')
    .executeTakeFirst();
  return row?.at ? new Date(row.at as unknown as string) : null;
}

export async function runHistory(db: Db, options: { workflowId?: number; limit: number }): Promise<RunRow[]> {
  let query = db.selectFrom('workflow_runs').selectAll().orderBy('id', 'desc').limit(options.limit);
  if (options.workflowId !== undefined) query = query.where('workflow_id', '=', options.workflowId);
  return query.execute();
}
