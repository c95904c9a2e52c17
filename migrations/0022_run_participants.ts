import { sql, type Kysely } from 'kysely';

// Several instances on one run (docs/architecture.md, Participants):
// - run_participants: one row per instance that joined a running run besides
//   its owner, keyed by (run_id, token). The token is the participant's fence:
//   its claims and commits lock this row FOR KEY SHARE while it is neither
//   fenced nor left, so whoever fences it (the owner at the run's end, an
//   adopter) waits for its writes in flight and every later one finds
//   nothing. A row stays after its participant leaves: its progress is part
//   of the run's counters and the audit's owners/participants list.
// - interaction_claims.holder: which participant holds a claim (null: the
//   owner), so a participant's claims can be released without the owner's.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE run_participants (
      run_id       bigint NOT NULL,
      token        uuid NOT NULL,
      instance     text NOT NULL,
      slots        integer NOT NULL,
      joined_at    timestamptz NOT NULL DEFAULT now(),
      heartbeat_at timestamptz NOT NULL DEFAULT now(),
      progress     jsonb NOT NULL DEFAULT '{}',
      left_at      timestamptz,
      fenced_at    timestamptz,
      PRIMARY KEY (run_id, token)
    )`.execute(db);
  await sql`ALTER TABLE interaction_claims ADD COLUMN holder uuid`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE interaction_claims DROP COLUMN holder`.execute(db);
  await sql`DROP TABLE run_participants`.execute(db);
}
