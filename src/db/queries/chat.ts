import { sql, type Kysely } from 'kysely';
import type { EngineTables } from '../schema.ts';

type Db = Kysely<EngineTables>;

/**
 * Claims the right to post a run's message in a channel. Every serving
 * instance hears every run event; the primary key makes exactly one of them
 * the poster, so a notification is posted once however many instances serve.
 */
export async function claimRunMessage(db: Db, runId: number, channel: string, instance: string): Promise<boolean> {
  const { rows } = await sql<{ run_id: number }>`
    INSERT INTO run_messages (run_id, channel, claimed_by) VALUES (${runId}, ${channel}, ${instance})
    ON CONFLICT DO NOTHING RETURNING run_id`.execute(db);
  return rows.length > 0;
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
