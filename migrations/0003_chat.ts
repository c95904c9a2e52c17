import { sql, type Kysely } from 'kysely';

// What the chat surfaces need to keep promises across instances: where a run
// reports, which message reports it (posted once, whichever instance wins),
// and which button clicks were already acted on.
export async function up(db: Kysely<unknown>): Promise<void> {
  // The channel a run was requested from; NULL = SLACK_NOTIFY_CHANNEL.
  await sql`ALTER TABLE workflow_runs ADD COLUMN notify_channel text`.execute(db);
  await sql`
    CREATE TABLE run_messages (
      run_id     bigint NOT NULL REFERENCES workflow_runs (id),
      channel    text NOT NULL,
      ts         text,
      claimed_by text NOT NULL,
      claimed_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (run_id, channel)
    )`.execute(db);
  await sql`
    CREATE TABLE handled_actions (
      key        text PRIMARY KEY,
      actor      text NOT NULL,
      handled_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE handled_actions, run_messages`.execute(db);
  await sql`ALTER TABLE workflow_runs DROP COLUMN notify_channel`.execute(db);
}
