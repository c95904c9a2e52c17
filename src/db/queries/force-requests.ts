import { sql, type Kysely } from 'kysely';
import type { EngineTables, ForceRequestAsked, ForceRequestRow } from '../schema.ts';

type Db = Kysely<EngineTables>;

// Force requests (migrations/0031_force_requests.ts). Each change of status
// is one conditional UPDATE: whoever's statement matches the pending row
// acts, everyone else gets no row and is told what happened instead.

export async function fileForceRequest(
  db: Db,
  entry: {
    workflowId: number;
    request: ForceRequestAsked;
    requestedBy: string;
    requester: string;
    source: string;
    channel: string | null;
    expiresInSeconds: number;
  },
): Promise<ForceRequestRow> {
  const { rows } = await sql<ForceRequestRow>`
    INSERT INTO force_requests (workflow_id, request, requested_by, requester, source, channel, expires_at)
    VALUES (${entry.workflowId}, ${JSON.stringify(entry.request)}::jsonb, ${entry.requestedBy}, ${entry.requester}, ${entry.source}, ${entry.channel},
            now() + make_interval(secs => ${entry.expiresInSeconds}))
    RETURNING *`.execute(db);
  return rows[0]!;
}

export async function forceRequest(db: Db, id: number): Promise<ForceRequestRow | undefined> {
  return db.selectFrom('force_requests').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * Approves or rejects a pending request not yet expired, in one statement so
 * that two deciders cannot both act: the second finds no pending row. The
 * requester may withdraw (reject) their own request but not approve it; the
 * condition is here too, so no path around the service's check approves it.
 */
export async function decideForceRequest(
  db: Db,
  id: number,
  decision: 'approved' | 'rejected',
  decider: { id: string; identity: string },
): Promise<ForceRequestRow | undefined> {
  const { rows } = await sql<ForceRequestRow>`
    UPDATE force_requests SET status = ${decision}, decided_by = ${decider.id}, decided_at = now()
     WHERE id = ${id} AND status = 'pending' AND expires_at > now()
       AND (${decision} = 'rejected' OR requester <> ${decider.identity})
    RETURNING *`.execute(db);
  return rows[0];
}

/** Marks pending requests past their time expired (one, or all); each row comes back to exactly one caller, which audits it. */
export async function expireForceRequests(db: Db, id?: number): Promise<ForceRequestRow[]> {
  const { rows } = await sql<ForceRequestRow>`
    UPDATE force_requests SET status = 'expired', decided_at = expires_at
     WHERE status = 'pending' AND expires_at <= now() ${id === undefined ? sql`` : sql`AND id = ${id}`}
    RETURNING *`.execute(db);
  return rows;
}

/** The run an approval started; its message, perhaps already showing the approval, is marked behind so that it names the run too. */
export async function setForceRequestRun(db: Db, id: number, runId: number): Promise<void> {
  await sql`UPDATE force_requests SET run_id = ${runId}, message_status = NULL WHERE id = ${id}`.execute(db);
}

/**
 * Requests whose chat message is behind their status, each claimed for this
 * caller by moving message_status to the status it will show: a message to
 * post (pending, not yet posted, with a channel to post in) or to update.
 * SKIP LOCKED: two instances sweeping at once take different rows.
 */
export async function claimForceRequestMessages(db: Db, notifyChannel: string | null, limit: number): Promise<ForceRequestRow[]> {
  const { rows } = await sql<ForceRequestRow>`
    UPDATE force_requests f SET message_status = f.status, message_channel = coalesce(f.message_channel, f.channel, ${notifyChannel})
     WHERE f.id IN (SELECT id FROM force_requests
                     WHERE message_status IS DISTINCT FROM status
                       AND (message_ts IS NOT NULL OR (message_channel IS NULL AND coalesce(channel, ${notifyChannel}) IS NOT NULL))
                     ORDER BY id LIMIT ${limit} FOR UPDATE SKIP LOCKED)
    RETURNING f.*`.execute(db);
  return rows;
}

export async function setForceRequestMessageTs(db: Db, id: number, ts: string): Promise<void> {
  await sql`UPDATE force_requests SET message_ts = ${ts} WHERE id = ${id}`.execute(db);
}
