import { type Kysely, sql } from 'workflow-chatops';

// The workflow's domain table. Partial indexes on the rows each step still
// has to do keep its `pending` query cheap as the table grows.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE tickets (
      id bigserial PRIMARY KEY,
      body text NOT NULL,
      category text,
      priority smallint,
      created_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`CREATE INDEX tickets_pending_category ON tickets (id) WHERE category IS NULL`.execute(db);
  await sql`CREATE INDEX tickets_pending_priority ON tickets (id) WHERE category IS NOT NULL AND priority IS NULL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE tickets`.execute(db);
}
