import { sql, type Kysely } from 'kysely';

// The two database roles (docs/security.md, The database). The owner
// (DATABASE_MIGRATION_URL) creates and alters the schema; the app's role
// (DATABASE_URL) reads and writes rows and may only append to audit_log:
// no UPDATE, DELETE, TRUNCATE or TRIGGER on it, and, not owning it, no ALTER
// (so no DISABLE TRIGGER), no DROP, no ownership change. `workflow db grants`
// prints these statements or applies them; openApp applies them after
// migrating whenever the two roles differ, so new tables are covered.
//
// The grants cover the tables of the schema the app lives in (current_schema),
// the workflows' domain tables with them (a step's save writes those; `demo`
// truncates postings and resets its sequence). audit_log's own sequence gets
// no UPDATE: setval on it could make every later insert collide.

const AUDIT_TABLE = 'audit_log';
/** Written by the owner's start-up setup only (src/app.ts): the app's role could otherwise make the owner skip it. */
const SETUP_TABLE = 'setup_fingerprint';
/**
 * One row (the `health` limit and the latest findings), inserted by its
 * migration: the app reads and updates it; deleting it would take `health`
 * away, so it may not, nor insert.
 */
const HEALTH_TABLE = 'health_checks';

/** The statements that give `role` exactly the app's privileges in the current schema, in order. */
export function grantStatements(role: string, schema: string): string[] {
  const r = quoteIdent(role);
  const s = quoteIdent(schema);
  const audit = `${s}.${AUDIT_TABLE}`;
  return [
    `GRANT USAGE ON SCHEMA ${s} TO ${r}`,
    `GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA ${s} TO ${r}`,
    `GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA ${s} TO ${r}`,
    `REVOKE ALL ON ${audit} FROM ${r}, PUBLIC`,
    `GRANT SELECT, INSERT ON ${audit} TO ${r}`,
    `REVOKE UPDATE ON SEQUENCE ${s}.${AUDIT_TABLE}_id_seq FROM ${r}, PUBLIC`,
    `REVOKE ALL ON ${s}.${SETUP_TABLE} FROM ${r}, PUBLIC`,
    `REVOKE ALL ON ${s}.${HEALTH_TABLE} FROM ${r}, PUBLIC`,
    `GRANT SELECT, UPDATE ON ${s}.${HEALTH_TABLE} TO ${r}`,
  ];
}

export interface RoleCheck {
  /** The role exists. */
  exists: boolean;
  /** Why it cannot be the app's role, if it cannot: a superuser, the owner of audit_log, or a member of its owner. */
  problem: string | null;
}

/** Whether `role` can be the app's restricted role: it must not be able to act as audit_log's owner. */
export async function checkAppRole<DB>(db: Kysely<DB>, role: string): Promise<RoleCheck> {
  const { rows } = await sql<{ exists: boolean; superuser: boolean; owner: string | null; member: boolean }>`
    SELECT r.oid IS NOT NULL AS exists,
           coalesce(r.rolsuper, false) AS superuser,
           o.rolname AS owner,
           coalesce(o.oid IS NOT NULL AND r.oid IS NOT NULL AND pg_has_role(r.oid, o.oid, 'USAGE'), false) AS member
      FROM (SELECT 1) one
      LEFT JOIN pg_roles r ON r.rolname = ${role}
      LEFT JOIN pg_class c ON c.oid = to_regclass(${AUDIT_TABLE})
      LEFT JOIN pg_roles o ON o.oid = c.relowner`.execute(db);
  const row = rows[0]!;
  if (!row.exists) return { exists: false, problem: `role ${role} does not exist` };
  if (row.superuser) return { exists: true, problem: `role ${role} is a superuser: it can do anything, grants or not` };
  if (row.owner === role) return { exists: true, problem: `role ${role} owns ${AUDIT_TABLE} (it ran the migrations): give the app a role of its own` };
  if (row.member) return { exists: true, problem: `role ${role} is a member of ${row.owner}, the owner of ${AUDIT_TABLE}, so it can act as the owner` };
  return { exists: true, problem: null };
}

/**
 * Whether `role` lacks any of the app's privileges or holds one it must not
 * have on audit_log: a catalogue read, so openApp can skip the GRANTs (and
 * their catalogue churn) when nothing changed.
 */
export async function grantsNeeded<DB>(db: Kysely<DB>, role: string): Promise<boolean> {
  const { rows } = await sql<{ needed: boolean }>`
    SELECT EXISTS (
      SELECT 1 FROM pg_class c
       WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) AND c.relkind IN ('r', 'p', 'v')
         AND CASE WHEN c.relkind NOT IN ('r', 'p', 'v') THEN false
                  WHEN c.relname = ${AUDIT_TABLE}
                  THEN NOT has_table_privilege(${role}, c.oid, 'SELECT') OR NOT has_table_privilege(${role}, c.oid, 'INSERT')
                       OR has_table_privilege(${role}, c.oid, 'UPDATE') OR has_table_privilege(${role}, c.oid, 'DELETE')
                       OR has_table_privilege(${role}, c.oid, 'TRUNCATE') OR has_table_privilege(${role}, c.oid, 'TRIGGER')
                  WHEN c.relname = ${SETUP_TABLE}
                  THEN has_table_privilege(${role}, c.oid, 'SELECT') OR has_table_privilege(${role}, c.oid, 'INSERT')
                       OR has_table_privilege(${role}, c.oid, 'UPDATE') OR has_table_privilege(${role}, c.oid, 'DELETE')
                       OR has_table_privilege(${role}, c.oid, 'TRUNCATE')
                  WHEN c.relname = ${HEALTH_TABLE}
                  THEN NOT has_table_privilege(${role}, c.oid, 'SELECT') OR NOT has_table_privilege(${role}, c.oid, 'UPDATE')
                       OR has_table_privilege(${role}, c.oid, 'INSERT') OR has_table_privilege(${role}, c.oid, 'DELETE')
                       OR has_table_privilege(${role}, c.oid, 'TRUNCATE')
                  ELSE NOT has_table_privilege(${role}, c.oid, 'SELECT') OR NOT has_table_privilege(${role}, c.oid, 'INSERT')
                       OR NOT has_table_privilege(${role}, c.oid, 'UPDATE') OR NOT has_table_privilege(${role}, c.oid, 'DELETE')
              END
    ) OR EXISTS (
      SELECT 1 FROM pg_class c
       WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) AND c.relkind = 'S'
         -- CASE, so that the planner never asks it of a relation that is not a sequence.
         AND CASE WHEN c.relkind = 'S' THEN NOT has_sequence_privilege(${role}, c.oid, 'USAGE') ELSE false END
    ) AS needed`.execute(db);
  return rows[0]!.needed;
}

/**
 * Applies grantStatements on the owner's connection, in one transaction.
 * Concurrent GRANTs on one object fail ("tuple concurrently updated"), so
 * instances starting together queue on a transaction-level advisory lock.
 */
export async function applyGrants<DB>(db: Kysely<DB>, role: string): Promise<string[]> {
  return db.transaction().execute(async (tx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtextextended('workflow-chatops:grants', 0))`.execute(tx);
    const { rows } = await sql<{ schema: string }>`SELECT current_schema() AS schema`.execute(tx);
    const statements = grantStatements(role, rows[0]!.schema);
    for (const statement of statements) await sql.raw(statement).execute(tx);
    return statements;
  });
}

export async function currentRole<DB>(db: Kysely<DB>): Promise<{ role: string; schema: string }> {
  const { rows } = await sql<{ role: string; schema: string }>`SELECT current_user AS role, current_schema() AS schema`.execute(db);
  return rows[0]!;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
