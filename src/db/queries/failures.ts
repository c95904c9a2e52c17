import type { Kysely } from 'kysely';
import type { EngineTables } from '../schema.ts';

// A run's failed items, for the thread reply under its message: the first
// `limit` by id, through the partial index interactions_run_failed
// (migrations/0020_run_forecast.ts), which holds failed rows only.

export interface FailedItem {
  step: string;
  subjectId: number;
  error: string | null;
}

export async function failedItems(db: Kysely<EngineTables>, runId: number, limit: number): Promise<FailedItem[]> {
  const rows = await db
    .selectFrom('interactions')
    .select(['step', 'subject_id', 'error'])
    .where('run_id', '=', runId)
    .where('status', '=', 'failed')
    .orderBy('id')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ step: r.step, subjectId: Number(r.subject_id), error: r.error }));
}
