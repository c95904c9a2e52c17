import { sql, type Kysely } from 'kysely';
import { storable } from '../storable.ts';

// The health_checks row (migrations/0033_health_checks.ts): when the last
// pass on demand started, so that one starts per interval on the database
// whichever process is asked, and the findings of the latest full pass, so
// that a process refused a pass of its own can show them.

export interface HealthChecksRow {
  /** The last pass on demand; null before the first. */
  started_at: Date | null;
  started_by: string | null;
  /** The latest full pass's findings (on demand or the active monitor's tick), as the monitor wrote them. */
  findings: unknown;
  findings_at: Date | null;
  findings_by: string | null;
}

/**
 * Starts a pass on demand unless one started less than `intervalMs` ago:
 * one statement, so of any number of processes asking at once one gets it.
 * Its start (the database's clock), or undefined when refused.
 */
export async function claimHealthPass<DB>(db: Kysely<DB>, intervalMs: number, instance: string): Promise<Date | undefined> {
  const { rows } = await sql<{ started_at: Date }>`
    UPDATE health_checks SET started_at = now(), started_by = ${instance}
     WHERE started_at IS NULL OR started_at <= now() - make_interval(secs => ${intervalMs / 1000})
     RETURNING started_at`.execute(db);
  return rows[0]?.started_at;
}

/** The row, or undefined if it is missing (the migration inserts it and the app's role cannot delete it). */
export async function healthChecks<DB>(db: Kysely<DB>): Promise<HealthChecksRow | undefined> {
  const { rows } = await sql<HealthChecksRow>`SELECT started_at, started_by, findings, findings_at, findings_by FROM health_checks`.execute(db);
  return rows[0];
}

/**
 * Keeps a pass's findings unless newer ones are there already (passes in two
 * processes may end out of order). A service's error comes from outside, so
 * strings are made storable.
 */
export async function recordHealthFindings<DB>(db: Kysely<DB>, at: Date, instance: string, findings: object): Promise<void> {
  const json = JSON.stringify(findings, (_key, value: unknown) => (typeof value === 'string' ? storable(value) : value));
  await sql`
    UPDATE health_checks SET findings = ${json}::jsonb, findings_at = ${at}, findings_by = ${instance}
     WHERE findings_at IS NULL OR findings_at < ${at}`.execute(db);
}
