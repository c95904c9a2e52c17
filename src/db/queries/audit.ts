import { sql, type Kysely } from 'kysely';
import type { AuditOutcome, EngineTables } from '../schema.ts';
import { storable } from '../storable.ts';

export interface AuditEntry {
  actor: string;
  source: string;
  action: string;
  outcome: AuditOutcome;
  workflowId?: number | null;
  runId?: number | null;
  reason?: string | null;
  details?: Record<string, unknown>;
}

// The audit log is append-only (a trigger refuses UPDATE and DELETE); this is
// its only writer.
export async function appendAudit(db: Kysely<EngineTables>, entry: AuditEntry): Promise<number> {
  const row = await db
    .insertInto('audit_log')
    .values({
      actor: storable(entry.actor),
      source: storable(entry.source),
      action: storable(entry.action),
      outcome: entry.outcome,
      workflow_id: entry.workflowId ?? null,
      run_id: entry.runId ?? null,
      reason: entry.reason == null ? null : storable(entry.reason),
      details: JSON.stringify(entry.details ?? {}, (_key, value: unknown) => (typeof value === 'string' ? storable(value) : value)),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

export async function recentAudit(db: Kysely<EngineTables>, limit = 50) {
  return db.selectFrom('audit_log').selectAll().orderBy('id', 'desc').limit(limit).execute();
}

/** For NOTIFY payloads, which pg's parameterised queries cannot carry. */
export async function notify<DB>(db: Kysely<DB>, channel: string, payload: object): Promise<void> {
  await sql`SELECT pg_notify(${channel}, ${JSON.stringify(payload)})`.execute(db);
}
