import { sql, type Kysely } from 'kysely';

// The domain table of the example workflow 3001 (src/workflows/postings).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE postings (
      id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      title               text NOT NULL,
      company             text,
      location            text,
      description         text NOT NULL,
      summary             text,
      skills              text[],
      ihl_score           integer CHECK (ihl_score BETWEEN 0 AND 100),
      summarized_at       timestamptz,
      skills_extracted_at timestamptz,
      ihl_scored_at       timestamptz,
      created_at          timestamptz NOT NULL DEFAULT now()
    )`.execute(db);

  // The engine claims a step's pending subjects by keyset pagination on id over
  // the step's pending query. Each partial index holds exactly one step's
  // pending set, so that claim is an index scan that touches only pending rows,
  // however many finished rows surround them. The predicates must match the
  // steps' WHERE clauses word for word or the planner cannot use them.
  await sql`CREATE INDEX postings_pending_summary ON postings (id) WHERE summary IS NULL`.execute(db);
  await sql`
    CREATE INDEX postings_pending_skills ON postings (id)
      WHERE summary IS NOT NULL AND skills IS NULL`.execute(db);
  await sql`
    CREATE INDEX postings_pending_ihl ON postings (id)
      WHERE summary IS NOT NULL AND skills IS NOT NULL AND ihl_score IS NULL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE postings`.execute(db);
}
