import { sql, type Kysely, type SelectQueryBuilder } from 'kysely';
import type { Fence } from './runs.ts';

export interface ClaimPage {
  fence: Fence;
  workflowId: number;
  step: string;
  /** The step before this one; its latest completed interaction becomes the parent (lineage). */
  previousStep: string | null;
  /** The step's pending query; wrapped here as a subquery. */
  pending: SelectQueryBuilder<any, any, any>;
  /** Keyset cursor: only subjects above it. */
  after: number;
  /** Only subjects up to this one (a feeder's slice of the range); null = no bound. */
  upTo: number | null;
  limit: number;
  /** single_subject scope. */
  subjectId: number | null;
  /** Subjects that already failed in this run; not claimed again by it. */
  exclude: number[];
}

export interface ClaimedItem {
  interactionId: number;
  subjectId: number;
  attempts: number;
  input: Record<string, unknown>;
}

export interface ClaimResult {
  /** Highest subject id seen; the next page starts after it. Null when the step has nothing left. */
  cursor: number | null;
  /** Candidates the page looked at; fewer than the limit means the step is exhausted. */
  seen: number;
  claimed: ClaimedItem[];
  /** The run is no longer ours: nothing was claimed and nothing must be. */
  fenced: boolean;
}

/**
 * Claims one page of a step's pending subjects, in one statement.
 *
 * Why this shape:
 * - Keyset pagination (`subject_id > cursor ORDER BY subject_id LIMIT n`) over
 *   the step's pending query walks the domain table's index once per wave,
 *   instead of rescanning already-claimed rows from the start on every page.
 * - INSERT … ON CONFLICT on the partial unique index `interactions_live_key`
 *   is the claim: a subject live in another run (running) is skipped, so no
 *   (step, subject) is ever handed to two workers; one left `pending` by a
 *   stopped or abandoned run is adopted by this run, attempts carried on.
 * - The `fence` CTE locks our run row FOR KEY SHARE (see lockOwnedRun): a
 *   force or recovery that ends the run waits for this statement's
 *   transaction, and once it has, this statement claims nothing
 *   (EvalPlanQual re-checks the row).
 * - Candidates LEFT JOIN claimed returns the cursor even when every candidate
 *   was skipped.
 * - A second statement, with a fresh snapshot, drops claims whose subject
 *   stopped being pending meanwhile: the candidate list comes from the first
 *   statement's snapshot, so a subject another run completed just after it
 *   (its interaction no longer live, so no conflict) would otherwise be
 *   processed twice. Our claims are live by then (running, ours), so nobody
 *   else can complete one of them in between; the handlers only start after
 *   the re-check.
 * - No explicit transaction: each statement commits on its own (two round
 *   trips, not four; on this class of machine a round trip's syscalls cost
 *   more than the statement). A crash between the two leaves live claims of
 *   a run that will be recovered like any other; the re-check is fenced.
 */
export async function claimInteractions(db: Kysely<any>, page: ClaimPage): Promise<ClaimResult> {
  const scope = page.subjectId === null ? sql`` : sql`AND p.subject_id = ${page.subjectId}`;
  const bound = page.upTo === null ? sql`` : sql`AND p.subject_id <= ${page.upTo}`;
  const exclude = page.exclude.length === 0 ? sql`` : sql`AND p.subject_id <> ALL(${page.exclude}::bigint[])`;
  const parent =
    page.previousStep === null
      ? sql`NULL::bigint`
      : sql`(SELECT max(u.id) FROM interactions u
               WHERE u.workflow_id = ${page.workflowId} AND u.subject_id = c.subject_id
                 AND u.step = ${page.previousStep} AND u.status = 'completed')`;

  const tx = db;
  const { rows } = await sql<{ subject_id: number; id: number | null; attempts: number | null; input: Record<string, unknown>; owned: boolean; adopted: boolean | null }>`
    WITH fence AS (
      SELECT id FROM workflow_runs
       WHERE id = ${page.fence.runId} AND owner_token = ${page.fence.ownerToken} AND status = 'running'
       FOR KEY SHARE
    ), candidates AS (
      SELECT p.subject_id::bigint AS subject_id, to_jsonb(p) - 'subject_id' AS input
        FROM (${page.pending}) AS p
       WHERE p.subject_id > ${page.after} ${bound} ${scope} ${exclude}
       ORDER BY p.subject_id
       LIMIT ${page.limit}
    ), claimed AS (
      INSERT INTO interactions AS i (run_id, workflow_id, step, subject_id, status, attempts, input, parent_id)
      SELECT ${page.fence.runId}, ${page.workflowId}, ${page.step}, c.subject_id, 'running', 1, c.input, ${parent}
        FROM candidates c, fence
      ON CONFLICT (workflow_id, step, subject_id) WHERE status IN ('pending', 'running')
      DO UPDATE SET run_id = excluded.run_id, status = 'running', attempts = i.attempts + 1,
                    input = excluded.input, error = NULL, claimed_at = now()
       WHERE i.status = 'pending'
      RETURNING i.id, i.subject_id, i.attempts, i.xmax <> 0 AS adopted
    )
    SELECT c.subject_id, cl.id, cl.attempts, cl.adopted, c.input, EXISTS (SELECT 1 FROM fence) AS owned
      FROM candidates c LEFT JOIN claimed cl ON cl.subject_id = c.subject_id
     ORDER BY c.subject_id`.execute(tx);

  if (rows.length === 0) {
    // No candidates: the fence was not needed to decide anything.
    return { cursor: null, seen: 0, claimed: [], fenced: false };
  }
  if (!rows[0]!.owned) return { cursor: null, seen: rows.length, claimed: [], fenced: true };
  const claimedRows = rows.filter((row) => row.id !== null);
  const stale = claimedRows.length === 0 ? new Set<number>() : await dropStaleClaims(tx, page, claimedRows);
  const claimed: ClaimedItem[] = [];
  for (const row of claimedRows) {
    if (!stale.has(row.id!)) claimed.push({ interactionId: row.id!, subjectId: row.subject_id, attempts: row.attempts ?? 1, input: row.input });
  }
  return { cursor: rows[rows.length - 1]!.subject_id, seen: rows.length, claimed, fenced: false };
}

/**
 * Claims whose subject is no longer pending: fresh ones are deleted as if
 * never made; an adopted row (history of an earlier run) is closed as failed
 * rather than erased.
 */
async function dropStaleClaims(
  tx: Kysely<any>,
  page: ClaimPage,
  claimed: { id: number | null; adopted: boolean | null; subject_id: number }[],
): Promise<Set<number>> {
  // The page's subjects that are still pending are looked up once (an index
  // condition on the pending query whatever the statistics say), then
  // NOT IN, which PostgreSQL answers with a hashed subplan. Two plans this
  // replaced, both from bench/RESULTS.md: a correlated NOT EXISTS planned on
  // stale statistics as a scan of the whole pending index per claimed row
  // (minutes a page at 1M postings), and an anti join by nested loop over the
  // materialized set (125k comparisons, 40 ms a page).
  // No `status = 'running'` guard (see complete-interactions.ts): the rows
  // were claimed a moment ago by this caller and the fence proves the run is
  // still ours.
  const { rows } = await sql<{ id: number }>`
    WITH fence AS (
      SELECT id FROM workflow_runs
       WHERE id = ${page.fence.runId} AND owner_token = ${page.fence.ownerToken} AND status = 'running'
       FOR KEY SHARE
    ), stale AS (
      SELECT c.id, c.adopted
        FROM unnest(${claimed.map((r) => r.id!)}::bigint[], ${claimed.map((r) => r.subject_id)}::bigint[],
                    ${claimed.map((r) => r.adopted === true)}::boolean[]) AS c(id, subject_id, adopted)
       WHERE c.subject_id NOT IN (
         SELECT p.subject_id FROM (${page.pending}) AS p WHERE p.subject_id = ANY(${claimed.map((r) => r.subject_id)}::bigint[]))
    ), dropped AS (
      DELETE FROM interactions i USING stale
       WHERE i.id = stale.id AND NOT stale.adopted AND i.run_id = ${page.fence.runId} AND EXISTS (SELECT 1 FROM fence)
      RETURNING i.id
    ), closed AS (
      UPDATE interactions i SET status = 'failed', error = 'no longer pending when claimed', finished_at = now()
        FROM stale
       WHERE i.id = stale.id AND stale.adopted AND i.run_id = ${page.fence.runId} AND EXISTS (SELECT 1 FROM fence)
      RETURNING i.id
    )
    SELECT id FROM dropped UNION ALL SELECT id FROM closed`.execute(tx);
  return new Set(rows.map((row) => row.id));
}

/** The lowest and highest pending subject of a step, to split among feeders; undefined when none is pending. */
export async function pendingRange(db: Kysely<any>, pending: SelectQueryBuilder<any, any, any>): Promise<{ min: number; max: number } | undefined> {
  // Two ORDER BY … LIMIT 1 rather than min()/max(): each walks one end of the
  // pending index, where an aggregate over the subquery may be planned as a
  // scan of the whole table when statistics are stale.
  const { rows } = await sql<{ min: number | null; max: number | null }>`
    SELECT (SELECT p.subject_id::bigint FROM (${pending}) AS p ORDER BY p.subject_id LIMIT 1) AS min,
           (SELECT p.subject_id::bigint FROM (${pending}) AS p ORDER BY p.subject_id DESC LIMIT 1) AS max`.execute(db);
  const row = rows[0];
  return row && row.min !== null && row.max !== null ? { min: row.min, max: row.max } : undefined;
}

/** Pending subjects of a step at a run's start (the expected work). */
export async function countPending(db: Kysely<any>, pending: SelectQueryBuilder<any, any, any>, subjectId: number | null): Promise<number> {
  const scope = subjectId === null ? sql`` : sql`WHERE p.subject_id = ${subjectId}`;
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM (${pending}) AS p ${scope}`.execute(db);
  return rows[0]?.n ?? 0;
}
