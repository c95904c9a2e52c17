import type { Kysely, Transaction } from 'kysely';
import { adopterPresent, lockRunningRun, runTotals, restartedUnder } from '../db/queries/adoption.ts';
import { appendAudit } from '../db/queries/audit.ts';
import { releaseLostClaims } from '../db/queries/release-claims.ts';
import { endRunWithoutOwner } from '../db/queries/runs.ts';
import { recoveryEnding, type RecoveryReason } from '../db/run-states.ts';
import type { EngineTables, RunRow } from '../db/schema.ts';
import type { ResolvedWorkflow } from '../workflows/define.ts';
import { publishRunEvent } from './events.ts';
import { delta, takeSnapshot } from './snapshot.ts';

/**
 * How long after the database server restarted under a run (restartedUnder)
 * a lost run of an adoptable workflow is left to the adopters, seen or not:
 * their sessions come back with the reconnect backoff (src/db/listener.ts,
 * at most 5 s between tries), and a `list` answered first must not end the
 * run `abandoned` under them. A stop still ends it at once.
 */
export const RESTART_GRACE_SECONDS = 30;

/** The workflow definitions this process knows, by id (a lost run's claims are read with its steps' pending queries). */
export type WorkflowLookup = (workflowId: number) => ResolvedWorkflow | undefined;

export interface RecoverOptions {
  workflows: WorkflowLookup;
  stoppedBy?: string;
  /**
   * A lost run that a serving instance will adopt (docs/architecture.md,
   * Adoption) is left to it, unless whoever recovers means to end it
   * whatever happens (a stop, a force).
   */
  evenIfAdoptable?: boolean;
  /** Why, in words (a crash loop names what was in flight). */
  error?: string;
}

/**
 * Ends a run whose owner is gone (owner_lost: abandoned) or was forced out
 * (forced: stopped), and releases its claims, leaving what they held
 * unfinished as pending interactions, in one transaction. The caller holds
 * the run's advisory lock, so no owner can be writing; the `status =
 * 'running'` guard leaves a run that just ended on its own alone. The run's
 * audit gets its true totals (counted from its interactions) and, where
 * this process defines the workflow, the state after and the delta.
 */
export async function recoverRun(
  db: Kysely<EngineTables>,
  runId: number,
  reason: RecoveryReason,
  options: RecoverOptions,
): Promise<(RunRow & { interactionsReleased: number }) | undefined> {
  const ended = await db.transaction().execute(async (tx) => {
    const row = await lockRunningRun(tx, runId);
    if (!row) return undefined;
    if (reason === 'owner_lost' && !options.evenIfAdoptable) {
      const workflow = options.workflows(row.workflow_id);
      // This process may define it with `adopt: false` while others adopt: only the definition here says no.
      const adoptable = !workflow || workflow.adopt;
      if (adoptable && ((await adopterPresent(tx, row.workflow_id)) || (await restartedUnder(tx, row, RESTART_GRACE_SECONDS)))) return undefined;
    }
    return endLostRun(tx, db, row, reason, options);
  });
  if (!ended) return undefined;
  await announceRecovery(db, ended.row, reason, ended.released, options.stoppedBy);
  return { ...ended.row, interactionsReleased: ended.released.pending };
}

/** The end of a run without its owner, inside the caller's transaction, after lockRunningRun. */
export async function endLostRun(
  tx: Transaction<EngineTables>,
  db: Kysely<EngineTables>,
  row: RunRow,
  reason: RecoveryReason,
  options: RecoverOptions,
): Promise<{ row: RunRow; released: { claims: number; pending: number } } | undefined> {
  const released = await releaseLostClaims(tx, row.id, pendingQueries(db, options.workflows));
  const progress = await runTotals(tx, row.id);
  const workflow = options.workflows(row.workflow_id);
  const stateAfter = workflow ? await takeSnapshot(tx, workflow) : null;
  const ended = await endRunWithoutOwner(
    tx,
    row.id,
    { ...recoveryEnding(reason), stoppedBy: options.stoppedBy ?? null, error: options.error ?? null },
    {
      completed: Object.values(progress).reduce((n, p) => n + p.done, 0),
      failed: Object.values(progress).reduce((n, p) => n + p.failed, 0),
      progress,
      stateAfter,
      delta: stateAfter && row.state_before ? delta(row.state_before, stateAfter) : null,
    },
  );
  return ended && { row: ended, released };
}

export async function announceRecovery(
  db: Kysely<EngineTables>,
  row: RunRow,
  reason: RecoveryReason,
  released: { claims: number; pending: number },
  stoppedBy?: string,
): Promise<void> {
  await appendAudit(db, {
    actor: stoppedBy ?? 'engine',
    source: 'engine',
    action: reason === 'forced' ? 'run_forced_out' : 'run_abandoned',
    outcome: 'event',
    workflowId: row.workflow_id,
    runId: row.id,
    reason: row.ended_reason,
    details: {
      interactions_released: released.pending,
      claims_released: released.claims,
      completed: row.interactions_completed,
      failed: row.interactions_failed,
      ...(row.error ? { error: row.error } : {}),
    },
  });
  await publishRunEvent(db, { type: 'run_ended', runId: row.id, workflowId: row.workflow_id });
}

/** A step's pending query, for the claims of a run whose owner is gone. */
export function pendingQueries(db: Kysely<EngineTables>, workflows: WorkflowLookup) {
  return (workflowId: number, stepName: string) =>
    workflows(workflowId)
      ?.steps.find((s) => s.name === stepName)
      ?.pending(db);
}
