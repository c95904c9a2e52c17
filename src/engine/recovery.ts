import type { Kysely } from 'kysely';
import { appendAudit } from '../db/queries/audit.ts';
import { releaseRunningInteractions } from '../db/queries/complete-interactions.ts';
import { publishRunEvent } from './events.ts';
import { endRunWithoutOwner } from '../db/queries/runs.ts';
import type { EngineTables, RunRow } from '../db/schema.ts';

/**
 * Ends a run whose owner is gone (abandoned) or was forced out (stopped), and
 * hands its running interactions back as pending, in one transaction. The
 * caller holds the run's advisory lock, so no owner can be writing; the
 * `status = 'running'` guard leaves a run that just ended on its own alone.
 */
export async function recoverRun(
  db: Kysely<EngineTables>,
  runId: number,
  status: 'abandoned' | 'stopped',
  options: { stoppedBy?: string; endedReason?: string } = {},
): Promise<RunRow | undefined> {
  const ended = await db.transaction().execute(async (tx) => {
    const row = await endRunWithoutOwner(tx, runId, {
      status,
      stoppedBy: options.stoppedBy ?? null,
      endedReason: options.endedReason ?? (status === 'abandoned' ? 'owner_lost' : 'forced'),
    });
    if (!row) return undefined;
    const released = await releaseRunningInteractions(tx, runId);
    return { row, released };
  });
  if (!ended) return undefined;
  await appendAudit(db, {
    actor: options.stoppedBy ?? 'engine',
    source: 'engine',
    action: status === 'abandoned' ? 'run_abandoned' : 'run_forced_out',
    outcome: 'event',
    workflowId: ended.row.workflow_id,
    runId,
    reason: ended.row.ended_reason,
    details: { interactions_released: ended.released },
  });
  await publishRunEvent(db, { type: 'run_ended', runId, workflowId: ended.row.workflow_id });
  return ended.row;
}
