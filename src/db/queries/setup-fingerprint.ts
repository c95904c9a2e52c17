import { sql, type Kysely } from 'kysely';

// Asked by every CLI call before anything else on the setup connection, so it
// is one plain SELECT: a database that has no such table yet (fresh, or
// migrated by an older version) answers undefined_table, which means "do the
// whole setup", rather than a catalogue query first.

/** The fingerprint of the last complete setup, or undefined (none recorded, or no table yet). */
export async function storedFingerprint<DB>(db: Kysely<DB>): Promise<string | undefined> {
  try {
    const { rows } = await sql<{ fingerprint: string }>`SELECT fingerprint FROM setup_fingerprint`.execute(db);
    return rows[0]?.fingerprint;
  } catch (error) {
    if ((error as { code?: unknown }).code === '42P01') return undefined;
    throw error;
  }
}

/** Records the fingerprint of a setup that has just completed, replacing the one before. */
export async function recordFingerprint<DB>(db: Kysely<DB>, fingerprint: string): Promise<void> {
  await sql`
    INSERT INTO setup_fingerprint (only_row, fingerprint) VALUES (true, ${fingerprint})
    ON CONFLICT (only_row) DO UPDATE SET fingerprint = excluded.fingerprint, recorded_at = now()`.execute(db);
}

/** Forgets the fingerprint, before a setup that will record its own. */
export async function clearFingerprint<DB>(db: Kysely<DB>): Promise<void> {
  await sql`DELETE FROM setup_fingerprint`.execute(db);
}
