import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import PQueue from 'p-queue';
import type pg from 'pg';
import type { Logger } from 'pino';
import { createKysely, createPool, type Db } from '../db/connect.ts';
import { personLabel } from '../lib/person.ts';
import { relativeTime, utcText } from '../lib/relative-time.ts';
import { adopterPresent, failedSubjects, releaseRun } from '../db/queries/adoption.ts';
import { appendAudit, notify } from '../db/queries/audit.ts';
import { leaveUnfinished } from '../db/queries/release-claims.ts';
import { computeLockKey, lockHolderPid, terminateBackends } from '../db/queries/locks.ts';
import * as runs from '../db/queries/runs.ts';
import { isActive, isResumable, ownerEnding, runAction } from '../db/run-states.ts';
import type { ExpectedWork, Metrics, RunMode, RunProgress, RunRow } from '../db/schema.ts';
import type { ResolvedWorkflow } from '../workflows/define.ts';
import { enqueueRun, servingInstances } from './dispatcher.ts';
import { publishRunEvent, RunEventListener } from './events.ts';
import { ADOPT_CHANNEL, exactTotals, takeOwnership } from './adoption.ts';
import { RunCoordinator } from './participants.ts';
import { announceRecovery, recoverRun } from './recovery.ts';
import { CONTROL_CHANNEL, RunLock } from './run-lock.ts';
import { Runner, type StopCause } from './runner.ts';
import { handlerSlots } from './work.ts';
import { delta, expectedWork, forecastWork, takeSnapshot } from './snapshot.ts';
import { Store } from './store.ts';

export interface EngineOptions {
  connectionString: string;
  /** A direct connection for advisory locks (never through a transaction-pooling proxy). */
  lockConnectionString?: string;
  workflows: ResolvedWorkflow[];
  log: Logger;
  heartbeatMs: number;
  forceGraceMs: number;
  /** Shown in pg_stat_activity and on every run this instance owns. */
  instanceId?: string;
  /** WORKFLOW_MAX_ADOPTIONS: adoptions in a row without progress before a run ends `abandoned` (crash_loop). Default 3. */
  maxAdoptions?: number;
  /**
   * statement_timeout and lock_timeout of the instance pool, the command
   * path's (DATABASE_STATEMENT_TIMEOUT_MS, DATABASE_LOCK_TIMEOUT_MS). The run
   * pools have none: their statements are the run's work.
   */
  timeouts?: { statementMs: number; lockMs: number };
}

export interface RunRequest {
  workflow: ResolvedWorkflow;
  mode: RunMode;
  subjectId?: number;
  /** single_run: the run to resume. */
  resumeRunId?: number;
  force: boolean;
  requestedBy: string;
  source: string;
  /** A run queued by `run --detach`, picked up by this serving instance. */
  queuedRunId?: number;
  /** The chat channel the run reports to (where it was requested); none = the configured notify channel. */
  notifyChannel?: string;
}

export type Refusal =
  | { reason: 'duplicate'; message: string; running: RunRow }
  | { reason: 'rate_limited'; message: string; nextAllowedAt: Date; lastStartAt: Date }
  | { reason: 'not_resumable'; message: string }
  | { reason: 'busy'; message: string };

export type StartOutcome = { started: true; run: ActiveRun } | { started: false; refusal: Refusal };

export type AdoptOutcome = { kind: 'adopted'; run: ActiveRun } | { kind: 'abandoned'; run: RunRow } | { kind: 'skipped' };

/** `run --detach` is also refused when no instance serves the queue. */
export type QueueRefusal = Refusal | { reason: 'no_server'; message: string };
export type QueueOutcome = { queued: true; run: RunRow } | { queued: false; refusal: QueueRefusal };

export interface RunSummary {
  run: RunRow;
  /**
   * How it ended locally; `taken_over` and `lock_lost` mean this process
   * wrote nothing at the end; `handed_off`: released for adoption on
   * shutdown, the run goes on elsewhere.
   */
  outcome: 'completed' | 'failed' | 'stopped' | 'taken_over' | 'lock_lost' | 'handed_off';
  stateBefore: Metrics;
  stateAfter: Metrics | null;
  delta: Metrics | null;
  progress: RunProgress;
}

/** A run this process owns. `done` settles when it has ended and released its lock. */
export interface ActiveRun {
  id: number;
  row: RunRow;
  workflow: ResolvedWorkflow;
  stateBefore: Metrics;
  /** The forecast per step (snapshot.ts, forecastWork). */
  expectedWork: ExpectedWork;
  /** Interactions this run can expect in all: the forecast summed. */
  estimatedInteractions: number;
  progress(): RunProgress;
  stop(cause: StopCause): void;
  /** Starts no more handlers; resolves when none is in flight (graceful shutdown). */
  quiesce(): Promise<void>;
  done: Promise<RunSummary>;
}

/** Two claim feeders per step, two flushes per step, the heartbeat. */
const RUN_POOL_SIZE = 8;
/** How long a contending request looks for the lock holder's run row. */
const HOLDER_WAIT_MS = 3_000;

export class Engine extends EventEmitter {
  readonly instanceId: string;
  readonly db: Db;
  /** What the command layer reads and writes in the database besides starting and stopping runs. */
  readonly store: Store;
  private readonly pool: pg.Pool;
  private readonly active = new Map<number, ActiveRun>();
  private readonly workflowsById: Map<number, ResolvedWorkflow>;
  private closing = false;
  /** Starts in progress at once per instance, each holding a lock connection (see startRun). */
  private readonly starts = new PQueue({ concurrency: 4 });
  private readonly options: EngineOptions;

  constructor(options: EngineOptions) {
    super();
    this.options = options;
    this.instanceId = options.instanceId ?? `${process.pid}-${randomUUID().slice(0, 8)}`;
    this.pool = createPool({
      connectionString: options.connectionString,
      applicationName: `workflow:${this.instanceId}`,
      max: 8,
      statementTimeoutMs: options.timeouts?.statementMs,
      lockTimeoutMs: options.timeouts?.lockMs,
    });
    this.db = createKysely(this.pool);
    this.store = new Store(this.db, this.instanceId);
    this.workflowsById = new Map(options.workflows.map((w) => [w.id, w]));
  }

  get log(): Logger {
    return this.options.log;
  }

  /** A defined workflow by id; an arrow, so that recovery can take it as it is (a lost run's claims are read with its steps' pending queries). */
  readonly workflow = (id: number): ResolvedWorkflow | undefined => this.workflowsById.get(id);

  activeRuns(): ActiveRun[] {
    return [...this.active.values()];
  }

  /**
   * Starts a run under the safety rules (docs/architecture.md, Safety rules):
   * lock, recovery of a dead predecessor, rate limit, force. Refusals create
   * no run.
   */
  startRun(request: RunRequest): Promise<StartOutcome> {
    // A burst of requests (100 people clicking, several instances) would
    // otherwise open a lock connection each before the first run row exists
    // and exhaust max_connections (PostgreSQL's default is 100); in line,
    // each finds the running run with the pool's connection and is refused.
    return this.starts.add(() => this.startRunNow(request)) as Promise<StartOutcome>;
  }

  private async startRunNow(request: RunRequest): Promise<StartOutcome> {
    const { workflow } = request;
    if (this.closing) return { started: false, refusal: { reason: 'busy', message: 'this instance is shutting down; try again in a moment' } };
    let scopeSubject: number | null = request.subjectId ?? null;
    let resumed: RunRow | undefined;
    if (request.mode === 'single_run') {
      resumed = await runs.getRun(this.db, request.resumeRunId!);
      // A run whose owner died stays `running` until someone looks: look now. One a serving instance adopts stays running.
      if (resumed?.status === 'running' && resumed.workflow_id === workflow.id) resumed = (await this.recoverIfOwnerGone(resumed)) ?? resumed;
      const problem = !resumed
        ? `run ${request.resumeRunId} does not exist`
        : resumed.workflow_id !== workflow.id
          ? `run ${resumed.id} belongs to workflow ${resumed.workflow_id}, not ${workflow.id}`
          : !isResumable(resumed.status)
            ? `run ${resumed.id} is ${resumed.status}; only a stopped, failed or abandoned run can be resumed`
            : null;
      if (problem) return { started: false, refusal: { reason: 'not_resumable', message: problem } };
      scopeSubject = resumed!.subject_id;
    }
    const lockKey = await computeLockKey(this.db, workflow.id, scopeSubject);
    if (!request.force) {
      // A plain duplicate is refused without a connection of its own: a burst of
      // requests (many instances, many users) must not use up max_connections.
      const holder = await runs.runningRunWithLockKey(this.db, lockKey);
      if (holder && (await lockHolderPid(this.db, lockKey)) !== null) {
        return { started: false, refusal: { reason: 'duplicate', message: describeDuplicate(holder, workflow), running: holder } };
      }
    }
    const lock = await RunLock.connect(this.lockConnectionString, `workflow-lock:${this.instanceId}`);
    try {
      let forced: RunRow | undefined;
      const contention = await this.acquireOrFindHolder(lock, lockKey);
      if (contention) {
        const holder = contention.holder;
        if (!request.force) {
          await lock.close();
          if (!holder)
            return { started: false, refusal: { reason: 'busy', message: `workflow ${workflow.id} is starting or ending a run; try again in a moment` } };
          return { started: false, refusal: { reason: 'duplicate', message: describeDuplicate(holder, workflow), running: holder } };
        }
        forced = await this.takeOver(lock, lockKey, holder, request.requestedBy);
      }
      // We hold the lock: any run still marked running under it has lost its owner.
      const orphan = await runs.runningRunWithLockKey(this.db, lockKey);
      if (orphan && !(await recoverRun(this.db, orphan.id, 'owner_lost', { workflows: this.workflow, evenIfAdoptable: request.force }))) {
        const still = await runs.getRun(this.db, orphan.id);
        if (still?.status === 'running') {
          // A serving instance adopts it within a second or so (docs/architecture.md, Adoption): it is the running run.
          await lock.close();
          const message = `${describeDuplicate(still, workflow)}; its owner was lost and a serving instance is taking it over`;
          return { started: false, refusal: { reason: 'duplicate', message, running: still } };
        }
      }

      if (request.mode === 'global_batch' && !request.force) {
        const last = await runs.lastBatchStart(this.db, workflow.id);
        const nextAllowedAt = last && new Date(last.getTime() + workflow.rateLimitSeconds * 1000);
        if (nextAllowedAt && nextAllowedAt.getTime() > Date.now()) {
          await lock.close();
          return {
            started: false,
            refusal: {
              reason: 'rate_limited',
              lastStartAt: last!,
              nextAllowedAt,
              message: `workflow ${workflow.id} last started a batch at ${utcText(last!)} (${relativeTime(last!)}); the next start is allowed at ${utcText(nextAllowedAt)} (${relativeTime(nextAllowedAt)}; force starts it now)`,
            },
          };
        }
      }
      const run = await this.begin(request, lock, lockKey, scopeSubject, resumed, forced);
      return { started: true, run };
    } catch (error) {
      await lock.close();
      throw error;
    }
  }

  /**
   * `run --detach`: hands the run to a serving instance (dispatcher.ts). The
   * guards are checked here first so that a refusal reaches the person who
   * asked at once; the serving instance checks them all again when it starts
   * the run, so these are the cheap ones, without the lock.
   */
  async queueRun(request: RunRequest): Promise<QueueOutcome> {
    const { workflow } = request;
    if ((await servingInstances(this)) === 0) {
      const message = 'no instance is serving: start one with `workflow serve` (or `npm start`), or run without --detach';
      return { queued: false, refusal: { reason: 'no_server', message } };
    }
    const scope = request.mode === 'single_subject' ? (request.subjectId ?? null) : null;
    const lockKey = await computeLockKey(this.db, workflow.id, scope);
    if (!request.force) {
      const running = await runs.runningRunWithLockKey(this.db, lockKey);
      if (running) {
        const message = describeDuplicate(running, workflow);
        return { queued: false, refusal: { reason: 'duplicate', message, running } };
      }
    }
    const run = await enqueueRun(this, {
      workflowId: workflow.id,
      mode: request.mode,
      subjectId: request.subjectId ?? null,
      resumesRunId: request.resumeRunId ?? null,
      lockKey,
      action: runAction(request),
      requestedBy: request.requestedBy,
      source: request.source,
      forcedBy: null,
      forcedRunId: null,
      notifyChannel: request.notifyChannel ?? null,
    });
    return { queued: true, run };
  }

  /**
   * Whether a global_batch of `workflow` would start now, without trying:
   * the run holding its lock (a running row whose lock is held), else the
   * rate limit's next allowed start. Reads only, for `plan`; the real start
   * checks both again under the lock.
   */
  async preflight(workflow: ResolvedWorkflow): Promise<{ running?: RunRow; lastStartAt?: Date; nextAllowedAt?: Date }> {
    const lockKey = await computeLockKey(this.db, workflow.id, null);
    const holder = await runs.runningRunWithLockKey(this.db, lockKey);
    if (holder && (await lockHolderPid(this.db, lockKey)) !== null) return { running: holder };
    const last = await runs.lastBatchStart(this.db, workflow.id);
    if (!last) return {};
    const next = new Date(last.getTime() + workflow.rateLimitSeconds * 1000);
    return next.getTime() > Date.now() ? { lastStartAt: last, nextAllowedAt: next } : { lastStartAt: last };
  }

  /**
   * Takes the lock, or finds the run holding it. A holder may have the lock
   * but not yet its run row (two requests at the same moment), or may give
   * the lock up at once (refused by the rate limit): so look for its row, and
   * try the lock again, for a short while before calling it busy.
   */
  private async acquireOrFindHolder(lock: RunLock, lockKey: number): Promise<{ holder: RunRow | undefined } | null> {
    const deadline = Date.now() + HOLDER_WAIT_MS;
    for (;;) {
      if (await lock.tryAcquire(lockKey)) return null;
      const holder = await runs.runningRunWithLockKey(this.db, lockKey);
      if (holder || Date.now() > deadline) return { holder };
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  private get lockConnectionString(): string {
    return this.options.lockConnectionString ?? this.options.connectionString;
  }

  /**
   * Force (docs/architecture.md, Safety rules): ask the holder to stop, give
   * it the grace period, then terminate its backends and take the lock.
   * Returns the run taken over.
   */
  private async takeOver(lock: RunLock, lockKey: number, holder: RunRow | undefined, by: string): Promise<RunRow | undefined> {
    if (holder) {
      await runs.requestStop(this.db, holder.id, by, { channel: CONTROL_CHANNEL, payload: { type: 'stop', runId: holder.id, by } });
    }
    if (await lock.waitAcquire(lockKey, this.options.forceGraceMs)) return holder;
    const pid = await lockHolderPid(this.db, lockKey);
    const terminated = await terminateBackends(this.db, { pid, applicationName: holder ? runApplicationName(holder.id) : '-' });
    this.log.warn({ runId: holder?.id, pid, terminated }, 'force: owner did not stop within the grace period; terminated its connections');
    if (!(await lock.waitAcquire(lockKey, this.options.forceGraceMs))) {
      throw new Error(`force: could not take the lock of workflow run ${holder?.id ?? '?'} even after terminating its holder`);
    }
    if (holder) await recoverRun(this.db, holder.id, 'forced', { workflows: this.workflow, stoppedBy: by });
    return holder;
  }

  private async begin(
    request: RunRequest,
    lock: RunLock,
    lockKey: number,
    scopeSubject: number | null,
    resumed: RunRow | undefined,
    forced: RunRow | undefined,
  ): Promise<ActiveRun> {
    const { workflow } = request;
    const owner: runs.RunOwner = { token: randomUUID(), instance: this.instanceId, slots: handlerSlots(workflow) };
    const values: runs.NewRunValues = {
      workflowId: workflow.id,
      mode: request.mode,
      subjectId: scopeSubject,
      resumesRunId: resumed?.id ?? null,
      lockKey,
      action: runAction(request),
      requestedBy: request.requestedBy,
      source: request.source,
      forcedBy: forced ? request.requestedBy : null,
      forcedRunId: forced?.id ?? null,
      notifyChannel: request.notifyChannel ?? null,
    };
    let row: RunRow | undefined;
    if (request.queuedRunId !== undefined) {
      row = await runs.startQueuedRun(this.db, request.queuedRunId, lockKey, owner);
      if (!row) throw new Error(`queued run ${request.queuedRunId} was taken by another instance`);
    } else {
      row = await runs.insertRunningRun(this.db, values, owner);
    }
    if (forced) {
      await runs.setTakenOverBy(this.db, forced.id, row.id);
      // Its end was announced before this run existed; announce it again, now naming its successor.
      await publishRunEvent(this.db, { type: 'run_ended', runId: forced.id, workflowId: forced.workflow_id });
    }
    const fence = { runId: row.id, ownerToken: owner.token };
    const runPool = createPool({ connectionString: this.options.connectionString, applicationName: runApplicationName(row.id), max: RUN_POOL_SIZE });
    const runDb = createKysely(runPool);
    const log = this.log.child({ runId: row.id, workflowId: workflow.id });
    try {
      const stateBefore = await takeSnapshot(runDb, workflow);
      const pending = await expectedWork(runDb, workflow, scopeSubject);
      const work = forecastWork(
        pending,
        workflow.steps.map((s) => s.name),
      );
      await runs.recordStartState(runDb, fence, { stateBefore, expectedWork: work, pendingWork: pending });
      row = { ...row, state_before: stateBefore, expected_work: work, pending_work: pending, metric_names: Object.keys(stateBefore) } as RunRow;
      return await this.launch({ row, workflow, lock, fence, runPool, runDb, scopeSubject, stateBefore, work, log });
    } catch (error) {
      await runPool.end().catch(() => {});
      throw error;
    }
  }

  /** Runs a run this process owns (started or adopted) until it ends, hands off or is lost; resolves once it is running. */
  private async launch(run: {
    row: RunRow;
    workflow: ResolvedWorkflow;
    lock: RunLock;
    fence: runs.Fence;
    runPool: pg.Pool;
    runDb: Db;
    scopeSubject: number | null;
    stateBefore: Metrics;
    work: ExpectedWork;
    log: Logger;
    adopted?: { progress: RunProgress; failed: Record<string, number[]>; careful: boolean };
  }): Promise<ActiveRun> {
    const { row, workflow, lock, fence, runPool, runDb, scopeSubject, stateBefore, work, log } = run;
    // A distributed batch: other serving instances join it (docs/architecture.md, Participants); this owner coordinates.
    const coordinator =
      workflow.distributed && scopeSubject === null
        ? new RunCoordinator({ db: runDb, runId: row.id, workflows: this.workflow, heartbeatMs: this.options.heartbeatMs, log })
        : undefined;
    const runner = new Runner({
      extraProgress: coordinator?.progress,
      settle: coordinator?.settle,
      failedInRun: coordinator && (() => failedSubjects(runDb, row.id)),
      db: runDb,
      workflow,
      fence,
      subjectId: scopeSubject,
      heartbeatMs: this.options.heartbeatMs,
      log,
      base: run.adopted?.progress,
      failed: run.adopted?.failed,
      careful: run.adopted?.careful,
      // A lock connection that stays silent past two heartbeats (and at least 5 s, so a
      // busy server is not mistaken for a partition) is not trusted to hold the lock.
      verifyLock: () => lock.verify(Math.max(2 * this.options.heartbeatMs, 5_000)),
    });
    lock.onLost((error) => runner.abort({ kind: 'lock-lost', error: error.message }));
    lock.onControl((message) => {
      if (message.type === 'stop' && message.runId === fence.runId) runner.abort({ kind: 'stop', by: message.by });
    });
    await lock.listen();

    const startedRow = row;
    const done = (async (): Promise<RunSummary> => {
      try {
        coordinator?.start();
        const execution = await runner.execute();
        const totals = coordinator ? await coordinator.close(execution.cause, 2 * this.options.heartbeatMs) : undefined;
        if (totals) execution.progress = totals;
        else if (run.adopted && execution.cause?.kind !== 'fenced' && execution.cause?.kind !== 'lock-lost') {
          // An adopted run's counters started from its lost owner's last heartbeat: its end counts what the run really finished.
          execution.progress = await exactTotals(runDb, row.id, execution.progress);
        }
        return await this.finish(runDb, workflow, startedRow, fence, stateBefore, execution, lock);
      } finally {
        this.active.delete(fence.runId);
        await lock.close();
        await runPool.end().catch(() => {});
      }
    })().then(async (summary) => {
      // The lock is free now: adopters take the run at once rather than at their next look.
      if (summary.outcome === 'handed_off') await notify(this.db, ADOPT_CHANNEL, { runId: fence.runId }).catch(() => {});
      return summary;
    });
    const active: ActiveRun = {
      id: row.id,
      row,
      workflow,
      stateBefore,
      expectedWork: work,
      estimatedInteractions: Object.values(work).reduce((n, k) => n + k, 0),
      progress: () => runner.progress(),
      stop: (cause) => runner.abort(cause),
      quiesce: () => runner.quiesce(),
      done,
    };
    this.active.set(row.id, active);
    this.emit('run-started', active);
    // An adopted run is announced as started again: chat surfaces take its message up (src/chat/slack/notifier.ts).
    await publishRunEvent(this.db, { type: 'run_started', runId: row.id, workflowId: workflow.id });
    void done.then(
      (summary) => this.emit('run-ended', summary),
      () => {},
    );
    return active;
  }

  private async finish(
    runDb: Db,
    workflow: ResolvedWorkflow,
    row: RunRow,
    fence: runs.Fence,
    stateBefore: Metrics,
    execution: Awaited<ReturnType<Runner['execute']>>,
    lock: RunLock,
  ): Promise<RunSummary> {
    const { progress, unfinished } = execution;
    let { cause } = execution;
    // A connection error can reach the runner before the lock connection's own
    // error event does (a process resumed after SIGSTOP sees all its sockets
    // fail at once): ask the lock connection itself before the last writes.
    if (cause?.kind !== 'fenced' && cause?.kind !== 'lock-lost' && !(await lock.verify())) {
      cause = { kind: 'lock-lost', error: 'the lock connection no longer answers' };
    }
    const completed = Object.values(progress).reduce((n, p) => n + p.done, 0);
    const failed = Object.values(progress).reduce((n, p) => n + p.failed, 0);
    const base = { stateBefore, progress };
    if (cause?.kind === 'fenced' || cause?.kind === 'lock-lost') {
      // Someone else may own this run now: write nothing (docs/architecture.md, Fencing).
      const current = (await runs.getRun(this.db, fence.runId).catch(() => undefined)) ?? row;
      const adoptedElsewhere = current.status === 'running' && current.owner_token !== null && current.owner_token !== fence.ownerToken;
      this.log.warn({ runId: fence.runId, cause }, 'run given up without writing');
      return { ...base, run: current, outcome: cause.kind === 'fenced' || adoptedElsewhere ? 'taken_over' : 'lock_lost', stateAfter: null, delta: null };
    }
    if (cause?.kind === 'handoff') return this.handOff(runDb, workflow, row, fence, execution);
    const ending = ownerEnding(cause, completed + failed);
    try {
      const stateAfter = await takeSnapshot(runDb, workflow);
      const change = delta(stateBefore, stateAfter);
      const ended = await runDb.transaction().execute(async (tx) => {
        if (!(await runs.lockOwnedRun(tx, fence))) return undefined;
        await leaveUnfinished(tx, { runId: fence.runId, workflowId: workflow.id }, unfinished);
        return runs.endRun(tx, fence, {
          ending,
          stateAfter,
          delta: change,
          completed,
          failed,
          progress,
          error: cause?.kind === 'error' ? cause.error : null,
        });
      });
      if (!ended) return { ...base, run: (await runs.getRun(this.db, fence.runId)) ?? row, outcome: 'taken_over', stateAfter: null, delta: null };
      await appendAudit(this.db, {
        actor: ended.stopped_by ?? ended.requested_by,
        source: 'engine',
        action: 'run_ended',
        outcome: 'event',
        workflowId: workflow.id,
        runId: ended.id,
        reason: ending.reason,
        details: { status: ending.status, completed, failed, delta: change },
      }).catch(() => {});
      await publishRunEvent(this.db, { type: 'run_ended', runId: ended.id, workflowId: workflow.id });
      return { ...base, run: ended, outcome: ending.status, stateAfter, delta: change };
    } catch (error) {
      // The database went away while ending: the run stays `running` with its
      // lock about to be released, and recovery marks it abandoned.
      this.log.error({ runId: fence.runId, err: error }, 'could not record the end of the run');
      return { ...base, run: row, outcome: 'failed', stateAfter: null, delta: null };
    }
  }

  /**
   * Handoff (docs/architecture.md, Adoption): the results that finished are
   * committed (execute drained them), the unfinished items are left pending
   * with their attempts, the claims end and the fence is cleared, in one
   * transaction; the run stays `running` and an adopter takes it once this
   * process releases the lock.
   */
  private async handOff(
    runDb: Db,
    workflow: ResolvedWorkflow,
    row: RunRow,
    fence: runs.Fence,
    execution: Awaited<ReturnType<Runner['execute']>>,
  ): Promise<RunSummary> {
    const { progress, unfinished } = execution;
    const base = { stateBefore: row.state_before ?? {}, progress, stateAfter: null, delta: null };
    try {
      const released = await runDb.transaction().execute(async (tx) => {
        if (!(await runs.lockOwnedRun(tx, fence))) return undefined;
        await leaveUnfinished(tx, { runId: fence.runId, workflowId: workflow.id }, unfinished);
        return releaseRun(tx, fence, progress);
      });
      if (!released) return { ...base, run: (await runs.getRun(this.db, fence.runId)) ?? row, outcome: 'taken_over' };
      await appendAudit(this.db, {
        actor: 'engine',
        source: 'engine',
        action: 'run_released',
        outcome: 'event',
        workflowId: workflow.id,
        runId: fence.runId,
        reason: 'handoff',
        details: { instance: this.instanceId, left_pending: unfinished.length },
      }).catch(() => {});
      return { ...base, run: released, outcome: 'handed_off' };
    } catch (error) {
      // The run stays ours on the row; once the lock is released it is adopted as lost.
      this.log.error({ runId: fence.runId, err: error }, 'could not hand the run off');
      return { ...base, run: row, outcome: 'lock_lost' };
    }
  }

  /**
   * Stop (docs/architecture.md, Safety rules): a flag on the run plus NOTIFY
   * to its owner, wherever it runs. A run whose owner is gone is recovered
   * instead.
   */
  async requestStop(runId: number, by: string): Promise<{ kind: 'requested' | 'recovered' | 'not_running' | 'not_found'; run?: RunRow }> {
    const run = await runs.getRun(this.db, runId);
    if (!run) return { kind: 'not_found' };
    if (run.status === 'queued') {
      await runs.refuseQueuedRun(this.db, runId, `stopped by ${by} before it started`);
      return { kind: 'requested', run: await runs.getRun(this.db, runId) };
    }
    if (run.status !== 'running') return { kind: 'not_running', run };
    const recovered = await this.recoverIfOwnerGone(run, true);
    if (recovered) return { kind: 'recovered', run: recovered };
    const requested = await runs.requestStop(this.db, runId, by, { channel: CONTROL_CHANNEL, payload: { type: 'stop', runId, by } });
    if (!requested) return { kind: 'not_running', run: await runs.getRun(this.db, runId) };
    this.active.get(runId)?.stop({ kind: 'stop', by });
    return { kind: 'requested', run: requested };
  }

  /** Run lifecycle events from every process on this database (see events.ts). */
  async listenForRunEvents(): Promise<RunEventListener> {
    const listener = new RunEventListener(this.lockConnectionString, `workflow-events:${this.instanceId}`);
    await listener.start();
    return listener;
  }

  /** Waits (polling with a deadline) until a queued run has been started or refused by a serving instance. */
  async waitWhileQueued(runId: number, timeoutMs: number): Promise<RunRow | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const run = await runs.getRun(this.db, runId);
      if (!run || run.status !== 'queued' || Date.now() > deadline) return run;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Waits (polling with a deadline) until the run has left `running`. */
  async waitForEnd(runId: number, timeoutMs: number): Promise<RunRow | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const run = await runs.getRun(this.db, runId);
      if (!run || !isActive(run.status) || Date.now() > deadline) return run;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * Crash recovery (docs/architecture.md, Ownership) for every running run: a
   * run whose lock is free has no owner, because an owner holds it from
   * before the run row exists until after the run has ended.
   */
  async recoverAbandoned(): Promise<RunRow[]> {
    const recovered: RunRow[] = [];
    for (const run of await runs.activeRuns(this.db)) {
      if (run.status !== 'running' || this.active.has(run.id)) continue;
      const ended = await this.recoverIfOwnerGone(run);
      if (ended) recovered.push(ended);
    }
    return recovered;
  }

  /** A run whose lock is free is ended `abandoned`, unless a serving instance will adopt it (or `evenIfAdoptable`: a stop). */
  private async recoverIfOwnerGone(run: RunRow, evenIfAdoptable = false): Promise<RunRow | undefined> {
    if (this.active.has(run.id)) return undefined;
    const lock = await RunLock.connect(this.lockConnectionString, `workflow-check:${this.instanceId}`);
    try {
      if (!(await lock.tryAcquire(run.lock_key))) return undefined;
      return await recoverRun(this.db, run.id, 'owner_lost', { workflows: this.workflow, evenIfAdoptable });
    } finally {
      await lock.close();
    }
  }

  /** Whether a serving instance would adopt a run of this workflow whose owner is gone. */
  adopterPresent(workflowId: number): Promise<boolean> {
    return adopterPresent(this.db, workflowId);
  }

  /**
   * Adoption (docs/architecture.md, Adoption): takes over a running run whose
   * lock is free, if this process defines its workflow and the workflow lets
   * it. The same run goes on here under a new owner token; a run adopted too
   * often without progress is ended `abandoned` (crash_loop) instead.
   */
  async adopt(candidate: { id: number; workflow_id: number; lock_key: number }): Promise<AdoptOutcome> {
    const workflow = this.workflow(candidate.workflow_id);
    if (this.closing || this.active.has(candidate.id) || !workflow?.adopt) return { kind: 'skipped' };
    const lock = await RunLock.connect(this.lockConnectionString, `workflow-lock:${this.instanceId}`);
    let launched = false;
    try {
      if (!(await lock.tryAcquire(candidate.lock_key))) return { kind: 'skipped' };
      // A frozen owner's open transaction would hold the run row: its run pool goes first (its lock connection is gone already).
      await terminateBackends(this.db, { pid: null, applicationName: runApplicationName(candidate.id) });
      const owner: runs.RunOwner = { token: randomUUID(), instance: this.instanceId, slots: handlerSlots(workflow) };
      const taken = await takeOwnership(this.db, candidate.id, owner, {
        workflows: this.workflow,
        maxAdoptions: workflow.maxAdoptions ?? this.options.maxAdoptions ?? 3,
      });
      if (taken.kind === 'gone') return { kind: 'skipped' };
      if (taken.kind === 'crash_loop') {
        await announceRecovery(this.db, taken.row, 'crash_loop', taken.released);
        return { kind: 'abandoned', run: taken.row };
      }
      const row = taken.row;
      const fence = { runId: row.id, ownerToken: owner.token };
      const runPool = createPool({ connectionString: this.options.connectionString, applicationName: runApplicationName(row.id), max: RUN_POOL_SIZE });
      const runDb = createKysely(runPool);
      try {
        const active = await this.launch({
          row,
          workflow,
          lock,
          fence,
          runPool,
          runDb,
          scopeSubject: row.subject_id,
          stateBefore: row.state_before ?? {},
          work: row.expected_work ?? {},
          log: this.log.child({ runId: row.id, workflowId: workflow.id }),
          adopted: { progress: taken.progress, failed: taken.failed, careful: taken.careful },
        });
        launched = true;
        await appendAudit(this.db, {
          actor: 'engine',
          source: 'engine',
          action: 'run_adopted',
          outcome: 'event',
          workflowId: workflow.id,
          runId: row.id,
          reason: taken.reason,
          details: {
            instance: this.instanceId,
            adoptions: row.owners.length - 1,
            careful: taken.careful,
            interactions_released: taken.released.pending,
            finished_before: Object.values(taken.progress).reduce((n, p) => n + p.done + p.failed, 0),
          },
        }).catch(() => {});
        return { kind: 'adopted', run: active };
      } catch (error) {
        await runPool.end().catch(() => {});
        throw error;
      }
    } finally {
      if (!launched) await lock.close();
    }
  }

  /**
   * Graceful shutdown of this process's runs: refuse new runs, start no more
   * handlers, give those in flight `graceMs` to finish (their results are
   * committed), abort the rest (their interactions go back to pending), and
   * end each run `stopped` with reason `shutdown`, releasing its lock.
   * With `handoff`, a run of a workflow that can be adopted is released for
   * adoption instead (docs/architecture.md, Adoption): `always` (`serve`:
   * another instance, or this one after its restart, takes it), or only
   * `if_adopter`, when a serving instance would adopt it now (a foreground
   * run). Resolves when every run has ended or been released. Safe to call
   * more than once.
   */
  async shutdown(graceMs = 0, options: { handoff?: 'always' | 'if_adopter' } = {}): Promise<RunSummary[]> {
    this.closing = true;
    const active = [...this.active.values()];
    if (active.length === 0) return [];
    const causes = new Map<number, StopCause>();
    for (const run of active) {
      const handoff =
        options.handoff !== undefined &&
        run.workflow.adopt &&
        (options.handoff === 'always' || (await this.adopterPresent(run.workflow.id).catch(() => false)));
      causes.set(run.id, handoff ? { kind: 'handoff' } : { kind: 'shutdown' });
    }
    this.log.info({ runs: active.map((r) => r.id), graceMs, handoff: options.handoff ?? null }, 'shutdown: letting in-flight work finish');
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    try {
      await Promise.all(
        active.map(async (run) => {
          await Promise.race([run.quiesce(), grace]);
          run.stop(causes.get(run.id)!);
        }),
      );
    } finally {
      clearTimeout(timer);
    }
    const settled = await Promise.allSettled(active.map((run) => run.done));
    const ended = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    // A start already past the `closing` check when shutdown began: end it too, without grace.
    if (this.active.size > 0) ended.push(...(await this.shutdown(0, options)));
    return ended;
  }

  /** Ends every run this process owns (graceful shutdown, see shutdown()) and closes the pool. */
  async close(graceMs = 0): Promise<void> {
    await this.shutdown(graceMs);
    await this.db.destroy();
  }
}

export function runApplicationName(runId: number): string {
  return `workflow-run:${runId}`;
}

function describeDuplicate(run: RunRow, workflow: ResolvedWorkflow): string {
  const progress = run.progress
    ? summariseProgress(
        run.progress,
        workflow.steps.map((s) => s.name),
      )
    : 'just started';
  const started = run.started_at ? `at ${utcText(run.started_at)} (${relativeTime(run.started_at)})` : 'just now';
  return `workflow ${run.workflow_id} is already running as run #${run.id}, started by ${personLabel(run.requested_by)} ${started} (${progress})`;
}

/** Progress per step, in the workflow's order when `steps` gives it (jsonb keeps no order of its own). */
export function summariseProgress(progress: RunProgress, steps: readonly string[] = []): string {
  const names = [...steps.filter((step) => step in progress), ...Object.keys(progress).filter((step) => !steps.includes(step))];
  return names
    .map((step) => {
      const p = progress[step]!;
      return `${step} ${p.done} done${p.failed ? `, ${p.failed} failed` : ''}`;
    })
    .join('; ');
}
