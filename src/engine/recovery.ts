import type { Kysely } from 'kysely';
import { appendAudit } from '../db/queries/audit.ts';
import { releaseLostClaims } from '../db/queries/release-claims.ts';
import { endRunWithoutOwner } from '../db/queries/runs.ts';
import { recoveryEnding, type RecoveryReason } from '../db/run-states.ts';
import type { EngineTables, RunRow } from '../db/schema.ts';
import type { ResolvedWorkflow } from '../workflows/define.ts';
import { publishRunEvent } from './events.ts';

/** The workflow definitions this process knows, by id (a lost run's claims are read with its steps' pending queries). */
export type WorkflowLookup = (workflowId: number) => ResolvedWorkflow | undefined;

/**
 * Ends a run whose owner is gone (owner_lost: abandoned) or was forced out
 * (forced: stopped), and releases its claims, leaving what they held
 * unfinished as pending interactions, in one transaction. The caller holds the run's advisory lock,
 * so no owner can be writing; the `status = 'running'` guard leaves a run that
 * just ended on its own alone.
 */
export async function recoverRun(
  db: Kysely<EngineTables>,
  runId: number,
  reason: RecoveryReason,
  options: { workflows: WorkflowLookup; stoppedBy?: string },
): Promise<(RunRow & { interactionsReleased: number }) | undefined> {
  const ending = recoveryEnding(reason);
  const ended = await db.transaction().execute(async (tx) => {
    const row = await endRunWithoutOwner(tx, runId, { ...ending, stoppedBy: options.stoppedBy ?? null });
    if (!row) return undefined;
    const released = await releaseLostClaims(tx, runId, pendingQueries(db, options.workflows));
    return { row, released };
  });
  if (!ended) return undefined;
  await appendAudit(db, {
    actor: options.stoppedBy ?? 'engine',
    source: 'engine',
    action: reason === 'owner_lost' ? 'run_abandoned' : 'run_forced_out',
    outcome: 'event',
    workflowId: ended.row.workflow_id,
    runId,
    reason: ended.row.ended_reason,
    details: { interactions_released: ended.released.pending, claims_released: ended.released.claims },
  });
  await publishRunEvent(db, { type: 'run_ended', runId, workflowId: ended.row.workflow_id });
  return { ...ended.row, interactionsReleased: ended.released.pending };
}

/** A step's pending query, for the claims of a run whose owner is gone. */
export function pendingQueries(db: Kysely<EngineTables>, workflows: WorkflowLookup) {
  return (workflowId: number, stepName: string) =>
    workflows(workflowId)
      ?.steps.find((s) => s.name === stepName)
      ?.pending(db);
}
