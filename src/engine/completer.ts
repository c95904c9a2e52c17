import type { Db } from '../db/connect.ts';
import { recordResults } from '../db/queries/complete-interactions.ts';
import { releaseClaims } from '../db/queries/release-claims.ts';
import { isConnectionError } from '../db/errors.ts';
import type { Fence } from '../db/queries/runs.ts';
import type { Page, Result, StepRun } from './work.ts';

export class FencedError extends Error {
  override name = 'FencedError';
  constructor() {
    super('the run is no longer owned by this process (taken over or recovered)');
  }
}

export interface CompleterEvents {
  /** Committed: these results count from now on; `finishedPages` have no item left open. */
  committed(step: StepRun, results: Result[], finishedPages: Page[]): void;
  /** The run can no longer write (fenced) or the database failed; the runner stops. */
  fatal(error: Error): void;
}

/**
 * How long a partial batch waits for more results before it is committed. A
 * full batch (batchSize) goes at once, so fast handlers never wait; slow ones
 * (model calls) trickle in, and committing each trickle on its own turn makes
 * a transaction of a handful of items, whose overhead then takes much of the
 * process's CPU (bench/io-bound.ts; the figures are in bench/RESULTS.md). A
 * result's commit is that much later; a stop or the end of a wave drains at
 * once.
 */
const COMMIT_LINGER_MS = 25;

/**
 * Batches results per step and commits each batch in one transaction: the
 * fenced interaction rows, the claims whose pages that batch (or an earlier
 * one) finished, then the step's `save` (docs/architecture.md, Waves and the
 * completer).
 *
 * While a step's flushes are in flight new results accumulate, so batches
 * grow with load on their own, up to batchSize when handlers are fast; a
 * partial batch waits COMMIT_LINGER_MS for company.
 *
 * A page's claim is released by the first commit after its last item's: the
 * claim must outlive every item of its page (it is what keeps other runs off
 * them), and a later statement costs nothing extra, where working out which
 * of two concurrent flushes commits last would.
 */
export class Completer {
  private readonly buffers = new Map<StepRun, Result[]>();
  private readonly inFlight = new Map<StepRun, number>();
  private readonly scheduled = new Set<StepRun>();
  private readonly flushes = new Set<Promise<void>>();
  /** Claims of finished pages, released with the next commit. */
  private releasable: number[] = [];
  private drainWaiters: (() => void)[] = [];
  private stopped = false;
  private readonly db: Db;
  private readonly fence: Fence;
  private readonly workflowId: number;
  private readonly batchSize: number;
  private readonly events: CompleterEvents;
  private readonly maxFlushesPerStep: number;

  constructor(db: Db, fence: Fence, workflowId: number, batchSize: number, events: CompleterEvents, maxFlushesPerStep = 2) {
    this.maxFlushesPerStep = maxFlushesPerStep;
    this.db = db;
    this.fence = fence;
    this.workflowId = workflowId;
    this.batchSize = batchSize;
    this.events = events;
  }

  /**
   * Buffers a result; a promise back means results are piling up faster than
   * they commit, and the caller waits for it (backpressure). Nothing back
   * otherwise: a promise per item costs a no-op workflow more than its handler.
   */
  add(result: Result): Promise<void> | undefined {
    if (this.stopped) return undefined;
    result.item.state = 'finished';
    const step = result.item.page.step;
    let buffer = this.buffers.get(step);
    if (!buffer) this.buffers.set(step, (buffer = []));
    buffer.push(result);
    this.schedule(step);
    if (buffer.length < this.batchSize * 4) return undefined;
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** A page with no item to run (nothing pending in its range any more): its claim goes with the next commit. */
  releaseLater(claimId: number): void {
    this.releasable.push(claimId);
  }

  /**
   * Commits everything buffered and waits for every flush. In rounds: a
   * step with two flushes in flight takes what is left once one of them
   * ends, and a flush that ends only schedules the next for the following
   * turn, so one pass over the buffers is not enough.
   */
  async drain(): Promise<void> {
    for (;;) {
      for (const step of this.buffers.keys()) this.schedule(step, true);
      if (this.flushes.size === 0) return;
      await Promise.allSettled([...this.flushes]);
    }
  }

  /**
   * Drains, then releases the claims no commit has taken yet (end of a wave:
   * the next wave claims the same ranges again). Throws FencedError if the run
   * is no longer ours.
   */
  async drainAndRelease(): Promise<void> {
    await this.drain();
    if (this.stopped || this.releasable.length === 0) return;
    const ids = this.releasable;
    this.releasable = [];
    if (!(await releaseClaims(this.db, this.fence, ids))) throw new FencedError();
  }

  /** Drops what is buffered: used when the run may not write any more. */
  abandon(): void {
    this.stopped = true;
    this.buffers.clear();
    this.releaseWaiters();
  }

  private schedule(step: StepRun, now = false): void {
    if ((this.inFlight.get(step) ?? 0) >= this.maxFlushesPerStep) return;
    const buffer = this.buffers.get(step);
    if (!buffer || buffer.length === 0) return;
    if (now || buffer.length >= this.batchSize) {
      this.startFlush(step);
      return;
    }
    // Let the results of the next COMMIT_LINGER_MS join the batch.
    if (this.scheduled.has(step)) return;
    this.scheduled.add(step);
    setTimeout(() => {
      this.scheduled.delete(step);
      if ((this.inFlight.get(step) ?? 0) < this.maxFlushesPerStep) this.startFlush(step);
    }, COMMIT_LINGER_MS);
  }

  private startFlush(step: StepRun): void {
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

  private async commit(step: StepRun, batch: Result[]): Promise<void> {
    try {
      await this.commitBatch(step, batch);
    } catch (error) {
      if (error instanceof FencedError || batch.length === 1 || isConnectionError(error)) throw error;
      // One bad item must not sink its neighbours: commit them one by one and
      // fail the items whose save is refused.
      for (const result of batch) {
        try {
          await this.commitBatch(step, [result]);
        } catch (itemError) {
          if (itemError instanceof FencedError || isConnectionError(itemError) || result.status === 'failed') throw itemError;
          const error = `save failed: ${(itemError as Error).message}`;
          await this.commitBatch(step, [{ item: result.item, status: 'failed', error }]);
        }
      }
    }
  }

  private async commitBatch(step: StepRun, batch: Result[]): Promise<void> {
    const releasing = this.releasable;
    this.releasable = [];
    try {
      await this.db.transaction().execute(async (tx) => {
        const recorded = await recordResults(tx, this.fence, {
          workflowId: this.workflowId,
          step: step.name,
          previousStep: step.previousStep,
          items: batch,
          releaseClaims: releasing,
        });
        if (!recorded.owned) throw new FencedError();
        const saved = [];
        for (const result of batch) {
          if (result.status === 'completed')
            saved.push({ subjectId: result.item.subjectId, interactionId: recorded.interactionIds.get(result.item.subjectId)!, output: result.item.output });
        }
        if (saved.length > 0) await step.definition.save(tx, saved);
      });
    } catch (error) {
      this.releasable.push(...releasing);
      throw error;
    }
    const finishedPages: Page[] = [];
    for (const { item } of batch) {
      // Its page may stay open a while (other items still running): keep nothing big.
      item.state = 'committed';
      item.inputJson = '';
      item.output = undefined;
      item.outputJson = null;
      if (--item.page.open === 0) {
        finishedPages.push(item.page);
        this.releasable.push(item.page.claimId);
      }
    }
    this.events.committed(step, batch, finishedPages);
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
