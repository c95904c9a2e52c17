import { sql, type Kysely, type Transaction } from 'kysely';
import type { EngineTables } from '../schema.ts';
import type { PendingQuery } from './claim-interactions.ts';
import { fenceCte, type WorkFence } from './fence.ts';

// Ending claims (migrations/0007_claim_ranges.ts). A claim ends in one of
// three ways:
// - its page is all finished: deleted by the completion that finishes it
//   (recordResults) or, at the end of a wave, by releaseClaims;
// - its run stops with work unfinished (stop, shutdown, an error): the owner
//   knows exactly which items did not finish and leaves them as pending
//   interactions (leaveUnfinished), in the transaction that ends the run;
// - its run's owner is gone (crash, force): recovery works out what was left
//   from the claims themselves (releaseLostClaims).
// In every case the subjects are still pending in the domain tables (their
// results never committed), so the next run processes them; the pending rows
// are the record of the unfinished work, adopted by whichever run processes
// the subject next.

/** Claims whose pages are all finished, deleted at the end of a wave (before the next wave claims the same ranges again). */
export async function releaseClaims(db: Kysely<EngineTables>, fence: WorkFence, claimIds: number[]): Promise<boolean> {
  if (claimIds.length === 0) return true;
  const { rows } = await sql<{ owned: boolean }>`
    WITH fence AS (${fenceCte(fence)}), released AS (
      DELETE FROM interaction_claims c
       WHERE c.id = ANY(${claimIds}::bigint[]) AND c.run_id = ${fence.runId} AND EXISTS (SELECT 1 FROM fence)
    )
    SELECT EXISTS (SELECT 1 FROM fence) AS owned`.execute(db);
  return rows[0]!.owned;
}

export interface UnfinishedItem {
  step: string;
  subjectId: number;
  /** Handler calls made for it by this run (0: claimed, never started). */
  attempts: number;
  inputJson: string;
  claimedAtMs: number;
}

/**
 * A stopping run's unfinished items become pending interactions, and all its
 * claims end. The caller has locked the run row as its owner (lockOwnedRun)
 * in this transaction. A subject that already had a pending row (left by an
 * earlier run, adopted by this one) keeps one row: its attempts carry on.
 */
export async function leaveUnfinished(
  tx: Transaction<EngineTables>,
  run: { runId: number; workflowId: number; holder?: string },
  items: UnfinishedItem[],
): Promise<number> {
  let written = 0;
  if (items.length > 0) {
    const result = await sql`
      INSERT INTO interactions AS i (run_id, workflow_id, step, subject_id, status, attempts, input, claimed_at)
      SELECT ${run.runId}, ${run.workflowId}, v.step, v.s, 'pending', v.a, v.i, to_timestamp(v.c / 1000)
        FROM jsonb_to_recordset(${unfinishedDocument(items)}::jsonb) AS v(step text, s bigint, a int, i jsonb, c float8)
      ON CONFLICT (workflow_id, step, subject_id) WHERE status = 'pending'
      DO UPDATE SET run_id = excluded.run_id, attempts = i.attempts + excluded.attempts,
                    input = excluded.input, claimed_at = excluded.claimed_at`.execute(tx);
    written = Number(result.numAffectedRows ?? 0);
  }
  // A participant ends only its own claims; the owner ends the run's, after it has fenced its participants (which released theirs).
  const holder = run.holder === undefined ? sql`` : sql`AND holder = ${run.holder}::uuid`;
  await sql`DELETE FROM interaction_claims WHERE run_id = ${run.runId} ${holder}`.execute(tx);
  return written;
}

function unfinishedDocument(items: UnfinishedItem[]): string {
  return `[${items.map((item) => `{"step":${JSON.stringify(item.step)},"s":${item.subjectId},"a":${item.attempts},"i":${item.inputJson},"c":${item.claimedAtMs}}`).join(',')}]`;
}

/**
 * The claims of a run whose owner is gone end; each claimed subject that is
 * still pending for its step, and did not fail in this run, becomes a pending
 * interaction (one claim each: a handler may have been running for it). The
 * caller has ended the run in this transaction (endRunWithoutOwner's FOR
 * UPDATE waited for any write of the old owner still in flight, and fenced
 * every later one), or found it ended, so the claims and results read here
 * are final. FOR UPDATE on the claims: a second releaser (two monitors, a
 * monitor and a recovery) waits, then finds them gone.
 *
 * `pendingOf` gives a step's pending query, or undefined when this process
 * does not define the workflow or the step (its module is not loaded here):
 * those claims end without pending rows; their subjects are pending in the
 * domain all the same and the next run processes them.
 */
export async function releaseLostClaims(
  tx: Transaction<EngineTables>,
  runId: number,
  pendingOf: (workflowId: number, step: string) => PendingQuery | undefined,
  /** Only the claims these participants hold (the owner fencing them), not the owner's. */
  holders?: string[],
): Promise<{ claims: number; pending: number }> {
  const scope = holders === undefined ? sql`` : sql`AND holder = ANY(${holders}::uuid[])`;
  const { rows: claims } = await sql<{ id: number; workflow_id: number; step: string; first: number; last: number; claimed_at: Date }>`
    SELECT id, workflow_id, step, lower(subjects) AS first, upper(subjects) - 1 AS last, claimed_at
      FROM interaction_claims WHERE run_id = ${runId} ${scope} ORDER BY id
       FOR UPDATE`.execute(tx);
  let pending = 0;
  for (const claim of claims) {
    const query = pendingOf(claim.workflow_id, claim.step);
    if (!query) continue;
    const result = await sql`
      INSERT INTO interactions AS i (run_id, workflow_id, step, subject_id, status, attempts, input, claimed_at)
      SELECT ${runId}, ${claim.workflow_id}, ${claim.step}, p.subject_id::bigint, 'pending', 1, to_jsonb(p) - 'subject_id', ${claim.claimed_at}
        FROM (${query}) AS p
       WHERE p.subject_id BETWEEN ${claim.first} AND ${claim.last}
         -- A scalar subquery, probed per subject through interactions_subject:
         -- NOT EXISTS becomes an anti join, planned on stale statistics as a
         -- hash over a scan of the whole table (bench/kill-restart.ts; the
         -- figures are in bench/RESULTS.md).
         AND (SELECT 1 FROM interactions f
               WHERE f.workflow_id = ${claim.workflow_id} AND f.subject_id = p.subject_id AND f.step = ${claim.step}
                 AND f.run_id = ${runId} AND f.status = 'failed'
               LIMIT 1) IS NULL
      ON CONFLICT (workflow_id, step, subject_id) WHERE status = 'pending'
      DO UPDATE SET run_id = excluded.run_id, attempts = i.attempts + 1, claimed_at = excluded.claimed_at`.execute(tx);
    pending += Number(result.numAffectedRows ?? 0);
  }
  await sql`DELETE FROM interaction_claims WHERE id = ANY(${claims.map((c) => c.id)}::bigint[])`.execute(tx);
  return { claims: claims.length, pending };
}

/**
 * Runs that have ended but still hold claims. Every way a run ends releases
 * its claims in the same transaction, so this should find none; the health
 * monitor looks anyway, since a claim nobody releases keeps its subjects from
 * every other run for good.
 */
export async function runsWithOrphanedClaims(db: Kysely<EngineTables>): Promise<{ run_id: number; workflow_id: number; status: string; claims: number }[]> {
  const { rows } = await sql<{ run_id: number; workflow_id: number; status: string; claims: number }>`
    SELECT c.run_id, r.workflow_id, r.status, count(*)::int AS claims
      FROM interaction_claims c JOIN workflow_runs r ON r.id = c.run_id
     WHERE r.status <> 'running'
     GROUP BY c.run_id, r.workflow_id, r.status
     ORDER BY c.run_id`.execute(db);
  return rows;
}
