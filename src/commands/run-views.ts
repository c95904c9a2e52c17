import { EventEmitter } from 'node:events';
import type { RunRow } from '../db/schema.ts';
import { isActive } from '../db/run-states.ts';
import type { Engine } from '../engine/engine.ts';
import type { Throughput } from '../engine/estimates.ts';
import type { FailedItem } from '../engine/store.ts';
import { toRunView, type RunView } from './results.ts';

const PACE_CACHE_MS = 30_000;
/** Failed items listed under a run's message. */
export const FAILURES_SHOWN = 10;

/** Lifecycle of runs anywhere on the database, as views. */
export interface RunWatch extends EventEmitter {
  on(event: 'run', listener: (type: 'run_started' | 'run_ended', run: RunView) => void): this;
  on(event: 'reconnected', listener: () => void): this;
  close(): Promise<void>;
}

/**
 * Runs as every surface shows them: one run now, the runs in progress, and
 * the runs starting and ending anywhere on the database as they happen.
 */
export class RunViews {
  private readonly engine: Engine;
  private readonly paces = new Map<number, { pace: Throughput | null; until: number }>();

  constructor(engine: Engine) {
    this.engine = engine;
  }

  view(run: RunRow): RunView {
    const workflow = this.engine.workflow(run.workflow_id);
    return toRunView(
      run,
      workflow?.name ?? null,
      workflow?.steps.map((s) => s.name),
    );
  }

  /** The view with what estimates need: past runs' pace while the run is going. */
  async live(run: RunRow): Promise<RunView> {
    const view = this.view(run);
    if (isActive(run.status)) view.history = await this.pace(run.workflow_id);
    return view;
  }

  async get(runId: number): Promise<RunView | undefined> {
    const run = await this.engine.store.run(runId);
    return run && this.live(run);
  }

  /**
   * A workflow's pace over its latest completed batches. Read at most every
   * PACE_CACHE_MS per workflow: run messages are re-read every few seconds,
   * and past runs do not change that fast.
   */
  async pace(workflowId: number): Promise<Throughput | null> {
    const cached = this.paces.get(workflowId);
    if (cached && cached.until > Date.now()) return cached.pace;
    const pace = await this.engine.store.pace(workflowId);
    this.paces.set(workflowId, { pace, until: Date.now() + PACE_CACHE_MS });
    return pace;
  }

  /** A run's first failed items with their errors (the thread reply under its message). */
  failures(runId: number, limit = FAILURES_SHOWN): Promise<FailedItem[]> {
    return this.engine.store.failedItems(runId, limit);
  }

  /** Queued and running runs, without recovering any (the `list` command does that). */
  async inProgress(): Promise<RunView[]> {
    return (await this.engine.store.runsInProgress()).map((r) => this.view(r));
  }

  /** A run's input and output as the workflow_run_audit view shows them (the seed's JSON). */
  auditRecord(runId: number): Promise<{ id: number; input: unknown; output: unknown } | undefined> {
    return this.engine.store.runAuditRecord(runId);
  }

  /** Starts following run events across every process; close() stops. */
  async watch(): Promise<RunWatch> {
    const listener = await this.engine.listenForRunEvents();
    const watch = new EventEmitter() as RunWatch;
    listener.on('event', (event: { type: 'run_started' | 'run_ended'; runId: number }) => {
      void this.engine.store
        .run(event.runId)
        .then(async (run) => run && watch.emit('run', event.type, await this.live(run)))
        .catch(() => {});
    });
    listener.on('reconnected', () => watch.emit('reconnected'));
    watch.close = () => listener.close();
    return watch;
  }
}
