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
 * The work a run can expect per step, from what each step has pending now:
 * in a pipeline a subject pending at step k reaches every later step, so
 * step k expects its own pending subjects and those of every step before it.
 * An upper bound: a subject that fails stops where it failed.
 */
export function forecastWork(pending: ExpectedWork, stepNames: readonly string[]): ExpectedWork {
  const forecast: ExpectedWork = {};
  let carried = 0;
  for (const name of stepNames) {
    carried += pending[name] ?? 0;
    forecast[name] = carried;
  }
  return forecast;
}
