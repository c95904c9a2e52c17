import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { Listener } from '../db/listener.ts';
import { appendAudit } from '../db/queries/audit.ts';
import { isPaused } from '../db/queries/continuous.ts';
import { advanceSchedule, ensureSchedule, trySchedulerLeaderLock } from '../db/queries/schedules.ts';
import { dueTicks, nextTick } from '../lib/cron.ts';
import type { ResolvedWorkflow } from '../workflows/define.ts';
import type { Engine } from './engine.ts';

/**
 * Scheduled workflows (docs/workflows.md, "Schedules"): the leading serving
 * instance starts a `global_batch` of each scheduled workflow when its cron
 * ticks, under the usual rules (lock, rate limit, audit, notifications),
 * requested by and audited as `schedule`.
 *
 * - The state is in the database (workflow_schedules): the latest tick acted
 *   on. A tick after it that is due is acted on once: the leader moves it
 *   with a compare-and-set before starting, so a second leader (after a
 *   failover) cannot act on it again.
 * - Ticks missed while no instance served fold into one catch-up run: the
 *   state moves to the latest due tick, and the audit says how many were
 *   missed.
 * - A paused workflow (`pause`) starts nothing; its tick is consumed and
 *   audited as refused (`paused`), so `resume` does not set off a backlog.
 * - One leader: the holder of the "scheduler leader" advisory lock, on this
 *   component's own session (released when the instance or its connection
 *   dies; the others try again every LEADER_RETRY_MS).
 * - The clock is injected (`now`), and `tick()` is public, so tests drive
 *   the schedule without waiting for it.
 */

const ACTOR = 'schedule';
const LEADER_RETRY_MS = 5_000;
/** The longest the timer sleeps: a clock change or a schedule another instance moved is seen within it. */
const MAX_SLEEP_MS = 60_000;

export type ScheduleOutcome =
  | { workflowId: number; outcome: 'registered' | 'not_due'; next: Date | null }
  | { workflowId: number; outcome: 'started'; runId: number; tick: Date; missed: number }
  | { workflowId: number; outcome: 'refused'; reason: string; tick: Date; missed: number }
  | { workflowId: number; outcome: 'taken' | 'failed' };

export interface SchedulerOptions {
  engine: Engine;
  /** A session connection for the leader lock (DATABASE_LOCK_URL when set). */
  connectionString: string;
  /** Every workflow; those without `schedule` are ignored. */
  workflows: ResolvedWorkflow[];
  log: Logger;
  now?: () => Date;
  /** False: no timer; ticks only when tick() is called (tests). */
  timer?: boolean;
}

export class Scheduler extends EventEmitter {
  private readonly engine: Engine;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly workflows: ResolvedWorkflow[];
  private readonly listener: Listener;
  private readonly useTimer: boolean;
  private leader = false;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private leaderTimer: NodeJS.Timeout | null = null;
  private ticking: Promise<ScheduleOutcome[]> | null = null;

  constructor(options: SchedulerOptions) {
    super();
    this.engine = options.engine;
    this.log = options.log.child({ component: 'scheduler' });
    this.now = options.now ?? (() => new Date());
    this.workflows = options.workflows.filter((w) => w.schedule !== undefined);
    this.useTimer = options.timer ?? true;
    this.listener = new Listener({ connectionString: options.connectionString, applicationName: `workflow-scheduler:${this.engine.instanceId}`, channels: [] });
    this.listener.on('lost', () => {
      this.leader = false;
    });
    this.listener.on('reconnected', () => void this.tryLead());
  }

  get isLeader(): boolean {
    return this.leader && !this.closed;
  }

  /** Connects and tries to lead; with no scheduled workflow it does nothing at all. */
  async start(): Promise<void> {
    if (this.workflows.length === 0) return;
    this.leaderTimer = setInterval(() => void this.tryLead(), LEADER_RETRY_MS);
    this.leaderTimer.unref();
    try {
      await this.listener.start({ retry: true });
    } catch (error) {
      // It goes on trying; 'reconnected' brings it back to tryLead.
      this.log.warn({ err: error }, 'scheduler: could not connect; retrying');
      return;
    }
    await this.tryLead();
  }

  private async tryLead(): Promise<void> {
    const session = this.listener.session;
    if (this.closed || this.leader || !session) return;
    try {
      if (!(await trySchedulerLeaderLock(session)) || this.listener.session !== session) return;
    } catch (error) {
      this.log.debug({ err: error }, 'scheduler: leader lock attempt failed');
      return;
    }
    this.leader = true;
    this.log.info({ workflows: this.workflows.map((w) => w.id) }, 'scheduler: this instance starts scheduled workflows');
    this.emit('leader');
    await this.tickAndSleep();
  }

  private async tickAndSleep(): Promise<void> {
    const outcomes = await this.tick();
    if (!this.useTimer || this.closed) return;
    const now = this.now().getTime();
    const nexts = outcomes.flatMap((o) => ('next' in o && o.next ? [o.next.getTime()] : []));
    const wait = Math.min(MAX_SLEEP_MS, ...nexts.map((at) => Math.max(0, at - now + 5)));
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tickAndSleep(), wait);
    this.timer.unref();
  }

  /** One look at every schedule, as the leader; nothing when not leading. Concurrent calls share one pass. */
  tick(): Promise<ScheduleOutcome[]> {
    if (!this.isLeader) return Promise.resolve([]);
    this.ticking ??= (async () => {
      const outcomes: ScheduleOutcome[] = [];
      for (const workflow of this.workflows) {
        const outcome = await this.look(workflow).catch((error: unknown): ScheduleOutcome => {
          this.log.warn({ err: error, workflowId: workflow.id }, 'scheduler: look failed');
          return { workflowId: workflow.id, outcome: 'failed' };
        });
        outcomes.push(outcome);
        this.emit('outcome', outcome);
      }
      return outcomes;
    })().finally(() => (this.ticking = null));
    return this.ticking;
  }

  private async look(workflow: ResolvedWorkflow): Promise<ScheduleOutcome> {
    const schedule = workflow.schedule!;
    const timezone = schedule.timezone ?? 'UTC';
    const now = this.now();
    const db = this.engine.db;
    const state = await ensureSchedule(db, workflow.id, schedule.cron, timezone, now);
    const due = dueTicks({ cron: schedule.cron, timezone }, state.lastTick, now);
    if (!due) {
      const next = nextTick({ cron: schedule.cron, timezone }, state.lastTick);
      return { workflowId: workflow.id, outcome: state.lastTick.getTime() === now.getTime() ? 'registered' : 'not_due', next };
    }
    // The tick is ours to act on only if we move it first.
    if (!(await advanceSchedule(db, workflow.id, state.lastTick, due.latest))) return { workflowId: workflow.id, outcome: 'taken' };
    const missed = due.count - 1;
    const details = { mode: 'global_batch', tick: due.latest.toISOString(), missed_ticks: missed, cron: schedule.cron, timezone };
    const refused = async (reason: string, message: string, runId: number | null = null): Promise<ScheduleOutcome> => {
      await appendAudit(db, {
        actor: ACTOR,
        source: ACTOR,
        action: 'run',
        outcome: 'refused',
        workflowId: workflow.id,
        runId,
        reason: message,
        details: { ...details, refusal: reason },
      });
      this.log.info({ workflowId: workflow.id, reason }, 'scheduler: tick refused');
      return { workflowId: workflow.id, outcome: 'refused', reason, tick: due.latest, missed };
    };
    if (await isPaused(db, workflow.id))
      return refused('paused', `workflow ${workflow.id} is paused: its scheduled start at ${due.latest.toISOString()} was skipped`);
    const outcome = await this.engine.startRun({ workflow, mode: 'global_batch', force: false, requestedBy: ACTOR, source: ACTOR });
    if (!outcome.started)
      return refused(outcome.refusal.reason, outcome.refusal.message, outcome.refusal.reason === 'duplicate' ? outcome.refusal.running.id : null);
    await appendAudit(db, { actor: ACTOR, source: ACTOR, action: 'run', outcome: 'accepted', workflowId: workflow.id, runId: outcome.run.id, details });
    this.log.info({ workflowId: workflow.id, runId: outcome.run.id, missed }, 'scheduler: started a scheduled run');
    return { workflowId: workflow.id, outcome: 'started', runId: outcome.run.id, tick: due.latest, missed };
  }

  /** Stops ticking, waits for a pass in flight, releases the leader lock (by closing its session). */
  async close(): Promise<void> {
    this.closed = true;
    this.leader = false;
    if (this.timer) clearTimeout(this.timer);
    if (this.leaderTimer) clearInterval(this.leaderTimer);
    await this.ticking?.catch(() => {});
    await this.listener.close();
  }
}
