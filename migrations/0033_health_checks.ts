import { sql, type Kysely } from 'kysely';

// The `health` command's limit and the latest findings, shared by every
// process on the database (src/db/queries/health-checks.ts). Any viewer may
// ask for a pass, and each CLI call is a new process, so a per-process limit
// holds nobody back: a pass starts only when one UPDATE … WHERE started_at is
// older than the interval moves started_at to now(). The findings of the
// latest full pass anywhere (on demand or the active monitor's tick) are what
// a refused request is shown. One row, inserted here: the app's role may read
// and update it, never insert or delete (src/db/grants.ts).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE health_checks (
      only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
      started_at  timestamptz,
      started_by  text,
      findings    jsonb,
      findings_at timestamptz,
      findings_by text
    )`.execute(db);
  await sql`INSERT INTO health_checks (only_row) VALUES (true)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE health_checks`.execute(db);
}
