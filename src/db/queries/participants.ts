import { sql, type Kysely, type Transaction } from 'kysely';
import type { EngineTables, RunProgress } from '../schema.ts';
import { fenceCte, type WorkFence } from './fence.ts';

// Participants (docs/architecture.md, Participants): serving instances that
// work on a running run besides its owner. Each has a row in
// run_participants (migrations/0022_run_participants.ts) whose token is its
// fence; these are the statements that join, beat, leave and fence.

type Db = Kysely<EngineTables>;

export interface JoinableRun {
  id: number;
  workflow_id: number;
}

/**
 * Running batches of these workflows that another instance owns and this
 * one is not working on. Why this shape: read every second by every serving
 * instance, so one statement over the active runs' partial index, no lock.
 * A run without an owner (handed off, lost) is the adopters' first.
 */
export async function joinableRuns(db: Db, workflowIds: number[], instance: string): Promise<JoinableRun[]> {
  if (workflowIds.length === 0) return [];
  const { rows } = await sql<JoinableRun>`
    SELECT r.id, r.workflow_id FROM workflow_runs r
     WHERE r.status = 'running' AND r.workflow_id = ANY(${workflowIds}::int[])
       AND r.subject_id IS NULL AND r.owner_token IS NOT NULL AND r.stop_requested_by IS NULL
       AND r.owner_instance IS DISTINCT FROM ${instance}
     ORDER BY r.id`.execute(db);
  return rows;
}

/**
 * Joins a run as a participant with `slots` handler calls in flight at most;
 * returns its ordinal among the run's participants (1 for the first).
 * Refused (null) when the run is no longer running with an owner, is being
 * stopped, or when `cap` (the workflow's runConcurrency) would be exceeded by
 * the owner's slots (as the run row has them; `ownerSlots` only for a run
 * started before migrations/0034), the active participants' and these. Joins of one run
 * are serialised by a transaction-scoped advisory lock, so two joiners do
 * not both fit under the cap.
 */
export async function joinRun(
  db: Db,
  join: { runId: number; token: string; instance: string; slots: number; ownerSlots: number; cap: number | null },
): Promise<number | null> {
  return db.transaction().execute(async (tx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`workflow-chatops:join:${join.runId}`}, 0))`.execute(tx);
    const cap =
      join.cap === null
        ? sql`true`
        : sql`coalesce(r.owner_slots, ${join.ownerSlots}::int) + ${join.slots}::int + coalesce((SELECT sum(slots) FROM run_participants
                  WHERE run_id = r.id AND left_at IS NULL AND fenced_at IS NULL), 0) <= ${join.cap}::int`;
    // The statement's snapshot does not see its own row: the count is of the participants before this one.
    const { rows } = await sql<{ earlier: number }>`
      INSERT INTO run_participants (run_id, token, instance, slots)
      SELECT r.id, ${join.token}::uuid, ${join.instance}, ${join.slots} FROM workflow_runs r
       WHERE r.id = ${join.runId} AND r.status = 'running' AND r.owner_token IS NOT NULL AND r.stop_requested_by IS NULL AND ${cap}
      RETURNING (SELECT count(*) FROM run_participants WHERE run_id = ${join.runId})::int AS earlier`.execute(tx);
    return rows[0] ? rows[0].earlier + 1 : null;
  });
}

/** A participant's heartbeat: its progress on its own row; back comes the run's stop flag, or undefined when fenced. */
export async function participantHeartbeat(db: Db, fence: WorkFence, progress: RunProgress): Promise<{ stopRequestedBy: string | null } | undefined> {
  const { rows } = await sql<{ stop_requested_by: string | null }>`
    UPDATE run_participants p SET heartbeat_at = now(), progress = ${JSON.stringify(progress)}::jsonb
      FROM workflow_runs r
     WHERE p.run_id = ${fence.runId} AND p.token = ${fence.ownerToken}::uuid AND p.fenced_at IS NULL AND p.left_at IS NULL
       AND r.id = p.run_id AND r.status = 'running'
    RETURNING r.stop_requested_by`.execute(db);
  return rows[0] && { stopRequestedBy: rows[0].stop_requested_by };
}

/** The participant's fence, taken at the start of its leaving transaction; false: fenced, write nothing. */
export async function lockParticipant(tx: Transaction<EngineTables>, fence: WorkFence): Promise<boolean> {
  const { rows } = await sql`${fenceCte(fence)}`.execute(tx);
  return rows.length > 0;
}

/** The participant leaves: its final progress stays on its row (the run's counters add it up). */
export async function markLeft(tx: Transaction<EngineTables>, fence: WorkFence, progress: RunProgress): Promise<void> {
  await sql`UPDATE run_participants SET left_at = now(), heartbeat_at = now(), progress = ${JSON.stringify(progress)}::jsonb
             WHERE run_id = ${fence.runId} AND token = ${fence.ownerToken}::uuid`.execute(tx);
}

export interface ParticipantRow {
  token: string;
  instance: string;
  progress: RunProgress;
  active: boolean;
  /** Seconds since its last heartbeat. */
  silent_s: number;
}

/** A run's participants, past and present. */
export async function participantsOf(db: Db, runId: number): Promise<ParticipantRow[]> {
  const { rows } = await sql<ParticipantRow>`
    SELECT token::text AS token, instance, progress, (left_at IS NULL AND fenced_at IS NULL) AS active,
           extract(epoch FROM now() - heartbeat_at)::float8 AS silent_s
      FROM run_participants WHERE run_id = ${runId} ORDER BY joined_at`.execute(db);
  return rows;
}

/** Whether a participant of the run holds a claim: pages the owner waits for before the run can end. */
export async function participantsHoldClaims(db: Db, runId: number): Promise<boolean> {
  const { rows } = await sql<{ held: boolean }>`
    SELECT EXISTS (SELECT 1 FROM interaction_claims WHERE run_id = ${runId} AND holder IS NOT NULL) AS held`.execute(db);
  return rows[0]!.held;
}

/**
 * Fences participants of a run (all active ones, or those named): their rows
 * FOR UPDATE first, which waits for their fenced writes in flight (they hold
 * FOR KEY SHARE on them), then marked fenced, so every later write of theirs
 * matches nothing. The caller releases their claims in the same transaction.
 */
export async function fenceParticipants(tx: Transaction<EngineTables>, runId: number, tokens?: string[]): Promise<number> {
  const only = tokens === undefined ? sql`` : sql`AND token = ANY(${tokens}::uuid[])`;
  const { rows } = await sql<{ token: string }>`
    SELECT token FROM run_participants WHERE run_id = ${runId} AND left_at IS NULL AND fenced_at IS NULL ${only} FOR UPDATE`.execute(tx);
  if (rows.length === 0) return 0;
  await sql`UPDATE run_participants SET fenced_at = now() WHERE run_id = ${runId} AND token = ANY(${rows.map((r) => r.token)}::uuid[])`.execute(tx);
  return rows.length;
}

/** Whether the run has ever had a participant (its end then counts its totals from its interactions). */
export async function hadParticipants(db: Db, runId: number): Promise<boolean> {
  const { rows } = await sql<{ any: boolean }>`SELECT EXISTS (SELECT 1 FROM run_participants WHERE run_id = ${runId}) AS any`.execute(db);
  return rows[0]!.any;
}
