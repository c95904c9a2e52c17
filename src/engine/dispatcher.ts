import { sql } from 'kysely';
import { appendAudit, notify } from '../db/queries/audit.ts';
import * as runs from '../db/queries/runs.ts';
import type { RunRow } from '../db/schema.ts';
import { Listener } from '../db/listener.ts';
import type { Engine, Refusal } from './engine.ts';
import { publishRunEvent } from './events.ts';

export const QUEUE_CHANNEL = 'workflow_queue';
const SERVE_APP_PREFIX = 'workflow-serve:';
/** A NOTIFY can be missed while the listener reconnects; a slow poll catches those. */
const POLL_MS = 5_000;

/**
 * Whether any instance serves this database (its dispatcher's listening
 * connection is visible to all). A `serve` attached to another database of the
 * same server never sees this one's queue.
 */
export async function servingInstances(engine: Engine): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE application_name LIKE ${SERVE_APP_PREFIX + '%'} AND datname = current_database()`.execute(engine.db);
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
  private readonly listener: Listener;
  private timer: NodeJS.Timeout | null = null;
  private draining: Promise<void> | null = null;
  private closed = false;
  private readonly engine: Engine;

  /** `connectionString`: a session connection for LISTEN (DATABASE_LOCK_URL when set). */
  constructor(engine: Engine, connectionString: string) {
    this.engine = engine;
    this.listener = new Listener({ connectionString, applicationName: `${SERVE_APP_PREFIX}${engine.instanceId}`, channels: [QUEUE_CHANNEL] });
    this.listener.on('notification', () => void this.poke());
    this.listener.on('lost', (error) => {
      if (!this.closed) this.engine.log.warn({ err: error }, 'dispatcher connection lost; reconnecting');
    });
    this.listener.on('reconnected', () => {
      if (this.closed) return;
      this.engine.log.info('dispatcher reconnected');
      void this.poke();
    });
  }

  async start(): Promise<void> {
    await this.listener.start();
    this.timer = setInterval(() => void this.poke(), POLL_MS);
    await this.poke();
  }

  /** Whether this instance is serving: listening for queued runs. */
  get alive(): boolean {
    return this.listener.connected && !this.closed;
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
    // The audit entry first: whoever waits on the run (run --detach) reads why from it once the run has ended.
    const refuse = async (reason: string, refusal?: Refusal) => {
      await appendAudit(this.engine.db, {
        actor: queued.requested_by,
        source: queued.source,
        action: queued.action,
        outcome: 'refused',
        workflowId: queued.workflow_id,
        runId: queued.id,
        reason,
        details: {
          detached: true,
          refusal: refusal?.reason ?? 'not_defined',
          ...(refusal?.reason === 'rate_limited' ? { next_allowed_at: refusal.nextAllowedAt.toISOString() } : {}),
          ...(refusal?.reason === 'duplicate' ? { running_run_id: refusal.running.id } : {}),
        },
      });
      await runs.refuseQueuedRun(this.engine.db, queued.id, reason);
      // Announced where runs are (the run messages, the console): the one who asked may be gone by now.
      await publishRunEvent(this.engine.db, { type: 'run_ended', runId: queued.id, workflowId: queued.workflow_id });
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
    if (!outcome.started) await refuse(outcome.refusal.message, outcome.refusal);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.draining;
    await this.listener.close();
  }
}
