import { sql, type Transaction } from 'kysely';

export interface Completion {
  interactionId: number;
  output: unknown;
}

/**
 * Marks a batch completed in one statement. It runs inside the transaction
 * that also ran the step's `save` for the same items, after the run's fence,
 * so a result and its interaction's completion commit together or not at all.
 *
 * unnest of two parallel arrays instead of a VALUES list: one parameter per
 * column whatever the batch size, and a plan PostgreSQL can cache.
 * `status = 'running' AND run_id = …` keeps a batch from completing rows a
 * recovery has since handed back.
 */
export async function completeInteractions(tx: Transaction<any>, runId: number, items: Completion[]): Promise<number> {
  if (items.length === 0) return 0;
  const ids = items.map((item) => item.interactionId);
  const outputs = items.map((item) => JSON.stringify(item.output ?? null));
  const result = await sql`
    UPDATE interactions AS i
       SET status = 'completed', output = v.output, error = NULL, finished_at = now()
      FROM unnest(${ids}::bigint[], ${outputs}::jsonb[]) AS v(id, output)
     WHERE i.id = v.id AND i.status = 'running' AND i.run_id = ${runId}`.execute(tx);
  return Number(result.numAffectedRows ?? 0);
}

export interface Failure {
  interactionId: number;
  error: string;
  /** Attempts made in this run beyond the first (the claim counted the first). */
  extraAttempts: number;
}

/** Failed after its retries. Fenced like completion: the caller's transaction holds the run's fence. */
export async function failInteractions(tx: Transaction<any>, runId: number, items: Failure[]): Promise<number> {
  if (items.length === 0) return 0;
  const result = await sql`
    UPDATE interactions AS i
       SET status = 'failed', error = v.error, attempts = i.attempts + v.extra, finished_at = now()
      FROM unnest(${items.map((f) => f.interactionId)}::bigint[], ${items.map((f) => f.error)}::text[],
                  ${items.map((f) => f.extraAttempts)}::int[]) AS v(id, error, extra)
     WHERE i.id = v.id AND i.status = 'running' AND i.run_id = ${runId}`.execute(tx);
  return Number(result.numAffectedRows ?? 0);
}

/** Unfinished work of a run goes back to pending, for a resume or the next batch to adopt. */
export async function releaseRunningInteractions(tx: Transaction<any>, runId: number): Promise<number> {
  const result = await sql`
    UPDATE interactions SET status = 'pending', claimed_at = now()
     WHERE run_id = ${runId} AND status = 'running'`.execute(tx);
  return Number(result.numAffectedRows ?? 0);
}

export async function countInteractionsByStatus(tx: Transaction<any> | any, runId: number): Promise<Record<string, number>> {
  const { rows } = await sql<{ status: string; n: number }>`
    SELECT status, count(*)::int AS n FROM interactions WHERE run_id = ${runId} GROUP BY status`.execute(tx);
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}
