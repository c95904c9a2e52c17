import { sql, type Transaction } from 'kysely';
import { executePrepared } from '../prepared.ts';
import type { EngineTables } from '../schema.ts';
import { storable } from '../storable.ts';
import { fenceCte, type WorkFence } from './fence.ts';

/**
 * One finished item, as the runner hands it over (JSON texts already
 * rendered): the shape of the engine's results, which are passed as they are.
 */
export interface FinishedItem {
  status: 'completed' | 'failed';
  error: string | null;
  item: {
    subjectId: number;
    /** The interaction a stopped or lost run left pending for this subject: it is updated instead of a new row inserted. */
    pendingId: number | null;
    /** Handler calls this run made for the item. */
    attempts: number;
    inputJson: string;
    /** JSON text of the accepted output; written for completed items only. */
    outputJson: string | null;
    claimedAtMs: number;
  };
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
 *   left by an earlier run updates that row instead (its attempts carry on);
 *   a batch without one is a statement without the UPDATE (two prepared
 *   statements: the usual one does not carry the other's CTEs).
 * - The items travel as columns zipped by ROWS FROM: subject ids and claim
 *   times as number array literals, inputs and outputs as two JSON arrays of
 *   the JSON texts the runner already holds, joined as they are (an array
 *   literal of texts would escape every quote on the client and parse it
 *   again on the server, several times slower for long inputs:
 *   bench/RESULTS.md). Status, attempts, error and adopted row go as arrays
 *   only when an item of the batch has one that is not the usual (completed,
 *   one attempt, none, none); otherwise NULL, which ROWS FROM pads to NULL
 *   per row, filled in by the statement. A JSON document of objects
 *   (jsonb_to_recordset) cost the server ~25% more per item: every key looked
 *   up and every number converted from numeric, per row.
 * - The fence is a CTE of the same statement, and every write joins it:
 *   `owned` false means nothing was written.
 * - Lineage: the parent is the subject's latest completed interaction of the
 *   step before, one probe into interactions_subject per row.
 * - Adopted rows are also found by `id = ANY(adopted ids)`: redundant for the
 *   result, it gives the primary key an index condition whatever the
 *   statistics say; joined to the items alone, the planner may hash a scan of
 *   the whole table while it believes the table small.
 * - The written ids come back as two JSON arrays (subjects, ids), not a pair
 *   per row: two arrays of numbers to parse instead of one array per item.
 */
export async function recordResults(
  tx: Transaction<EngineTables>,
  fence: WorkFence,
  batch: { workflowId: number; step: string; previousStep: string | null; items: FinishedItem[]; releaseClaims: number[] },
): Promise<RecordedResults> {
  const { items } = batch;
  const parent =
    batch.previousStep === null
      ? sql`NULL::bigint`
      : sql`(SELECT max(u.id) FROM interactions u
               WHERE u.workflow_id = ${batch.workflowId} AND u.subject_id = v.s
                 AND u.step = ${batch.previousStep} AND u.status = 'completed')`;
  // Array literals of numbers and JSON arrays of JSON texts: nothing in them needs escaping.
  let subjects = '';
  let claimedAt = '';
  let inputs = '';
  let outputs = '';
  let usual = true;
  let adopting = false;
  for (let k = 0; k < items.length; k++) {
    const { item, status, error } = items[k]!;
    const comma = k === 0 ? '' : ',';
    subjects += comma + item.subjectId;
    claimedAt += comma + item.claimedAtMs;
    inputs += comma + item.inputJson;
    outputs += comma + (status === 'completed' ? item.outputJson : 'null');
    if (status !== 'completed' || item.attempts !== 1 || error !== null) usual = false;
    if (item.pendingId !== null) adopting = true;
  }
  const columns = sql`ROWS FROM (
          unnest(${`{${subjects}}`}::bigint[]), unnest(${`{${claimedAt}}`}::float8[]),
          jsonb_array_elements(${`[${inputs}]`}::jsonb), jsonb_array_elements(${`[${outputs}]`}::jsonb),
          unnest(${usual ? null : items.map((r) => r.status)}::text[]), unnest(${usual ? null : items.map((r) => r.item.attempts)}::int[]),
          unnest(${usual ? null : items.map((r) => (r.error === null ? null : storable(r.error)))}::text[]),
          unnest(${adopting ? items.map((r) => r.item.pendingId) : null}::bigint[])
        ) AS v(s, c, i, o, st, a, e, p)`;
  const insert = (from: ReturnType<typeof sql>) => sql`
      INSERT INTO interactions (run_id, workflow_id, step, subject_id, status, parent_id, attempts, input, output, error, claimed_at, finished_at)
      SELECT ${fence.runId}, ${batch.workflowId}, ${batch.step}, v.s, coalesce(v.st, 'completed'), ${parent}, coalesce(v.a, 1), v.i, v.o, v.e,
             to_timestamp(v.c / 1000), now()
        ${from}
      RETURNING id, subject_id`;
  const released = sql`
      DELETE FROM interaction_claims c
       WHERE c.id = ANY(${batch.releaseClaims}::bigint[]) AND c.run_id = ${fence.runId} AND EXISTS (SELECT 1 FROM fence)`;
  const statement = adopting
    ? sql<{ owned: boolean; written: [number[] | null, number[] | null] }>`
    WITH fence AS (${fenceCte(fence)}), v AS (SELECT * FROM ${columns}), adopted AS (
      UPDATE interactions AS i
         SET run_id = ${fence.runId}, status = coalesce(v.st, 'completed'), attempts = i.attempts + coalesce(v.a, 1), input = v.i, output = v.o,
             error = v.e, parent_id = ${parent}, claimed_at = to_timestamp(v.c / 1000), finished_at = now()
        FROM v
       WHERE v.p IS NOT NULL AND i.id = v.p AND i.id = ANY(${items.map((r) => r.item.pendingId)}::bigint[]) AND i.status = 'pending'
         AND EXISTS (SELECT 1 FROM fence)
      RETURNING i.id, i.subject_id
    ), inserted AS (${insert(sql`FROM v, fence WHERE v.p IS NULL`)}), released AS (${released})
    SELECT EXISTS (SELECT 1 FROM fence) AS owned,
           (SELECT json_build_array(json_agg(w.subject_id), json_agg(w.id))
              FROM (SELECT * FROM inserted UNION ALL SELECT * FROM adopted) w) AS written`
    : sql<{ owned: boolean; written: [number[] | null, number[] | null] }>`
    WITH fence AS (${fenceCte(fence)}), inserted AS (${insert(sql`FROM ${columns}, fence`)}), released AS (${released})
    SELECT EXISTS (SELECT 1 FROM fence) AS owned,
           (SELECT json_build_array(json_agg(w.subject_id), json_agg(w.id)) FROM inserted w) AS written`;
  const { rows } = await executePrepared(tx, statement);
  const row = rows[0]!;
  const interactionIds = new Map<number, number>();
  const [writtenSubjects, writtenIds] = row.written;
  if (writtenSubjects && writtenIds) for (let k = 0; k < writtenSubjects.length; k++) interactionIds.set(writtenSubjects[k]!, writtenIds[k]!);
  if (row.owned && interactionIds.size !== items.length) {
    // Only a row changed behind the run's back (an adopted pending row no
    // longer pending) can cause this; committing would lose a result.
    throw new Error(`recorded ${interactionIds.size} of ${items.length} results of step ${batch.step}: an adopted pending interaction changed meanwhile`);
  }
  return { owned: row.owned, interactionIds };
}
