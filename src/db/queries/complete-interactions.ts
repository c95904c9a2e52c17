import { sql, type Transaction } from 'kysely';
import type { Fence } from './runs.ts';

export interface Completion {
  interactionId: number;
  output: unknown;
}

export interface Failure {
  interactionId: number;
  error: string;
  /** Attempts made in this run beyond the first (the claim counted the first). */
  extraAttempts: number;
}

/**
 * Records a batch of results in one statement: completions and failures,
 * behind the run's fence. The caller runs the step's `save` for the completed
 * items in the same transaction, so a result and its interaction's completion
 * commit together or not at all.
 *
 * Why this shape:
 * - The fence is a CTE of the same statement (one round trip fewer than a
 *   separate SELECT … FOR KEY SHARE); `owned` false means nothing was written
 *   and the caller must roll back.
 * - Arrays instead of a VALUES list: one parameter per column whatever the
 *   batch size, and a plan PostgreSQL can cache. Completions join unnest(ids,
 *   outputs) and also say `id = ANY(ids)`: redundant for the result, it is
 *   what gives the primary key an index condition; with the join alone the
 *   planner chose a sequential scan and a hash join while the table's
 *   statistics still described it as small (12 ms of a 24 ms statement at
 *   77,500 rows).
 * - Rows are found by primary key. The guard is `run_id = <constant>` and
 *   the fence an EXISTS, so neither can drive the join: `status = 'running'`
 *   implied the predicate of the partial index `interactions_run_live`, and
 *   the planner, which has not seen this run's rows in its statistics, then
 *   scanned that index's mostly dead entries for the whole run so far; a join
 *   on the fence CTE's id became a sequential scan of the table and a hash
 *   join (bench/noop-engine.ts --explain). Both grew with every batch. The
 *   status check is not needed: the fence proves the run is still ours, and
 *   only the owner (which completes each claim once) or a recovery that first
 *   ends the run moves its rows.
 */
export async function recordResults(
  tx: Transaction<any>,
  fence: Fence,
  completed: Completion[],
  failed: Failure[],
): Promise<{ owned: boolean; completed: number; failed: number }> {
  const ids = completed.map((c) => c.interactionId);
  const outputs = completed.map((c) => JSON.stringify(c.output ?? null));
  const { rows } = await sql<{ owned: boolean; completed: number; failed: number }>`
    WITH fence AS (
      SELECT id FROM workflow_runs
       WHERE id = ${fence.runId} AND owner_token = ${fence.ownerToken} AND status = 'running'
       FOR KEY SHARE
    ), completed AS (
      UPDATE interactions AS i
         SET status = 'completed', output = v.output, error = NULL, finished_at = now()
        FROM unnest(${ids}::bigint[], ${outputs}::jsonb[]) AS v(id, output)
       WHERE i.id = v.id AND i.id = ANY(${ids}::bigint[]) AND i.run_id = ${fence.runId} AND EXISTS (SELECT 1 FROM fence)
      RETURNING i.id
    ), failed AS (
      UPDATE interactions AS i
         SET status = 'failed', error = v.error, attempts = i.attempts + v.extra, finished_at = now()
        FROM unnest(${failed.map((f) => f.interactionId)}::bigint[], ${failed.map((f) => f.error)}::text[],
                    ${failed.map((f) => f.extraAttempts)}::int[]) AS v(id, error, extra)
       WHERE i.id = v.id AND i.run_id = ${fence.runId} AND EXISTS (SELECT 1 FROM fence)
      RETURNING i.id
    )
    SELECT EXISTS (SELECT 1 FROM fence) AS owned,
           (SELECT count(*) FROM completed)::int AS completed,
           (SELECT count(*) FROM failed)::int AS failed`.execute(tx);
  return rows[0]!;
}

/** Unfinished work of a run goes back to pending, for a resume or the next batch to adopt. */
export async function releaseRunningInteractions(tx: Transaction<any>, runId: number): Promise<number> {
  const result = await sql`
    UPDATE interactions SET status = 'pending', claimed_at = now()
     WHERE run_id = ${runId} AND status = 'running'`.execute(tx);
  return Number(result.numAffectedRows ?? 0);
}
