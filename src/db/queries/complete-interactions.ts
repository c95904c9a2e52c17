import { sql, type Transaction } from 'kysely';
import { executePrepared } from '../prepared.ts';
import type { EngineTables } from '../schema.ts';
import { storable } from '../storable.ts';
import { fenceCte, type WorkFence } from './fence.ts';

/** One finished item, as the runner hands it over (JSON texts already rendered). */
export interface FinishedItem {
  subjectId: number;
  status: 'completed' | 'failed';
  /** The interaction a stopped or lost run left pending for this subject: it is updated instead of a new row inserted. */
  pendingId: number | null;
  /** Handler calls this run made for the item. */
  attempts: number;
  inputJson: string;
  /** JSON text of the output; 'null' for failures. */
  outputJson: string;
  error: string | null;
  claimedAtMs: number;
}

export interface RecordedResults {
  /** False: the run is no longer ours and nothing was written; the caller must roll back. */
  owned: boolean;
  /** The interaction of each finished subject (for the step's save). */
  interactionIds: Map<number, number>;
}

/**
 * Writes a batch of finished items of one step, behind the run's fence, and
 * deletes the claims whose pages are now all finished. The caller runs the
 * step's `save` in the same transaction, so a result, its interaction row
 * and its domain write commit together or not at all.
 *
 * Why this shape:
 * - One INSERT per batch: an interaction row is written once, finished
 *   (migrations/0007_claim_ranges.ts). Only an item that adopts a pending row
 *   left by an earlier run updates that row instead (its attempts carry on).
 * - The items travel as one JSON document expanded by jsonb_to_recordset,
 *   not as parallel arrays: array literals escape every quote of every input
 *   and output on the client and parse them again on the server (several
 *   times slower for long inputs: bench/RESULTS.md), while JSON texts the runner
 *   already holds are joined as they are.
 * - The fence is a CTE of the same statement, and every write joins it:
 *   `owned` false means nothing was written.
 * - Lineage: the parent is the subject's latest completed interaction of the
 *   step before, one probe into interactions_subject per row.
 * - Adopted rows are also found by `id = ANY(adopted ids)`: redundant for the
 *   result, it gives the primary key an index condition whatever the
 *   statistics say; joined to the recordset alone, the planner may hash a
 *   scan of the whole table while it believes the table small.
 */
export async function recordResults(
  tx: Transaction<EngineTables>,
  fence: WorkFence,
  batch: { workflowId: number; step: string; previousStep: string | null; items: FinishedItem[]; releaseClaims: number[] },
): Promise<RecordedResults> {
  const parent = (subject: ReturnType<typeof sql.ref>) =>
    batch.previousStep === null
      ? sql`NULL::bigint`
      : sql`(SELECT max(u.id) FROM interactions u
               WHERE u.workflow_id = ${batch.workflowId} AND u.subject_id = ${subject}
                 AND u.step = ${batch.previousStep} AND u.status = 'completed')`;
  const adopted = batch.items.flatMap((item) => (item.pendingId === null ? [] : [item.pendingId]));
  const { rows } = await executePrepared(
    tx,
    sql<{ owned: boolean; written: [number, number][] | null }>`
    WITH fence AS (${fenceCte(fence)}), v AS (
      SELECT s, coalesce(st, 'completed') AS st, p, coalesce(a, 1) AS a, i, o, e, c
        FROM jsonb_to_recordset(${itemsDocument(batch.items)}::jsonb)
          AS v(s bigint, st text, p bigint, a int, i jsonb, o jsonb, e text, c float8)
    ), adopted AS (
      UPDATE interactions AS i
         SET run_id = ${fence.runId}, status = v.st, attempts = i.attempts + v.a, input = v.i, output = v.o,
             error = v.e, parent_id = ${parent(sql.ref('v.s'))}, claimed_at = to_timestamp(v.c / 1000), finished_at = now()
        FROM v
       WHERE v.p IS NOT NULL AND i.id = v.p AND i.id = ANY(${adopted}::bigint[]) AND i.status = 'pending' AND EXISTS (SELECT 1 FROM fence)
      RETURNING i.id, i.subject_id
    ), inserted AS (
      INSERT INTO interactions (run_id, workflow_id, step, subject_id, status, parent_id, attempts, input, output, error, claimed_at, finished_at)
      SELECT ${fence.runId}, ${batch.workflowId}, ${batch.step}, v.s, v.st, ${parent(sql.ref('v.s'))}, v.a, v.i, v.o, v.e,
             to_timestamp(v.c / 1000), now()
        FROM v, fence
       WHERE v.p IS NULL
      RETURNING id, subject_id
    ), released AS (
      DELETE FROM interaction_claims c
       WHERE c.id = ANY(${batch.releaseClaims}::bigint[]) AND c.run_id = ${fence.runId} AND EXISTS (SELECT 1 FROM fence)
    )
    SELECT EXISTS (SELECT 1 FROM fence) AS owned,
           (SELECT json_agg(json_build_array(w.subject_id, w.id))
              FROM (SELECT * FROM inserted UNION ALL SELECT * FROM adopted) w) AS written`,
  );
  const row = rows[0]!;
  const interactionIds = new Map<number, number>();
  for (const [subjectId, id] of row.written ?? []) interactionIds.set(subjectId, id);
  if (row.owned && interactionIds.size !== batch.items.length) {
    // Only a row changed behind the run's back (an adopted pending row no
    // longer pending) can cause this; committing would lose a result.
    throw new Error(`recorded ${interactionIds.size} of ${batch.items.length} results of step ${batch.step}: an adopted pending interaction changed meanwhile`);
  }
  return { owned: row.owned, interactionIds };
}

/**
 * The batch as one JSON array; inputs and outputs are JSON texts already,
 * joined as they are. Keys at their usual value (completed, one attempt, no
 * adopted row, no error) are left out and filled in by the statement: most
 * items are such, and the document is most of the bytes a batch sends.
 */
function itemsDocument(items: FinishedItem[]): string {
  let doc = '[';
  for (let k = 0; k < items.length; k++) {
    const item = items[k]!;
    if (k > 0) doc += ',';
    doc += `{"s":${item.subjectId},"i":${item.inputJson},"o":${item.outputJson},"c":${item.claimedAtMs}`;
    if (item.status !== 'completed') doc += `,"st":"${item.status}"`;
    if (item.attempts !== 1) doc += `,"a":${item.attempts}`;
    if (item.pendingId !== null) doc += `,"p":${item.pendingId}`;
    if (item.error !== null) doc += `,"e":${JSON.stringify(storable(item.error))}`;
    doc += '}';
  }
  return `${doc}]`;
}
