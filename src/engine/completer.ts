import type { Kysely } from 'kysely';
import { recordResults, type Completion, type Failure } from '../db/queries/complete-interactions.ts';
import { isConnectionError } from '../db/errors.ts';
import type { Fence } from '../db/queries/runs.ts';
import type { AnyStep } from '../workflows/define.ts';

export class FencedError extends Error {
  override name = 'FencedError';
  constructor() {
    super('the run is no longer owned by this process (taken over or recovered)');
  }
}

type Done = { kind: 'done'; subjectId: number } & Completion;
type Failed = { kind: 'failed'; subjectId: number } & Failure;
type Result = Done | Failed;

export interface CompleterEvents {
  /** Committed: these now count as done / failed. */
  committed(step: string, done: number, failed: number): void;
  /** The run can no longer write (fenced) or the database failed; the runner stops. */
  fatal(error: Error): void;
}

/**
 * Batches results per step and commits each batch in one transaction: the
 * fenced completion of its interactions, then the step's `save` (DESIGN.md §2).
 *
 * While a step's flushes are in flight new results accumulate, so batches
 * grow with load on their own (a few items when handlers are slow, up to
 * batchSize when they are fast) with no timer to tune.
 */
export class Completer {
  private readonly buffers = new Map<string, Result[]>();
  private readonly inFlight = new Map<string, number>();
  private readonly scheduled = new Set<string>();
  private readonly flushes = new Set<Promise<void>>();
  private drainWaiters: (() => void)[] = [];
  private stopped = false;

  constructor(
    private readonly db: Kysely<any>,
    private readonly fence: Fence,
    private readonly steps: Map<string, AnyStep<any>>,
    private readonly batchSize: number,
    private readonly events: CompleterEvents,
    private readonly maxFlushesPerStep = 2,
  ) {}

  /** Resolves at once unless results are piling up faster than they commit (backpressure). */
  add(step: string, result: Result): Promise<void> {
    if (this.stopped) return Promise.resolve();
    let buffer = this.buffers.get(step);
    if (!buffer) this.buffers.set(step, (buffer = []));
    buffer.push(result);
    this.schedule(step);
    if (buffer.length < this.batchSize * 4) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  complete(step: string, subjectId: number, interactionId: number, output: unknown): Promise<void> {
    return this.add(step, { kind: 'done', subjectId, interactionId, output });
  }

  fail(step: string, subjectId: number, interactionId: number, error: string, extraAttempts: number): Promise<void> {
    return this.add(step, { kind: 'failed', subjectId, interactionId, error, extraAttempts });
  }

  /** Commits everything buffered and waits for every flush. */
  async drain(): Promise<void> {
    for (const step of this.buffers.keys()) this.schedule(step, true);
    while (this.flushes.size > 0) await Promise.allSettled([...this.flushes]);
  }

  /** Drops what is buffered: used when the run may not write any more. */
  abandon(): void {
    this.stopped = true;
    this.buffers.clear();
    this.releaseWaiters();
  }

  private schedule(step: string, now = false): void {
    if ((this.inFlight.get(step) ?? 0) >= this.maxFlushesPerStep) return;
    const buffer = this.buffers.get(step);
    if (!buffer || buffer.length === 0) return;
    if (now || buffer.length >= this.batchSize) {
      this.startFlush(step);
      return;
    }
    // Let the results of this turn of the event loop join the batch.
    if (this.scheduled.has(step)) return;
    this.scheduled.add(step);
    setImmediate(() => {
      this.scheduled.delete(step);
      if ((this.inFlight.get(step) ?? 0) < this.maxFlushesPerStep) this.startFlush(step);
    });
  }

  private startFlush(step: string): void {
    const buffer = this.buffers.get(step);
    if (!buffer || buffer.length === 0 || this.stopped) return;
    const batch = buffer.splice(0, this.batchSize);
    this.inFlight.set(step, (this.inFlight.get(step) ?? 0) + 1);
    const flush = this.commit(step, batch)
      .catch((error: Error) => {
        this.stopped = true;
        this.events.fatal(error);
      })
      .finally(() => {
        this.inFlight.set(step, (this.inFlight.get(step) ?? 1) - 1);
        this.flushes.delete(flush);
        if (this.totalBuffered() < this.batchSize * 4) this.releaseWaiters();
        this.schedule(step);
      });
    this.flushes.add(flush);
  }

  private async commit(step: string, batch: Result[]): Promise<void> {
    try {
      await this.commitBatch(step, batch);
    } catch (error) {
      if (error instanceof FencedError || batch.length === 1 || isConnectionError(error)) throw error;
      // One bad item must not sink its neighbours: commit them one by one and
      // fail the items whose save is refused.
      for (const item of batch) {
        try {
          await this.commitBatch(step, [item]);
        } catch (itemError) {
          if (itemError instanceof FencedError || isConnectionError(itemError) || item.kind === 'failed') throw itemError;
          const message = `save failed: ${(itemError as Error).message}`;
          await this.commitBatch(step, [{ kind: 'failed', subjectId: item.subjectId, interactionId: item.interactionId, error: message, extraAttempts: 0 }]);
        }
      }
    }
  }

  private async commitBatch(step: string, batch: Result[]): Promise<void> {
    const done = batch.filter((r): r is Done => r.kind === 'done');
    const failed = batch.filter((r): r is Failed => r.kind === 'failed');
    const definition = this.steps.get(step)!;
    await this.db.transaction().execute(async (tx) => {
      const recorded = await recordResults(tx, this.fence, done, failed);
      if (!recorded.owned) throw new FencedError();
      if (done.length > 0) {
        await definition.save(tx, done.map((d) => ({ subjectId: d.subjectId, interactionId: d.interactionId, output: d.output })));
      }
    });
    this.events.committed(step, done.length, failed.length);
  }

  private totalBuffered(): number {
    let n = 0;
    for (const buffer of this.buffers.values()) n += buffer.length;
    return n;
  }

  private releaseWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
