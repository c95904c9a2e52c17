import { sql } from 'kysely';
import { appendAudit, notify } from '../db/queries/audit.ts';
import * as runs from '../db/queries/runs.ts';
import type { RunRow } from '../db/schema.ts';
import { createClient } from '../db/connect.ts';
import type { Engine } from './engine.ts';

export const QUEUE_CHANNEL = 'workflow_queue';
const SERVE_APP_PREFIX = 'workflow-serve:';
/** A NOTIFY can be missed while the listener reconnects; a slow poll catches those. */
const POLL_MS = 5_000;

/** Whether any instance is serving (its dispatcher's connection is visible to all). */
export async function servingInstances(engine: Engine): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE ${SERVE_APP_PREFIX + '%'}`.execute(engine.db);
  return rows[0]?.n ?? 0;
}

export async function enqueueRun(engine: Engine, values: runs.NewRunValues): Promise<RunRow> {
  const row = await runs.insertQueuedRun(engine.db, values);
  await notify(engine.db, QUEUE_CHANNEL, { runId: row.id });
  return row;
}

/**
 * The serving side of `run --detach`: picks queued runs up through the
 * database (NOTIFY, and a poll for missed ones) and starts them under the
 * normal rules. SKIP LOCKED lets any number of instances serve one database.
 */
export class Dispatcher {
  private client: ReturnType<typeof createClient> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private draining: Promise<void> | null = null;
  private closed = false;
  private listening = false;
  private readonly engine: Engine;
  private readonly connectionString: string;

  constructor(engine: Engine, connectionString: string) {
    this.engine = engine;
    this.connectionString = connectionString;
  }

  async start(): Promise<void> {
    await this.listen();
    this.timer = setInterval(() => void this.poke(), POLL_MS);
    await this.poke();
  }

  private async listen(): Promise<void> {
    const client = createClient({ connectionString: this.connectionString, applicationName: `${SERVE_APP_PREFIX}${this.engine.instanceId}` });
    this.client = client;
    let lost = false;
    let connected = false;
    const onLost = (error?: Error) => {
      // Before LISTEN succeeded, the failure is the caller's (listen() rejects).
      if (lost || !connected) return;
      lost = true;
      this.listening = false;
      if (this.closed) return;
      this.engine.log.warn({ err: error }, 'dispatcher connection lost; reconnecting');
      void client.end().catch(() => {});
      this.reconnect();
    };
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', () => void this.poke());
    await client.connect();
    try {
      await client.query(`LISTEN ${QUEUE_CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    connected = true;
    this.listening = true;
  }

  /** Database outage: listen again with backoff (0.25 s doubling to 5 s), then catch up. */
  private reconnect(attempt = 0): void {
    if (this.closed) return;
    const wait = Math.min(5_000, 250 * 2 ** attempt);
    const timer = setTimeout(() => {
      if (this.closed) return;
      this.listen().then(
        () => {
          this.engine.log.info('dispatcher reconnected');
          void this.poke();
        },
        () => this.reconnect(attempt + 1),
      );
    }, wait);
    timer.unref();
  }

  /** Whether this instance is serving: listening for queued runs. */
  get alive(): boolean {
    return this.listening && !this.closed;
  }

  /** Drains the queue; concurrent pokes share one pass. */
  poke(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.draining ??= this.drain().finally(() => (this.draining = null));
    return this.draining;
  }

  private async drain(): Promise<void> {
    try {
      await this.engine.recoverAbandoned();
      for (;;) {
        const queued = await runs.takeQueuedRun(this.engine.db, this.engine.instanceId);
        if (!queued || this.closed) return;
        await this.startQueued(queued);
      }
    } catch (error) {
      this.engine.log.warn({ err: error }, 'dispatcher pass failed');
    }
  }

  private async startQueued(queued: RunRow): Promise<void> {
    const workflow = this.engine.workflow(queued.workflow_id);
    const refuse = async (reason: string) => {
      await runs.refuseQueuedRun(this.engine.db, queued.id, reason);
      await appendAudit(this.engine.db, {
        actor: queued.requested_by,
        source: queued.source,
        action: 'run',
        outcome: 'refused',
        workflowId: queued.workflow_id,
        runId: queued.id,
        reason,
        details: { detached: true },
      });
    };
    if (!workflow) return refuse(`workflow ${queued.workflow_id} is not defined in this instance`);
    const outcome = await this.engine.startRun({
      workflow,
      mode: queued.mode,
      subjectId: queued.mode === 'single_subject' ? (queued.subject_id ?? undefined) : undefined,
      resumeRunId: queued.resumes_run_id ?? undefined,
      force: queued.action === 'force',
      requestedBy: queued.requested_by,
      source: queued.source,
      queuedRunId: queued.id,
      notifyChannel: queued.notify_channel ?? undefined,
    });
    if (!outcome.started) await refuse(outcome.refusal.message);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.draining;
    await this.client?.end().catch(() => {});
  }
}
