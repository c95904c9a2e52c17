import { sql, type Expression, type Kysely } from 'kysely';
import { executePrepared } from '../prepared.ts';
import type { EngineTables } from '../schema.ts';
import { claimHolder, fenceCte, type WorkFence } from './fence.ts';

// Claiming a page of a step's pending subjects (migrations/0007_claim_ranges.ts):
//
//   1. claimPage: one statement finds the page's first and last pending
//      subject and inserts the claim row [first, last]; the exclusion
//      constraint refuses it if another run holds an overlapping claim.
//   2. readClaimedPage: a second statement, with a fresh snapshot, reads the
//      subjects of the claimed range that are pending now, with their input.
//
// Why the read is a statement of its own: statement 1 chose its page from a
// snapshot taken when it began. A subject another run completed after that
// (its claim gone by the time ours was inserted, so no conflict) would still
// look pending in it. Once our claim is committed nobody else can claim in
// the range, so what statement 2 sees pending is ours to process, and no
// subject it returns is being processed elsewhere.

/**
 * A step's pending query (src/workflows/define.ts), whatever its tables:
 * embedded as a subquery, of which only `subject_id` is read by name.
 */
export type PendingQuery = Expression<{ subject_id: unknown }>;

export interface PageRequest {
  fence: WorkFence;
  workflowId: number;
  step: string;
  /** The step's pending query; wrapped here as a subquery. */
  pending: PendingQuery;
  /** Keyset cursor: only subjects above it. */
  after: number;
  /** Only subjects up to this one (a feeder's slice, or below a conflicting claim); null = no bound. */
  upTo: number | null;
  limit: number;
  /** single_subject scope. */
  subjectId: number | null;
  /** Subjects that already failed in this run; not claimed again by it. */
  exclude: number[];
}

export type ClaimOutcome =
  /** Nothing pending above the cursor (within the bound). */
  | { kind: 'empty' }
  /** The run is no longer ours: nothing was claimed and nothing must be. */
  | { kind: 'fenced' }
  /** Another claim overlaps [first, last]; nothing was claimed. */
  | { kind: 'conflict'; first: number; last: number }
  /** `seen` candidates; fewer than the limit means the range is exhausted. */
  | { kind: 'claimed'; claimId: number; first: number; last: number; seen: number; claimedAtMs: number };

/**
 * Why this shape:
 * - Keyset pagination (`subject_id > cursor ORDER BY subject_id LIMIT n`) over
 *   the step's pending query walks the domain table's index once per wave.
 *   Only ids are read here (the subquery's other columns are pruned), so a
 *   partial index on the pending predicate answers it index-only.
 * - The claim is the range's first and last candidate, not (cursor, last]:
 *   the tighter the range, the less it keeps from single_subject runs.
 * - The `fence` CTE locks our run row FOR KEY SHARE (see lockOwnedRun): a
 *   force or recovery that ends the run waits for this statement, and once it
 *   has, nothing is claimed (the INSERT joins the fence).
 * - ON CONFLICT DO NOTHING with no target covers the exclusion constraint: an
 *   overlap returns no row instead of an error, and the caller claims around
 *   the other run's range.
 */
export async function claimPage(db: Kysely<EngineTables>, page: PageRequest): Promise<ClaimOutcome> {
  const { rows } = await executePrepared(
    db,
    sql<{
      first: number | null;
      last: number | null;
      seen: number;
      owned: boolean;
      claim_id: number | null;
      claimed_at_ms: number | null;
    }>`
    WITH fence AS (${fenceCte(page.fence)}), candidates AS (
      SELECT p.subject_id::bigint AS subject_id
        FROM (${page.pending}) AS p
       WHERE p.subject_id > ${page.after} ${subjectFilters(page)}
       ORDER BY p.subject_id
       LIMIT ${page.limit}
    ), span AS (
      SELECT min(subject_id) AS first, max(subject_id) AS last, count(*)::int AS seen FROM candidates
    ), claimed AS (
      INSERT INTO interaction_claims (run_id, workflow_id, step, subjects, holder)
      SELECT ${page.fence.runId}, ${page.workflowId}, ${page.step}, int8range(span.first, span.last, '[]'), ${claimHolder(page.fence)}
        FROM span, fence
       WHERE span.last IS NOT NULL
      ON CONFLICT DO NOTHING
      RETURNING id, claimed_at
    )
    SELECT span.first, span.last, span.seen, EXISTS (SELECT 1 FROM fence) AS owned,
           (SELECT id FROM claimed) AS claim_id,
           (SELECT extract(epoch FROM claimed_at) * 1000 FROM claimed)::float8 AS claimed_at_ms
      FROM span`,
  );
  const row = rows[0]!;
  if (row.last === null) return { kind: 'empty' };
  if (!row.owned) return { kind: 'fenced' };
  if (row.claim_id === null) return { kind: 'conflict', first: row.first!, last: row.last };
  return { kind: 'claimed', claimId: row.claim_id, first: row.first!, last: row.last, seen: row.seen, claimedAtMs: row.claimed_at_ms! };
}

/** Live claims of other runs (or other participants of this run) overlapping [first, last], lowest first: what a conflicting claim must step around. */
export async function overlappingClaims(
  db: Kysely<EngineTables>,
  request: { workflowId: number; step: string; runId: number; first: number; last: number },
): Promise<{ run_id: number; holder: string | null; first: number; last: number }[]> {
  const { rows } = await sql<{ run_id: number; holder: string | null; first: number; last: number }>`
    SELECT run_id, holder::text AS holder, lower(subjects) AS first, upper(subjects) - 1 AS last
      FROM interaction_claims
     WHERE workflow_id = ${request.workflowId} AND step = ${request.step}
       AND subjects && int8range(${request.first}, ${request.last}, '[]')
     ORDER BY lower(subjects)`.execute(db);
  return rows;
}

export interface ClaimedSubject {
  subjectId: number;
  /** The handler's input as the database rendered it (JSON text): parsed for the handler, stored back verbatim. */
  inputJson: string;
  /** An unfinished interaction a stopped or lost run left for this subject, adopted by this run. */
  pendingId: number | null;
}

/**
 * The claimed range's subjects that are pending now (a fresh snapshot: see
 * the top of this file), with their input and any pending interaction left
 * for them.
 *
 * The pending interaction is looked up per subject, and only when the range
 * has one at all: one probe of the range into the tiny partial unique index
 * `interactions_pending_key` (an InitPlan, run once), then, if it found one,
 * a probe per subject. Usually there is none, and 500 probes a page were a
 * third of the statement's server CPU. The per-subject lookup is a scalar
 * subquery in the select list, which the planner never turns into a join:
 * written as a join it planned a hash join over a scan of the whole
 * interactions table while its statistics were stale (never analysed),
 * which made a recovered run's resume slow to start (bench/kill-restart.ts;
 * the figures are in bench/RESULTS.md).
 */
export async function readClaimedPage(
  db: Kysely<EngineTables>,
  page: Omit<PageRequest, 'fence' | 'after' | 'upTo' | 'limit'> & { first: number; last: number },
): Promise<ClaimedSubject[]> {
  const { workflowId, step, first, last } = page;
  // The rows come back in ClaimedSubject's shape: pg's row objects are the result, not copied into others.
  const { rows } = await executePrepared(
    db,
    sql<ClaimedSubject>`
    SELECT p.subject_id::bigint AS "subjectId", (to_jsonb(p) - 'subject_id')::text AS "inputJson",
           CASE WHEN (SELECT EXISTS (SELECT 1 FROM interactions r
                                      WHERE r.workflow_id = ${workflowId} AND r.step = ${step} AND r.status = 'pending'
                                        AND r.subject_id BETWEEN ${first} AND ${last}))
                THEN (SELECT i.id FROM interactions i
                       WHERE i.workflow_id = ${workflowId} AND i.step = ${step} AND i.subject_id = p.subject_id AND i.status = 'pending'
                       LIMIT 1)
           END AS "pendingId"
      FROM (${page.pending}) AS p
     WHERE p.subject_id BETWEEN ${first} AND ${last} ${subjectFilters({ ...page, upTo: null })}
     ORDER BY p.subject_id`,
  );
  return rows;
}

function subjectFilters(page: Pick<PageRequest, 'upTo' | 'subjectId' | 'exclude'>) {
  const bound = page.upTo === null ? sql`` : sql`AND p.subject_id <= ${page.upTo}`;
  const scope = page.subjectId === null ? sql`` : sql`AND p.subject_id = ${page.subjectId}`;
  const exclude = page.exclude.length === 0 ? sql`` : sql`AND p.subject_id <> ALL(${page.exclude}::bigint[])`;
  return sql`${bound} ${scope} ${exclude}`;
}

/** The lowest and highest pending subject of a step, to split among feeders; undefined when none is pending. */
export async function pendingRange<DB>(db: Kysely<DB>, pending: PendingQuery): Promise<{ min: number; max: number } | undefined> {
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
export async function countPending<DB>(db: Kysely<DB>, pending: PendingQuery, subjectId: number | null): Promise<number> {
  const scope = subjectId === null ? sql`` : sql`WHERE p.subject_id = ${subjectId}`;
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM (${pending}) AS p ${scope}`.execute(db);
  return rows[0]?.n ?? 0;
}
