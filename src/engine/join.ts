import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { createKysely, createPool } from '../db/connect.ts';
import { Listener } from '../db/listener.ts';
import { failedSubjects } from '../db/queries/adoption.ts';
import type { WorkFence } from '../db/queries/fence.ts';
import { joinRun, joinableRuns, lockParticipant, markLeft, participantHeartbeat, type JoinableRun } from '../db/queries/participants.ts';
import { leaveUnfinished } from '../db/queries/release-claims.ts';
import type { ResolvedWorkflow } from '../workflows/define.ts';
import { ADOPT_POLL_MS } from './adoption.ts';
import { runApplicationName, type Engine } from './engine.ts';
import { EVENTS_CHANNEL, type RunEvent } from './events.ts';
import { CONTROL_CHANNEL, type ControlMessage } from './run-lock.ts';
import { Runner, participantStart, type StopCause } from './runner.ts';
import { handlerSlots } from './work.ts';

// Participants (docs/architecture.md, Participants): a serving instance works
// on running batches of the distributed workflows it defines that another
// instance owns. It learns of them from run_started events and from a look
// every ADOPT_POLL_MS (the adopters' interval), joins with a token of its own
// (its fence), claims pages of the run's steps beside the owner (the range
// claims keep them apart) and commits under its fence, until a wave finds
// nothing, the run stops, or it is fenced.

/** Claims, commits (two per step) and the heartbeat of one participation. */
const PARTICIPANT_POOL_SIZE = 8;

interface Participation {
  runner: Runner;
  done: Promise<void>;
}

export class Joiner {
  private readonly engine: Engine;
  private readonly workflows: ResolvedWorkflow[];
  private readonly connectionString: string;
  private readonly heartbeatMs: number;
  private readonly log: Logger;
  private readonly pollMs: number;
  private readonly listener: Listener;
  private readonly participations = new Map<number, Participation>();
  /** When this instance last left each run with nothing to do: it looks again only a poll later. */
  private readonly leftIdle = new Map<number, number>();
  private timer: NodeJS.Timeout | null = null;
  private pass: Promise<void> | null = null;
  private closed = false;

  constructor(
    engine: Engine,
    options: { connectionString: string; lockConnectionString?: string; workflows: ResolvedWorkflow[]; heartbeatMs: number; log: Logger; pollMs?: number },
  ) {
    this.engine = engine;
    this.workflows = options.workflows.filter((w) => w.distributed);
    this.connectionString = options.connectionString;
    this.heartbeatMs = options.heartbeatMs;
    this.log = options.log;
    this.pollMs = options.pollMs ?? ADOPT_POLL_MS;
    this.listener = new Listener({
      connectionString: options.lockConnectionString ?? options.connectionString,
      applicationName: `workflow-participant:${engine.instanceId}`,
      channels: [CONTROL_CHANNEL, EVENTS_CHANNEL],
    });
    this.listener.on('notification', (message) => {
      if (!message.payload) return;
      try {
        if (message.channel === CONTROL_CHANNEL) {
          const control = JSON.parse(message.payload) as ControlMessage;
          if (control.type === 'stop') this.participations.get(control.runId)?.runner.abort({ kind: 'stop', by: control.by });
        } else if (message.channel === EVENTS_CHANNEL) {
          const event = JSON.parse(message.payload) as RunEvent;
          if (event.type === 'run_started' && this.workflows.some((w) => w.id === event.workflowId)) void this.poke();
        }
      } catch {
        // Not ours.
      }
    });
    this.listener.on('lost', (error) => {
      if (!this.closed) this.log.warn({ err: error }, 'participant listener lost; reconnecting');
    });
    this.listener.on('reconnected', () => void this.poke());
  }

  async start(): Promise<void> {
    if (this.workflows.length === 0) return;
    await this.listener.start({ retry: true });
    this.timer = setInterval(() => void this.poke(), this.pollMs);
    this.timer.unref();
    await this.poke();
  }

  /** One look at a time; a poke during a look shares it. */
  poke(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.pass ??= this.look().finally(() => (this.pass = null));
    return this.pass;
  }

  private async look(): Promise<void> {
    try {
      const owned = new Set(this.engine.activeRuns().map((r) => r.id));
      const ids = this.workflows.map((w) => w.id);
      for (const run of await joinableRuns(this.engine.db, ids, this.engine.instanceId)) {
        if (this.closed) return;
        if (owned.has(run.id) || this.participations.has(run.id)) continue;
        if (Date.now() - (this.leftIdle.get(run.id) ?? 0) < this.pollMs) continue;
        await this.join(run);
      }
    } catch (error) {
      this.log.warn({ err: error }, 'participant look failed');
    }
  }

  private async join(run: JoinableRun): Promise<void> {
    const workflow = this.workflows.find((w) => w.id === run.workflow_id)!;
    const token = randomUUID();
    const slots = handlerSlots(workflow);
    const ordinal = await joinRun(this.engine.db, {
      runId: run.id,
      token,
      instance: this.engine.instanceId,
      slots,
      // Only for a run whose row does not say (started before migrations/0034).
      ownerSlots: slots,
      cap: workflow.runConcurrency ?? null,
    });
    if (ordinal === null) {
      // At debug: a run at its cap is refused again at every look, each second.
      this.log.debug({ runId: run.id, workflowId: workflow.id }, 'not joined: the run is at its runConcurrency, being stopped or no longer owned');
      return;
    }
    const log = this.log.child({ runId: run.id, workflowId: workflow.id, participant: token });
    // The run's application name: a force that terminates the run's connections ends a frozen participant's too.
    const pool = createPool({ connectionString: this.connectionString, applicationName: runApplicationName(run.id), max: PARTICIPANT_POOL_SIZE });
    const db = createKysely(pool);
    const fence: WorkFence = { runId: run.id, ownerToken: token, participant: true };
    let runner: Runner;
    try {
      const failed = await failedSubjects(db, run.id);
      runner = new Runner({
        db,
        workflow,
        fence,
        subjectId: null,
        heartbeatMs: this.heartbeatMs,
        log,
        failed,
        startAt: participantStart(ordinal),
        failedInRun: () => failedSubjects(db, run.id),
        beat: (progress) => participantHeartbeat(db, fence, progress),
      });
    } catch (error) {
      await pool.end().catch(() => {});
      throw error;
    }
    log.info('joined the run as a participant');
    const done = (async () => {
      let cause: StopCause | null = null;
      try {
        const execution = await runner.execute();
        cause = execution.cause;
        if (cause?.kind !== 'fenced' && cause?.kind !== 'lock-lost') {
          await db.transaction().execute(async (tx) => {
            if (!(await lockParticipant(tx, fence))) {
              cause = { kind: 'fenced' };
              return;
            }
            await leaveUnfinished(tx, { runId: run.id, workflowId: workflow.id, holder: token }, execution.unfinished);
            await markLeft(tx, fence, execution.progress);
          });
        }
        if (cause === null) this.leftIdle.set(run.id, Date.now());
        const done = Object.values(execution.progress).reduce((n, p) => n + p.done, 0);
        const ended = cause?.kind ?? 'no_work';
        if (ended === 'fenced') log.warn({ done }, 'participation ended: fenced (the run was stopped, taken over or its owner fenced this instance)');
        else log.info({ cause: ended, done }, `participation ended: ${ended}`);
      } catch (error) {
        log.warn({ err: error }, 'participation ended with an error');
      } finally {
        this.participations.delete(run.id);
        await pool.end().catch(() => {});
      }
    })();
    this.participations.set(run.id, { runner, done });
  }

  /** Runs this instance is a participant of. */
  participating(): number[] {
    return [...this.participations.keys()];
  }

  /**
   * Joins nothing more; participations get `graceMs` for their handlers in
   * flight, then stop: what finished is committed, the rest left pending.
   */
  async close(graceMs = 0): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.pass;
    const current = [...this.participations.values()];
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.all(
      current.map(async (p) => {
        await Promise.race([p.runner.quiesce(), grace]);
        p.runner.abort({ kind: 'shutdown' });
      }),
    );
    clearTimeout(timer);
    await Promise.all(current.map((p) => p.done));
    await this.listener.close();
  }
}
