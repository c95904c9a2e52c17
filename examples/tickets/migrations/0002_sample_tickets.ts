import { type Kysely, sql } from 'workflow-chatops';

// Sample data, so that the example has work to do on a fresh database. A real
// project has its own rows and no such migration.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    INSERT INTO tickets (body)
    SELECT (ARRAY[
      'I was charged twice for my subscription this month',
      'The export button crashes the app with an error',
      'How do I invite a colleague to my workspace?',
      'Please refund the invoice I paid by mistake',
      'Login fails with error 500 since this morning',
      'Where can I change the language of the interface?',
      'Thanks for the quick help yesterday!'
    ])[1 + n % 7] || ' (#' || n || ')'
      FROM generate_series(1, 200) AS n`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DELETE FROM tickets`.execute(db);
}
