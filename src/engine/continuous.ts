import { EventEmitter } from 'node:events';
import type pg from 'pg';
import type { Logger } from 'pino';
import { Listener } from '../db/listener.ts';
import { appendAudit } from '../db/queries/audit.ts';
import { ensureWorkTrigger, isPaused, tryLeaderLock, WORK_CHANNEL } from '../db/queries/continuous.ts';
import { computeLockKey } from '../db/queries/locks.ts';
import * as runs from '../db/queries/runs.ts';
import type { ResolvedWorkflow } from '../workflows/define.ts';
import type { Engine } from './engine.ts';
import { EVENTS_CHANNEL, type RunEvent } from './events.ts';
import { expectedWork } from './snapshot.ts';

/**
 * Continuous workflows: a serving instance starts a
 * `global_batch` run of a continuous workflow when new work arrives.
 *
 * - A statement-level trigger on the workflow's subject table sends
 *   `NOTIFY workflow_work, '<id>'` (created here at start-up, idempotently).
 * - Bursts are coalesced: a notification (re)arms a trailing-edge timer of
 *   `debounceMs`, but never past `MAX_WAIT_FACTOR × debounceMs` after the
 *   first one, so a steady trickle still starts runs.
 * - Then an attempt: skipped while paused (`workflows.paused`) or while a
 *   batch of the workflow is running (its end is announced on the run events
 *   channel, and that end triggers a new look, so work that arrived during the
 *   run is picked up after it); skipped when nothing is pending (the engine's
 *   own saves also fire the trigger); otherwise `engine.startRun` under the
 *   normal rules, audited like a command (actor and source `continuous`).
 *   A rate-limit refusal schedules one retry at `nextAllowedAt`.
 * - A missed notification (connection lost, trigger bypassed) is caught by a
 *   pending-work check every `checkIntervalMs`, and at once on (re)connect
 *   and on becoming leader.
 * - Several instances: only the holder of the "continuous leader" advisory
 *   lock reacts (the lock lives on this component's listening session, so it
 *   goes when the instance or its connection dies, and the others try to take
 *   it every `LEADER_RETRY_MS` at most). The run lock would keep runs unique
 *   anyway; the leader keeps refusals out of the audit log.
 *
 * The leader lock rides on the Listener's session rather than a connection
 * of its own: the lock lives exactly as long as that session, and the
 * Listener already reports the session's end ('lost': the lock is gone, stop
 * leading) and a new one ('reconnected': try to lead again). A separate lock
 * connection would need a second reconnect loop to learn the same things,
 * and could hold the lock while this instance hears no notifications.
 */

/** The longest a burst can hold a start back, as a multiple of debounceMs. */
export const MAX_WAIT_FACTOR = 5;
const DEFAULT_DEBOUNCE_MS = 2_000;
const DEFAULT_CHECK_INTERVAL_MS = 60_000;
/** How often a follower tries to become leader (at most; sooner when a workflow checks more often). */
const LEADER_RETRY_MS = 5_000;
/** A rate-limit retry never comes sooner than this, whatever the clocks say (no refusal loops). */
const MIN_RETRY_MS = 250;
const ACTOR = 'continuous';

export type Trigger = 'notify' | 'check' | 'run_ended' | 'retry' | 'start' | 'reconnect' | 'leader';

/** What one look at a workflow came to; emitted as 'attempt' (tests and logs). */
export type AttemptOutcome =
  | { workflowId: number; trigger: Trigger; outcome: 'started'; runId: number; pending: number }
  | { workflowId: number; trigger: Trigger; outcome: 'refused'; reason: string; nextAllowedAt?: Date; pending: number }
  | { workflowId: number; trigger: Trigger; outcome: 'paused' | 'running' | 'no_work' | 'waiting' | 'failed' };

export interface ContinuousStarterOptions {
  engine: Engine;
  /** For LISTEN and the leader lock: a session connection (DATABASE_LOCK_URL when set, never a transaction pooler). */
  connectionString: string;
  /** Every workflow; those without `continuous` are ignored. */
  workflows: ResolvedWorkflow[];
  log: Logger;
}

interface WorkflowState {
  workflow: ResolvedWorkflow;
  debounceMs: number;
  checkIntervalMs: number;
  debounce: NodeJS.Timeout | null;
  firstSignalAt: number | null;
  retry: NodeJS.Timeout | null;
  /** No attempt before this (a rate-limit refusal's nextAllowedAt); the retry timer comes then. */
  notBefore: number;
  check: NodeJS.Timeout | null;
  attempting: Promise<void> | null;
  /** A look was asked for while one was in flight: look again after it. */
  again: Trigger | null;
}

export class ContinuousStarter extends EventEmitter {
  private readonly engine: Engine;
  private readonly log: Logger;
  private readonly states = new Map<number, WorkflowState>();
  private readonly listener: Listener;
  private leader = false;
  private closed = false;
  private leaderTimer: NodeJS.Timeout | null = null;

  constructor(options: ContinuousStarterOptions) {
    super();
    this.engine = options.engine;
    this.log = options.log.child({ component: 'continuous' });
    this.listener = new Listener({
      connectionString: options.connectionString,
      applicationName: this.applicationName,
      channels: [WORK_CHANNEL, EVENTS_CHANNEL],
    });
    this.listener.on('notification', (message) => this.onNotification(message));
    this.listener.on('lost', (error) => this.lost(error));
    this.listener.on('reconnected', () => {
      this.emit('connected');
      // Notifications sent while we were away are lost: look at every workflow now.
      void this.tryLead('reconnect');
    });
    for (const workflow of options.workflows) {
      if (!workflow.continuous) continue;
      this.states.set(workflow.id, {
        workflow,
        debounceMs: workflow.continuous.debounceMs ?? DEFAULT_DEBOUNCE_MS,
        checkIntervalMs: workflow.continuous.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS,
        debounce: null,
        firstSignalAt: null,
        retry: null,
        notBefore: 0,
        check: null,
        attempting: null,
        again: null,
      });
    }
  }

  /** The continuous workflows this instance watches. */
  get workflowIds(): number[] {
    return [...this.states.keys()];
  }

  /** Whether this instance is the one that reacts to new work. */
  get isLeader(): boolean {
    return this.leader && !this.closed;
  }

  /** The application_name of the listening connection (pg_stat_activity; tests terminate it). */
  get applicationName(): string {
    return `workflow-continuous:${this.engine.instanceId}`;
  }

  /**
   * Creates the work triggers, connects, and starts the periodic checks.
   * With no continuous workflow it does nothing at all.
   */
  async start(): Promise<void> {
    if (this.states.size === 0) return;
    for (const state of this.states.values()) {
      try {
        await ensureWorkTrigger(this.engine.db, state.workflow.id, state.workflow.continuous!.table);
      } catch (error) {
        // The periodic check still starts runs, only later.
        this.log.error(
          { err: error, workflowId: state.workflow.id },
          `could not create the work trigger on ${state.workflow.continuous!.table}; relying on the periodic check`,
        );
      }
      state.check = setInterval(() => void this.look(state, 'check'), state.checkIntervalMs);
      state.check.unref();
    }
    const leaderRetry = Math.min(LEADER_RETRY_MS, ...[...this.states.values()].map((s) => s.checkIntervalMs));
    this.leaderTimer = setInterval(() => void this.tryLead('leader'), leaderRetry);
    this.leaderTimer.unref();
    try {
      await this.listener.start({ retry: true });
    } catch (error) {
      this.log.warn({ err: error }, 'continuous: could not connect; retrying');
      return;
    }
    this.emit('connected');
    await this.tryLead('start');
  }

  private lost(error: Error): void {
    const wasLeader = this.leader;
    this.leader = false;
    if (this.closed) return;
    this.log.warn({ err: error, wasLeader }, 'continuous: listening connection lost; reconnecting');
    for (const state of this.states.values()) this.clearDebounce(state);
    this.emit('disconnected');
  }

  /** Takes the leader lock if free; on becoming leader, looks at every workflow. */
  private async tryLead(trigger: Trigger): Promise<void> {
    const session = this.listener.session;
    if (this.closed || !session || this.leader) return;
    let won = false;
    try {
      won = await tryLeaderLock(session);
    } catch (error) {
      this.log.debug({ err: error }, 'continuous: leader lock attempt failed');
      return;
    }
    // Won on a session that has since gone: the lock went with it.
    if (!won || this.listener.session !== session || this.closed) return;
    this.leader = true;
    this.log.info({ workflows: this.workflowIds }, 'continuous: this instance starts continuous workflows');
    this.emit('leader');
    for (const state of this.states.values()) void this.look(state, trigger);
  }

  private onNotification(message: pg.Notification): void {
    if (!this.leader || this.closed || !message.payload) return;
    if (message.channel === WORK_CHANNEL) {
      const state = this.states.get(Number(message.payload));
      if (state) this.signal(state, 'notify');
    } else if (message.channel === EVENTS_CHANNEL) {
      let event: RunEvent;
      try {
        event = JSON.parse(message.payload) as RunEvent;
      } catch {
        return;
      }
      const state = this.states.get(event.workflowId);
      // Work that arrived while the run went on (its look was skipped as `running`) is picked up now.
      if (state && event.type === 'run_ended') this.signal(state, 'run_ended');
    }
  }

  /** Debounce: trailing edge, at most MAX_WAIT_FACTOR × debounceMs after the burst's first signal. */
  private signal(state: WorkflowState, trigger: Trigger): void {
    const now = Date.now();
    state.firstSignalAt ??= now;
    const due = Math.min(now + state.debounceMs, state.firstSignalAt + state.debounceMs * MAX_WAIT_FACTOR);
    if (state.debounce) clearTimeout(state.debounce);
    state.debounce = setTimeout(
      () => {
        this.clearDebounce(state);
        void this.look(state, trigger);
      },
      Math.max(0, due - now),
    );
  }

  private clearDebounce(state: WorkflowState): void {
    if (state.debounce) clearTimeout(state.debounce);
    state.debounce = null;
    state.firstSignalAt = null;
  }

  /** One look at a time per workflow; a look asked for meanwhile happens after it. */
  private look(state: WorkflowState, trigger: Trigger): Promise<void> {
    if (this.closed || !this.leader) return Promise.resolve();
    if (state.attempting) {
      state.again = trigger;
      return state.attempting;
    }
    state.attempting = this.attempt(state, trigger)
      .then(
        (outcome) => {
          this.emit('attempt', outcome);
        },
        (error) => {
          this.log.warn({ err: error, workflowId: state.workflow.id, trigger }, 'continuous: look failed');
          this.emit('attempt', { workflowId: state.workflow.id, trigger, outcome: 'failed' } satisfies AttemptOutcome);
        },
      )
      .finally(() => {
        state.attempting = null;
        const again = state.again;
        state.again = null;
        if (again) void this.look(state, again);
      });
    return state.attempting;
  }

  private async attempt(state: WorkflowState, trigger: Trigger): Promise<AttemptOutcome> {
    const { workflow } = state;
    const db = this.engine.db;
    const base = { workflowId: workflow.id, trigger };
    if (Date.now() < state.notBefore) return { ...base, outcome: 'waiting' };
    if (await isPaused(db, workflow.id)) return { ...base, outcome: 'paused' };
    // A batch is going (here or elsewhere): its end brings us back. Cheaper and
    // quieter than asking the engine, which would audit a duplicate refusal.
    const lockKey = await computeLockKey(db, workflow.id, null);
    if (await runs.runningRunWithLockKey(db, lockKey)) return { ...base, outcome: 'running' };
    const work = await expectedWork(db, workflow, null);
    const pending = Object.values(work).reduce((n, count) => n + count, 0);
    if (pending === 0) return { ...base, outcome: 'no_work' };

    const details = { mode: 'global_batch', trigger, pending: work };
    const outcome = await this.engine.startRun({ workflow, mode: 'global_batch', force: false, requestedBy: ACTOR, source: ACTOR });
    if (outcome.started) {
      await appendAudit(db, { actor: ACTOR, source: ACTOR, action: 'run', outcome: 'accepted', workflowId: workflow.id, runId: outcome.run.id, details });
      this.log.info({ workflowId: workflow.id, runId: outcome.run.id, trigger, pending }, 'continuous: started a run');
      return { ...base, outcome: 'started', runId: outcome.run.id, pending };
    }
    const { refusal } = outcome;
    await appendAudit(db, {
      actor: ACTOR,
      source: ACTOR,
      action: 'run',
      outcome: 'refused',
      workflowId: workflow.id,
      runId: refusal.reason === 'duplicate' ? refusal.running.id : null,
      reason: refusal.message,
      details: { ...details, refusal: refusal.reason, ...(refusal.reason === 'rate_limited' ? { next_allowed_at: refusal.nextAllowedAt.toISOString() } : {}) },
    });
    if (refusal.reason === 'rate_limited') {
      this.scheduleRetry(state, refusal.nextAllowedAt);
      return { ...base, outcome: 'refused', reason: refusal.reason, nextAllowedAt: refusal.nextAllowedAt, pending };
    }
    // duplicate / busy: a run got there first; its end brings us back.
    return { ...base, outcome: 'refused', reason: refusal.reason, pending };
  }

  private scheduleRetry(state: WorkflowState, at: Date): void {
    const delay = Math.max(MIN_RETRY_MS, at.getTime() - Date.now() + 20);
    state.notBefore = Date.now() + delay - 20;
    if (state.retry) clearTimeout(state.retry);
    state.retry = setTimeout(() => {
      state.retry = null;
      state.notBefore = 0;
      void this.look(state, 'retry');
    }, delay);
    state.retry.unref();
  }

  /** Stops reacting, waits for looks in flight, releases the leader lock (by closing its session). */
  async close(): Promise<void> {
    this.closed = true;
    this.leader = false;
    if (this.leaderTimer) clearInterval(this.leaderTimer);
    for (const state of this.states.values()) {
      this.clearDebounce(state);
      if (state.retry) clearTimeout(state.retry);
      if (state.check) clearInterval(state.check);
    }
    await Promise.allSettled([...this.states.values()].map((s) => s.attempting));
    await this.listener.close();
  }
}
