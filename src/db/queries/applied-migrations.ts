import { sql, type Kysely } from 'kysely';

/**
 * The names recorded in a migration table, or undefined when the table does
 * not exist yet (a fresh database). Asked at every start, so it is one plain
 * SELECT: a missing table answers with undefined_table rather than with a
 * second query to the catalog first.
 */
export async function appliedMigrations<DB>(db: Kysely<DB>, table: string): Promise<string[] | undefined> {
  try {
    const { rows } = await sql<{ name: string }>`SELECT name FROM ${sql.table(table)}`.execute(db);
    return rows.map((r) => r.name);
  } catch (error) {
    if ((error as { code?: unknown }).code === '42P01') return undefined;
    throw error;
  }
}
