import { sql, type Kysely } from 'kysely';

// Two-person approval for force (docs/workflows.md, "Force approval"): a
// force of a workflow that requires approval is filed here and happens only
// when a different admin approves it before it expires. Deciding is one
// UPDATE … WHERE status = 'pending' AND expires_at > now(), so of two
// deciders only one acts. The message columns let exactly one serving
// instance post a request's Slack message and bring it up to date with the
// status (message_status lags status until that instance has updated it).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE force_requests (
      id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      workflow_id     integer NOT NULL REFERENCES workflows (id),
      request         jsonb NOT NULL,
      requested_by    text NOT NULL,
      requester       text NOT NULL,
      source          text NOT NULL,
      channel         text,
      requested_at    timestamptz NOT NULL DEFAULT now(),
      expires_at      timestamptz NOT NULL,
      status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
      decided_by      text,
      decided_at      timestamptz,
      run_id          integer REFERENCES workflow_runs (id),
      message_channel text,
      message_ts      text,
      message_status  text
    )`.execute(db);
  // The sweep looks for pending requests past their time and messages behind their status.
  await sql`CREATE INDEX force_requests_pending ON force_requests (expires_at) WHERE status = 'pending'`.execute(db);
  await sql`CREATE INDEX force_requests_message_behind ON force_requests (id) WHERE message_status IS DISTINCT FROM status`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE force_requests`.execute(db);
}
