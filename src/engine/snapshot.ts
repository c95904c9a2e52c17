import type { Kysely } from 'kysely';
import { countPending } from '../db/queries/claim-interactions.ts';
import type { ExpectedWork, Metrics } from '../db/schema.ts';
import type { ResolvedWorkflow } from '../workflows/define.ts';

/** The workflow's metrics row, as numbers. One query, defined by the workflow. */
export async function takeSnapshot<DB>(db: Kysely<DB>, workflow: ResolvedWorkflow<DB>): Promise<Metrics> {
  const row = (await workflow.metrics(db).executeTakeFirst()) ?? {};
  const metrics: Metrics = {};
  for (const [name, value] of Object.entries(row)) metrics[name] = Number(value ?? 0);
  return metrics;
}

/**
 * Pending subjects per step: the step's own pendingCount for the whole table
 * when it has one (a count(*) of a large pending set reads every pending row,
 * in time that grows with the set: bench/RESULTS.md), otherwise
 * counted with the same query claiming uses.
 */
export async function expectedWork<DB>(db: Kysely<DB>, workflow: ResolvedWorkflow<DB>, subjectId: number | null): Promise<ExpectedWork> {
  const work: ExpectedWork = {};
  for (const step of workflow.steps) {
    work[step.name] =
      subjectId === null && step.pendingCount
        ? Number((await step.pendingCount(db).executeTakeFirst())?.pending ?? 0)
        : await countPending(db, step.pending(db), subjectId);
  }
  return work;
}

export function delta(before: Metrics, after: Metrics): Metrics {
  const result: Metrics = {};
  for (const name of new Set([...Object.keys(before), ...Object.keys(after)])) {
    result[name] = (after[name] ?? 0) - (before[name] ?? 0);
  }
  return result;
}

/**
 * Interactions a run can expect in all, for a linear pipeline: a subject
 * pending for step k will also be pending for every later step.
 */
export function estimatedInteractions(work: ExpectedWork, stepNames: string[]): number {
  let carried = 0;
  let total = 0;
  for (const name of stepNames) {
    carried += work[name] ?? 0;
    total += carried;
  }
  return total;
}
