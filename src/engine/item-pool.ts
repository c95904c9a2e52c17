import type { Logger } from 'pino';
import { isOverload } from '../lib/overload.ts';
import type { StepContext } from '../workflows/define.ts';
import { AdaptiveLimit } from './concurrency-limit.ts';
import type { Item } from './work.ts';

// Runs a run's items: at most `concurrency` handler calls at once, each with
// its timeout and retries, every one cancellable by the run's abort.
//
// Why not one p-queue task per item: at tens of thousands of no-op items/s
// that per-item machinery is most of the process's CPU (bench/RESULTS.md): a
// task promise, queue events, and seven closures per item, plus a timer per
// call. Here a
// fixed set of worker loops takes items from a FIFO, a handler call costs its
// own promise and one context object, and one sweeper timer per run enforces
// every call's deadline.
//
// A call that times out (or is aborted) frees its slot at once: its worker is
// detached (it ends whenever the handler settles, if ever, and then touches
// nothing) and a fresh worker takes the slot. A handler that ignores its
// signal therefore never holds the run.
//
// With an adaptive limit (`concurrency: 'auto'`), the number of slots is the
// limit's current value: each call's start and outcome is reported to it (an
// answer is a latency sample; an OverloadError or a timeout an overload), a
// worker above a lowered limit gives its slot up after its call, and a raised
// limit is filled at the next answer.

/** What the pool hands a handler as its context: the StepContext, plus the pool's bookkeeping in private fields. */
class Call implements StepContext {
  #controller: AbortController | undefined;
  /** Timed out or aborted: the outcome was decided without the handler. */
  cancelled = false;
  readonly item: Item;
  readonly attempt: number;
  readonly deadline: number;
  /** The adaptive limit's start time of this call (0 without one). */
  startedAt = 0;
  readonly log: Logger;
  private readonly runSignal: AbortSignal;

  constructor(item: Item, attempt: number, deadline: number, log: Logger, runSignal: AbortSignal) {
    this.item = item;
    this.attempt = attempt;
    this.deadline = deadline;
    this.log = log;
    this.runSignal = runSignal;
  }

  get subjectId(): number {
    return this.item.subjectId;
  }

  /**
   * Made on first read only: an AbortController per call costs more CPU than
   * everything else a no-op item does, and most handlers never look.
   */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    if (this.runSignal.aborted && !this.#controller.signal.aborted) this.#controller.abort(this.runSignal.reason);
    return this.#controller.signal;
  }

  cancel(reason: unknown): void {
    this.cancelled = true;
    this.#controller?.abort(reason);
  }
}

/** A failure may carry how long the service asked to wait before the retry (Retry-After). */
export type Outcome = { ok: true; value: unknown } | { ok: false; error: string; retryAfterMs?: number };

export interface PoolOptions {
  /** Calls at once; 'auto': as many as an AdaptiveLimit finds the service takes, up to maxConcurrency. */
  concurrency: number | 'auto';
  /** The most calls at once with 'auto'. */
  maxConcurrency?: number;
  /** With 'auto': the limit to use (a test's, on its own clock); default a fresh one. */
  limiter?: AdaptiveLimit;
  timeoutMs: number;
  retries: number;
  retryBackoffMs: number;
  /** Handler calls started in one turn of the event loop, at most (see runner.ts). */
  startsPerTurn: number;
  log: Logger;
  /** The run's signal: when it aborts, every call is cancelled and nothing new starts. */
  signal: AbortSignal;
  call(item: Item, ctx: StepContext): Promise<unknown>;
  /** A call's value, checked (output schema) and serialised; a string is the reason it is rejected (then retried like a failure). */
  accept(item: Item, value: unknown): string | undefined;
  /** The item's final outcome; a returned promise holds the slot (backpressure). */
  settle(item: Item, outcome: Outcome): Promise<void> | void;
}

/** maxConcurrency when a pool is given none (define.ts has the workflow's default). */
const DEFAULT_MAX_CONCURRENCY = 64;

export class ItemPool {
  #queue: Item[] = [];
  #head = 0;
  /** Items whose retry is due: taken before the queue. */
  #due: Item[] = [];
  /** Items sleeping before a retry. */
  #sleeping = 0;
  /** Worker loops holding a slot. */
  #workers = 0;
  #calls = new Set<Call>();
  #paused = false;
  /** Calls started in this turn of the event loop, and the promise of the next turn for those over the budget. */
  #turnStarts = 0;
  #nextTurn: Promise<void> | null = null;
  #resolveTurn: (() => void) | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #idleWaiters: (() => void)[] = [];
  #quietWaiters: (() => void)[] = [];
  #roomWaiters: { below: number; resolve: () => void }[] = [];
  readonly #limiter: AdaptiveLimit | undefined;
  private readonly options: PoolOptions;

  constructor(options: PoolOptions) {
    this.options = options;
    if (options.concurrency === 'auto') this.#limiter = options.limiter ?? new AdaptiveLimit({ max: options.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY });
  }

  /** The adaptive limit's current value; undefined for a fixed concurrency. */
  get limit(): number | undefined {
    return this.#limiter?.limit;
  }

  /** Items waiting for a slot. */
  get size(): number {
    return this.#queue.length - this.#head + this.#due.length;
  }

  push(items: Item[]): void {
    if (this.options.signal.aborted) return;
    for (const item of items) this.#queue.push(item);
    this.#startWorkers();
  }

  /** Resolves when fewer than `below` items wait (a feeder's backpressure). */
  onSizeLessThan(below: number): Promise<void> {
    if (this.size < below || this.options.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => this.#roomWaiters.push({ below, resolve }));
  }

  /** Resolves when nothing waits, sleeps or runs (or the run is aborted and nothing runs). */
  onIdle(): Promise<void> {
    if (this.#idle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Graceful shutdown: start nothing more; resolves when no call is in
   * flight. What waits stays waiting (and keeps the pool from being idle)
   * until the run is aborted.
   */
  quiesce(): Promise<void> {
    this.#paused = true;
    if (this.#workers === 0) return Promise.resolve();
    return new Promise((resolve) => this.#quietWaiters.push(resolve));
  }

  /** The run is over: cancel every call, drop what waits. Items are left as they are (unfinished). */
  abort(reason: unknown): void {
    this.#queue = [];
    this.#head = 0;
    this.#due = [];
    for (const call of this.#calls) {
      this.#detach(call, reason);
      this.#limiter?.released();
    }
    this.#notify();
  }

  #idle(): boolean {
    return this.#workers === 0 && (this.options.signal.aborted || (this.size === 0 && this.#sleeping === 0));
  }

  #take(): Item | undefined {
    if (this.#paused || this.options.signal.aborted) return undefined;
    const item = this.#due.length > 0 ? this.#due.shift() : this.#queue[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (item === undefined) {
      this.#queue.length = 0;
      this.#head = 0;
    }
    return item;
  }

  /** Fills free slots with workers (each waits for its turn's start budget before each call). */
  #slots(): number {
    return this.#limiter ? this.#limiter.limit : (this.options.concurrency as number);
  }

  #startWorkers(): void {
    while (this.#workers < this.#slots() && this.size > 0 && !this.#paused && !this.options.signal.aborted) {
      this.#workers++;
      void this.#work();
    }
  }

  /**
   * At most startsPerTurn calls start in one turn of the event loop, whether
   * a slot was just filled or a worker goes on to its next item: answers
   * come back as their calls went out, so calls started together are
   * answered (and handled) together, and the cap on starts is what bounds
   * the work of a turn. Undefined: go now; a promise: the next turn.
   */
  #budget(): Promise<void> | undefined {
    if (this.#turnStarts === 0) {
      setImmediate(() => {
        this.#turnStarts = 0;
        const waiting = this.#resolveTurn;
        this.#nextTurn = null;
        waiting?.();
      });
    }
    if (this.#turnStarts < this.options.startsPerTurn) {
      this.#turnStarts++;
      return undefined;
    }
    return (this.#nextTurn ??= new Promise<void>((resolve) => (this.#resolveTurn = resolve)));
  }

  async #work(): Promise<void> {
    let detached = false;
    try {
      for (;;) {
        // A lowered adaptive limit: this slot is one too many.
        if (this.#workers > this.#slots()) break;
        for (let wait = this.#budget(); wait; wait = this.#budget()) await wait;
        const item = this.#take();
        if (item === undefined) break;
        this.#wake();
        const call = this.#begin(item);
        const limiter = this.#limiter;
        let outcome: Outcome;
        try {
          const value = await this.options.call(item, call);
          if (call.cancelled) return void (detached = true);
          limiter?.answered(call.startedAt, item.page.step.name);
          const rejected = this.options.accept(item, value);
          outcome = rejected === undefined ? { ok: true, value } : { ok: false, error: rejected };
        } catch (error) {
          if (call.cancelled) return void (detached = true);
          if (!isOverload(error)) {
            limiter?.released();
            outcome = { ok: false, error: describe(error) };
          } else {
            limiter?.overloaded(call.startedAt);
            outcome = { ok: false, error: describe(error), retryAfterMs: error.retryAfterMs };
          }
        }
        this.#end(call);
        const settling = this.#finish(item, outcome);
        if (settling) await settling;
        if (limiter) this.#startWorkers();
      }
    } finally {
      // A detached worker's slot was handed on when its call was cancelled.
      if (!detached) {
        this.#workers--;
        this.#notify();
      }
    }
  }

  #begin(item: Item): Call {
    const attempt = ++item.attempts;
    item.state = 'running';
    item.page.step.counter.running++;
    const call = new Call(item, attempt, Date.now() + this.options.timeoutMs, this.options.log, this.options.signal);
    if (this.#limiter) call.startedAt = this.#limiter.start();
    this.#calls.add(call);
    this.#sweeper ??= setInterval(() => this.#sweep(), sweepEveryMs(this.options.timeoutMs));
    return call;
  }

  #end(call: Call): void {
    this.#calls.delete(call);
    call.item.page.step.counter.running--;
  }

  /** Retry, or hand the final outcome over. */
  #finish(item: Item, outcome: Outcome): Promise<void> | void {
    if (outcome.ok || item.attempts > this.options.retries) return this.options.settle(item, outcome);
    this.options.log.debug({ subjectId: item.subjectId, attempt: item.attempts, error: outcome.error }, 'retrying');
    item.state = 'queued';
    this.#sleeping++;
    setTimeout(
      () => {
        this.#sleeping--;
        if (this.options.signal.aborted) return this.#notify();
        this.#due.push(item);
        this.#startWorkers();
      },
      Math.max(this.options.retryBackoffMs * 2 ** (item.attempts - 1), outcome.ok ? 0 : (outcome.retryAfterMs ?? 0)),
    );
  }

  /** Cancels the calls past their deadline; each is retried or failed like any failed call, by a fresh worker. */
  #sweep(): void {
    const now = Date.now();
    for (const call of this.#calls) {
      if (call.deadline > now) continue;
      const error = `timed out after ${this.options.timeoutMs} ms`;
      this.#detach(call, new Error(error));
      // A call that outlives its deadline is the clearest sign of an overloaded service.
      this.#limiter?.overloaded(call.startedAt);
      const settling = this.#finish(call.item, { ok: false, error });
      // The slot is free again whatever happens to the item: a fresh worker takes it.
      if (settling) void settling.then(() => this.#startWorkers());
      this.#startWorkers();
      this.#notify();
    }
  }

  /** Cancels a call and frees its slot: its worker ends without touching anything when (if) the handler settles. */
  #detach(call: Call, reason: unknown): void {
    call.cancel(reason);
    this.#end(call);
    this.#workers--;
  }

  #wake(): void {
    if (this.#roomWaiters.length === 0) return;
    const size = this.size;
    const waiting = this.#roomWaiters;
    this.#roomWaiters = [];
    for (const waiter of waiting) {
      if (size < waiter.below) waiter.resolve();
      else this.#roomWaiters.push(waiter);
    }
  }

  #notify(): void {
    if (this.options.signal.aborted) {
      for (const waiter of this.#roomWaiters) waiter.resolve();
      this.#roomWaiters = [];
    }
    if (this.#workers === 0 && this.#quietWaiters.length > 0) {
      const quiet = this.#quietWaiters;
      this.#quietWaiters = [];
      for (const resolve of quiet) resolve();
    }
    // Kept while workers hold slots, not stopped whenever no call runs: that
    // is every turn of the event loop (STARTS_PER_TURN), and a timer set and
    // cleared per turn costs more than the sweeps.
    if (this.#workers === 0 && this.#sweeper) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
    if (!this.#idle()) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** Deadlines are checked at a tenth of the timeout (10 ms to 1 s): a call ends at most that late. */
function sweepEveryMs(timeoutMs: number): number {
  return Math.min(1_000, Math.max(10, Math.floor(timeoutMs / 10)));
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
