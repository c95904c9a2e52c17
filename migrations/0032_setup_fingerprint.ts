import { sql, type Kysely } from 'kysely';

// What the last complete start-up setup (src/app.ts: migrations, the workflow
// modules' migrations, their query checks, the sync of definitions, triggers
// and grants) was done for: a hash of everything it depends on in the code
// (src/workflows/setup-fingerprint.ts). A process whose hash is the one
// stored skips that setup: one SELECT instead of a dozen round trips. One
// row, so that processes running different code take turns doing the whole
// setup rather than each trusting an older one's.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE setup_fingerprint (
      only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
      fingerprint text NOT NULL,
      recorded_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE setup_fingerprint`.execute(db);
}
