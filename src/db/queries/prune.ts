import { sql, type Kysely } from 'kysely';
import { ENDED_RUN_STATUSES } from '../run-states.ts';
import type { EngineTables } from '../schema.ts';

// Retention's statements (src/engine/retention.ts): what is deleted once the
// runs it belongs to ended long enough ago. workflow_runs and audit_log are
// never touched, nor anything of a run still going.
//
// Why this shape:
// - One run at a time, through interactions_run (run_id): an ended run gets
//   no new rows (its fenced writes match nothing), so its batches come to an
//   end, and the runs still going are never in the list.
// - Batches by ctid: `ctid = ANY (ARRAY(SELECT ctid … LIMIT n))` makes the
//   DELETE a TID scan of exactly the rows the index found (`ctid IN (SELECT
//   …)` may be planned as a semi-join over the whole table). The outer WHERE
//   repeats the conditions, so a row changed since the inner SELECT saw it is
//   rechecked, not deleted blindly.
// - Small batches, each its own statement and transaction: row locks and WAL
//   per commit stay small, a running run's commits never wait long behind
//   one, and a stop between batches leaves nothing half done.
// - Pending rows are kept: they are unfinished work that the next run of
//   the step adopts (docs/operations.md, What grows).

type Db = Kysely<EngineTables>;

const ENDED = sql.join(ENDED_RUN_STATUSES.map((s) => sql.lit(s)));

export interface OldRun {
  id: number;
  ended_at: Date;
}

/** Ended runs whose end is in [since, cutoff), oldest end first: through workflow_runs_ended (migrations/0009_retention.ts). */
export async function endedRunsBetween(db: Db, since: Date | null, cutoff: Date): Promise<OldRun[]> {
  const { rows } = await sql<OldRun>`
    SELECT id, ended_at FROM workflow_runs
     WHERE ended_at IS NOT NULL AND ended_at < ${cutoff} AND ended_at >= ${since ?? new Date(0)}
       AND status IN (${ENDED})
     ORDER BY ended_at, id`.execute(db);
  return rows;
}

/** Deletes up to `limit` finished interactions of one ended run; returns how many. */
export async function deleteRunInteractions(db: Db, runId: number, limit: number): Promise<number> {
  const result = await sql`
    DELETE FROM interactions
     WHERE ctid = ANY (ARRAY(
             SELECT ctid FROM interactions
              WHERE run_id = ${runId} AND status IN ('completed', 'failed')
              LIMIT ${limit}))
       AND run_id = ${runId} AND status IN ('completed', 'failed')`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** What deleteRunInteractions would delete of these runs, for a dry run. */
export async function countRunInteractions(db: Db, runIds: number[]): Promise<number> {
  if (runIds.length === 0) return 0;
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM interactions
     WHERE run_id = ANY (${runIds}::bigint[]) AND status IN ('completed', 'failed')`.execute(db);
  return rows[0]!.n;
}

/** Button clicks handled before `cutoff` (their messages are long stale), up to `limit`, through handled_actions_age. */
export async function deleteHandledActions(db: Db, cutoff: Date, limit: number, dryRun: boolean): Promise<number> {
  if (dryRun) {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM handled_actions WHERE handled_at < ${cutoff}`.execute(db);
    return rows[0]!.n;
  }
  const result = await sql`
    DELETE FROM handled_actions
     WHERE ctid = ANY (ARRAY(SELECT ctid FROM handled_actions WHERE handled_at < ${cutoff} LIMIT ${limit}))
       AND handled_at < ${cutoff}`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** Run messages (one per run and channel) of runs ended before `cutoff`: nobody updates them any more. */
export async function deleteRunMessages(db: Db, cutoff: Date, dryRun: boolean): Promise<number> {
  const old = sql`SELECT id FROM workflow_runs WHERE ended_at < ${cutoff} AND status IN (${ENDED})`;
  if (dryRun) {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM run_messages WHERE run_id IN (${old})`.execute(db);
    return rows[0]!.n;
  }
  const result = await sql`DELETE FROM run_messages WHERE run_id IN (${old})`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/**
 * Claims left by runs ended before `cutoff`. The health monitor releases an
 * ended run's claims at every pass (leaving what they held pending), so any
 * found here are leftovers that release failed on; their subjects' work is
 * still pending in the domain tables, so deleting the claim frees it.
 */
export async function deleteEndedRunClaims(db: Db, cutoff: Date, dryRun: boolean): Promise<number> {
  const old = sql`SELECT id FROM workflow_runs WHERE ended_at < ${cutoff} AND status IN (${ENDED})`;
  if (dryRun) {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM interaction_claims WHERE run_id IN (${old})`.execute(db);
    return rows[0]!.n;
  }
  const result = await sql`DELETE FROM interaction_claims WHERE run_id IN (${old})`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/**
 * Force requests decided (or past their expiry) before `cutoff`: the audit
 * log keeps who asked, who decided and what ran; the row only served the
 * request's message and its buttons. A pending request past its expiry is
 * expired whether or not a sweep marked it so.
 */
export async function deleteForceRequests(db: Db, cutoff: Date, dryRun: boolean): Promise<number> {
  const old = sql`coalesce(decided_at, expires_at) < ${cutoff}`;
  if (dryRun) {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM force_requests WHERE ${old}`.execute(db);
    return rows[0]!.n;
  }
  const result = await sql`DELETE FROM force_requests WHERE ${old}`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
