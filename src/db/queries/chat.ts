import { sql, type Kysely } from 'kysely';
import type { EngineTables } from '../schema.ts';

type Db = Kysely<EngineTables>;

/**
 * Claims the right to post a run's message in a channel, or to keep it
 * current. Every serving instance hears every run event; the primary key
 * makes exactly one of them the poster, so a notification is posted once
 * however many instances serve. A claim whose instance no longer serves (its
 * `workflow-serve:` session is gone: killed, shut down) passes to the next
 * instance that asks, with the message's ts, so that a run adopted after its
 * poster died keeps its one message (docs/architecture.md, Adoption).
 * Undefined: another live instance has it.
 */
export async function claimRunMessage(db: Db, runId: number, channel: string, instance: string): Promise<{ ts: string | null } | undefined> {
  const { rows } = await sql<{ ts: string | null }>`
    INSERT INTO run_messages AS m (run_id, channel, claimed_by) VALUES (${runId}, ${channel}, ${instance})
    ON CONFLICT (run_id, channel) DO UPDATE SET claimed_by = excluded.claimed_by, claimed_at = now()
     WHERE m.claimed_by <> excluded.claimed_by
       AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                        WHERE a.application_name = 'workflow-serve:' || m.claimed_by AND a.datname = current_database())
    RETURNING m.ts`.execute(db);
  return rows[0] && { ts: rows[0].ts };
}

export async function setRunMessageTs(db: Db, runId: number, channel: string, ts: string): Promise<void> {
  await sql`UPDATE run_messages SET ts = ${ts} WHERE run_id = ${runId} AND channel = ${channel}`.execute(db);
}

export async function runMessages(db: Db, runId: number): Promise<{ channel: string; ts: string | null; claimed_by: string }[]> {
  const { rows } = await sql<{ channel: string; ts: string | null; claimed_by: string }>`
    SELECT channel, ts, claimed_by FROM run_messages WHERE run_id = ${runId}`.execute(db);
  return rows;
}

/**
 * At most once per key (a button click's action_ts, say), across retries,
 * double clicks and instances: true for the first caller only.
 */
export async function claimAction(db: Db, key: string, actor: string): Promise<boolean> {
  const { rows } = await sql<{ key: string }>`
    INSERT INTO handled_actions (key, actor) VALUES (${key}, ${actor}) ON CONFLICT DO NOTHING RETURNING key`.execute(db);
  return rows.length > 0;
}
