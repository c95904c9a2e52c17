import { sql } from 'kysely';
import type { Fence } from './runs.ts';

/**
 * The fence of a run's writer (docs/architecture.md, Fencing): its owner,
 * `(run id, owner token)`, or a participant, `(run id, participant token)`
 * with `participant` set (docs/architecture.md, Participants).
 */
export interface WorkFence extends Fence {
  participant?: boolean;
}

/**
 * The body of the `fence` CTE the hot statements start with: the run row,
 * locked FOR KEY SHARE while the writer may still write. A participant's also
 * locks its participant row, which whoever fences it (the owner at the run's
 * end, an adopter) locks FOR UPDATE first: that waits for the participant's
 * writes in flight, and every later one finds its row fenced. A stop, force
 * or recovery ends the run, which fences every participant with its owner.
 */
export function fenceCte(fence: WorkFence) {
  if (!fence.participant) {
    return sql`SELECT id FROM workflow_runs
       WHERE id = ${fence.runId} AND owner_token = ${fence.ownerToken} AND status = 'running'
       FOR KEY SHARE`;
  }
  return sql`SELECT r.id FROM workflow_runs r JOIN run_participants p ON p.run_id = r.id
       WHERE r.id = ${fence.runId} AND r.status = 'running'
         AND p.token = ${fence.ownerToken}::uuid AND p.fenced_at IS NULL AND p.left_at IS NULL
       FOR KEY SHARE`;
}

/** The claim's holder column: the participant's token, null for the owner. */
export function claimHolder(fence: WorkFence) {
  return fence.participant ? sql`${fence.ownerToken}::uuid` : sql`NULL::uuid`;
}
