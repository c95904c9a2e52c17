import { sql, type Kysely } from 'kysely';
import type { EngineTables, RunProgress } from '../schema.ts';

// Past runs' pace, for estimates (src/engine/estimates.ts): the progress
// counters and duration of a workflow's latest batches that ran to their end.
// Walks workflow_runs_history (workflow_id, id DESC) backwards and stops at
// `limit` matching rows, so it reads a handful of rows however long the
// history is; only completed batches that did work count, since a stopped
// run's duration says nothing about its pace and a single subject's is all
// start-up.

export interface PastRun {
  progress: RunProgress | null;
  seconds: number;
}

export async function recentBatchPace(db: Kysely<EngineTables>, workflowId: number, limit: number): Promise<PastRun[]> {
  return db
    .selectFrom('workflow_runs')
    .select(['progress', sql<number>`extract(epoch FROM ended_at - started_at)::float8`.as('seconds')])
    .where('workflow_id', '=', workflowId)
    .where('status', '=', 'completed')
    .where('ended_reason', '=', 'finished')
    .where('mode', '=', 'global_batch')
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
}
