import type { Kysely } from 'kysely';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { claimInteractions, pendingRange, type ClaimedItem } from '../db/queries/claim-interactions.ts';
import { heartbeat, type Fence } from '../db/queries/runs.ts';
import type { RunProgress, StepProgress } from '../db/schema.ts';
import type { AnyStep, ResolvedWorkflow } from '../workflows/define.ts';
import { sleep } from '../lib/sleep.ts';
import { Completer, FencedError } from './completer.ts';

/** Why a run stopped before running out of work. */
export type StopCause =
  | { kind: 'stop'; by: string | null }
  | { kind: 'shutdown' }
  /** Taken over or recovered by someone else: write nothing more. */
  | { kind: 'fenced' }
  /** The lock connection died: the lock may be someone else's now; write nothing more. */
  | { kind: 'lock-lost'; error: string }
  | { kind: 'error'; error: string };

export interface Execution {
  /** Null when the run ran out of work. */
  cause: StopCause | null;
  progress: RunProgress;
  /** Claimed interactions that did not finish (to go back to pending). */
  unfinished: number;
}

export interface RunnerOptions {
  db: Kysely<any>;
  workflow: ResolvedWorkflow;
  fence: Fence;
  subjectId: number | null;
  heartbeatMs: number;
  log: Logger;
}

const NO_CURSOR = Number.MIN_SAFE_INTEGER;
/** Measured with bench/noop-engine.ts: 2 feeders keep the queue full where 1 could not; see bench/RESULTS.md. */
const FEEDERS_PER_STEP = 2;

/** (after, upTo] bounds that cover [min, max] in `parts` contiguous slices. */
export function splitRange(min: number, max: number, parts: number): [number, number | null][] {
  const size = Math.max(1, Math.ceil((max - min + 1) / parts));
  const bounds: [number, number | null][] = [];
  for (let start = min; start <= max; start += size) {
    const end = start + size - 1;
    bounds.push([start - 1, end >= max ? null : end]);
  }
  return bounds;
}

/**
 * Executes one run in waves (DESIGN.md §2). Each wave walks every step's
 * pending subjects page by page, claims them, runs their handlers on one
 * bounded queue, and commits results in batches through the Completer. A
 * wave that claims nothing ends the run.
 */
export class Runner {
  private readonly controller = new AbortController();
  private cause: StopCause | null = null;
  private readonly counters = new Map<string, StepProgress>();
  private readonly failedSubjects = new Map<string, number[]>();
  private readonly queue: PQueue;
  private readonly completer: Completer;
  private outstanding = 0;
  /** Cancels every handler call in flight; see attempt(). */
  private readonly cancels = new Set<(reason: unknown) => void>();

  constructor(private readonly options: RunnerOptions) {
    const { workflow } = options;
    for (const step of workflow.steps) {
      this.counters.set(step.name, { done: 0, failed: 0, running: 0 });
      this.failedSubjects.set(step.name, []);
    }
    this.queue = new PQueue({ concurrency: workflow.concurrency });
    this.completer = new Completer(
      options.db,
      options.fence,
      new Map(workflow.steps.map((s) => [s.name, s])),
      workflow.batchSize,
      {
        committed: (step, done, failed) => {
          const counter = this.counters.get(step)!;
          counter.done += done;
          counter.failed += failed;
          this.outstanding -= done + failed;
        },
        fatal: (error) => this.abort(error instanceof FencedError ? { kind: 'fenced' } : { kind: 'error', error: error.message }),
      },
    );
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Ends the run early. The first cause wins. */
  abort(cause: StopCause): void {
    if (this.cause) return;
    this.cause = cause;
    this.options.log.info({ runId: this.options.fence.runId, cause }, 'run stopping');
    this.queue.clear();
    if (cause.kind === 'fenced' || cause.kind === 'lock-lost') this.completer.abandon();
    const reason = new Error(`run stopped: ${cause.kind}`);
    this.controller.abort(reason);
    for (const cancel of [...this.cancels]) cancel(reason);
  }

  // ── Graceful shutdown hook (engine.shutdown): start no more handlers, let
  // those in flight finish. A paused queue also stops the claiming (feed waits
  // for room in the queue). abort() afterwards ends the run as usual; results
  // that came in meanwhile are committed by execute()'s last drain.
  /** Starts no more handlers; resolves when none is in flight. */
  async quiesce(): Promise<void> {
    this.queue.pause();
    await this.queue.onPendingZero();
  }

  progress(): RunProgress {
    const progress: RunProgress = {};
    for (const [step, counter] of this.counters) progress[step] = { ...counter };
    return progress;
  }

  async execute(): Promise<Execution> {
    const beat = setInterval(() => void this.heartbeat(), this.options.heartbeatMs);
    try {
      while (!this.signal.aborted) {
        const claimed = await Promise.all(this.options.workflow.steps.map((step, index) => this.feed(step, index)));
        await this.queue.onIdle();
        await this.completer.drain();
        if (claimed.every((n) => n === 0)) break;
      }
    } catch (error) {
      this.abort({ kind: 'error', error: (error as Error).message });
    } finally {
      clearInterval(beat);
    }
    await this.queue.onIdle();
    // Results finished before a stop are kept; a fenced run writes nothing.
    if (this.cause?.kind !== 'fenced' && this.cause?.kind !== 'lock-lost') await this.completer.drain();
    return { cause: this.cause, progress: this.progress(), unfinished: this.outstanding };
  }

  /**
   * One step's share of a wave. A claim page is a transaction of two
   * statements and one feeder waits for each in turn, so a single feeder
   * bounds a fast workflow; the step's pending id range is split among
   * FEEDERS_PER_STEP feeders that claim side by side.
   */
  private async feed(step: AnyStep<any>, index: number): Promise<number> {
    const { db, subjectId } = this.options;
    if (subjectId !== null) return this.feedRange(step, index, NO_CURSOR, null);
    const range = await pendingRange(db, step.pending(db));
    if (!range) return 0;
    const bounds = splitRange(range.min, range.max, FEEDERS_PER_STEP);
    const claimed = await Promise.all(bounds.map(([after, upTo]) => this.feedRange(step, index, after, upTo)));
    return claimed.reduce((a, b) => a + b, 0);
  }

  /** Claims page after page of subjects in (after, upTo], as fast as the queue takes them. */
  private async feedRange(step: AnyStep<any>, index: number, after: number, upTo: number | null): Promise<number> {
    const { db, workflow, fence, subjectId } = this.options;
    let claimedTotal = 0;
    while (!this.signal.aborted) {
      // Backpressure: keep about one page waiting per feeder, no more.
      await this.queue.onSizeLessThan(workflow.batchSize);
      if (this.signal.aborted) break;
      const page = await claimInteractions(db, {
        fence,
        workflowId: workflow.id,
        step: step.name,
        previousStep: index === 0 ? null : workflow.steps[index - 1]!.name,
        pending: step.pending(db),
        after,
        upTo,
        limit: workflow.batchSize,
        subjectId,
        exclude: this.failedSubjects.get(step.name)!,
      });
      if (page.fenced) {
        this.abort({ kind: 'fenced' });
        break;
      }
      if (page.cursor === null) break;
      after = page.cursor;
      claimedTotal += page.claimed.length;
      this.outstanding += page.claimed.length;
      for (const item of page.claimed) void this.queue.add(() => this.process(step, item));
      if (page.seen < workflow.batchSize) break;
    }
    return claimedTotal;
  }

  private async process(step: AnyStep<any>, item: ClaimedItem): Promise<void> {
    const { workflow } = this.options;
    const counter = this.counters.get(step.name)!;
    counter.running++;
    try {
      for (let attempt = 1; !this.signal.aborted; attempt++) {
        let error: string;
        try {
          const raw = await this.attempt(step, item, attempt);
          const output = step.output ? parseOutput(step, raw) : raw;
          await this.completer.complete(step.name, item.subjectId, item.interactionId, output);
          return;
        } catch (caught) {
          if (this.signal.aborted) return; // unfinished: released to pending at the end
          error = describe(caught);
        }
        if (attempt > workflow.retries) {
          this.failedSubjects.get(step.name)!.push(item.subjectId);
          await this.completer.fail(step.name, item.subjectId, item.interactionId, error, attempt - 1);
          return;
        }
        this.options.log.debug({ step: step.name, subjectId: item.subjectId, attempt, error }, 'retrying');
        await sleep(workflow.retryBackoffMs * 2 ** (attempt - 1), this.signal);
      }
    } finally {
      counter.running--;
    }
  }

  /**
   * One call of a handler, settled by the first of: its result, its timeout,
   * or the run's abort. A handler that ignores its signal does not hold the
   * run. The handler's AbortSignal is made only if the handler reads
   * `ctx.signal`: a signal per item (AbortSignal.any of the run's and a
   * timeout) cost more CPU than everything else a no-op item does.
   */
  private attempt(step: AnyStep<any>, item: ClaimedItem, attempt: number): Promise<unknown> {
    const { workflow, log } = this.options;
    return new Promise((resolve, reject) => {
      let controller: AbortController | undefined;
      const settle = () => {
        clearTimeout(timer);
        this.cancels.delete(cancel);
      };
      const cancel = (reason: unknown) => {
        settle();
        controller?.abort(reason);
        reject(reason);
      };
      const timer = setTimeout(() => cancel(new Error(`timed out after ${workflow.timeoutMs} ms`)), workflow.timeoutMs);
      this.cancels.add(cancel);
      const runSignal = this.signal;
      const ctx = {
        get signal(): AbortSignal {
          controller ??= new AbortController();
          if (runSignal.aborted) controller.abort(runSignal.reason);
          return controller.signal;
        },
        subjectId: item.subjectId,
        attempt,
        log,
      };
      let result: Promise<unknown>;
      try {
        result = step.handle(item.input, ctx);
      } catch (error) {
        result = Promise.reject(error);
      }
      result.then(
        (value) => {
          settle();
          resolve(value);
        },
        (error) => {
          settle();
          reject(error);
        },
      );
    });
  }

  private async heartbeat(): Promise<void> {
    try {
      const beat = await heartbeat(this.options.db, this.options.fence, this.progress());
      if (!beat) this.abort({ kind: 'fenced' });
      else if (beat.stopRequestedBy !== null) this.abort({ kind: 'stop', by: beat.stopRequestedBy });
    } catch (error) {
      this.options.log.warn({ err: error }, 'heartbeat failed');
    }
  }
}

function parseOutput(step: AnyStep<any>, raw: unknown): unknown {
  const parsed = step.output!.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new Error(`output rejected by step ${step.name}: ${issue ? `${issue.path.join('.') || 'value'}: ${issue.message}` : 'invalid'}`);
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
