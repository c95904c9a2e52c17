import { EventEmitter } from 'node:events';
import type { RunRow } from '../db/schema.ts';
import type { Engine } from '../engine/engine.ts';
import { toRunView, type RunView } from './results.ts';

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

  constructor(engine: Engine) {
    this.engine = engine;
  }

  view(run: RunRow): RunView {
    return toRunView(run, this.engine.workflow(run.workflow_id)?.name ?? null);
  }

  async get(runId: number): Promise<RunView | undefined> {
    const run = await this.engine.store.run(runId);
    return run && this.view(run);
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
      void this.engine.store.run(event.runId).then(
        (run) => run && watch.emit('run', event.type, this.view(run)),
        () => {},
      );
    });
    listener.on('reconnected', () => watch.emit('reconnected'));
    watch.close = () => listener.close();
    return watch;
  }
}
