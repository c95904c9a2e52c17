import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import { claimPage, overlappingClaims, pendingRange, readClaimedPage } from '../db/queries/claim-interactions.ts';
import type { UnfinishedItem } from '../db/queries/release-claims.ts';
import { markInFlight } from '../db/queries/adoption.ts';
import type { WorkFence } from '../db/queries/fence.ts';
import { heartbeat } from '../db/queries/runs.ts';
import type { RunProgress } from '../db/schema.ts';
import type { ResolvedWorkflow, StepContext } from '../workflows/define.ts';
import { Completer, FencedError } from './completer.ts';
import { ItemPool } from './item-pool.ts';
import type { Item, Page, StepRun } from './work.ts';

/** Why a run stopped before running out of work. */
export type StopCause =
  | { kind: 'stop'; by: string | null }
  | { kind: 'shutdown' }
  /** Graceful shutdown that releases the run for adoption instead of ending it. */
  | { kind: 'handoff' }
  /** Taken over or recovered by someone else: write nothing more. */
  | { kind: 'fenced' }
  /** The lock connection died: the lock may be someone else's now; write nothing more. */
  | { kind: 'lock-lost'; error: string }
  | { kind: 'error'; error: string };

export interface Execution {
  /** Null when the run ran out of work. */
  cause: StopCause | null;
  progress: RunProgress;
  /** Claimed items whose results did not commit (left as pending interactions). */
  unfinished: UnfinishedItem[];
}

export interface RunnerOptions {
  db: Db;
  workflow: ResolvedWorkflow;
  /** The owner's fence, or a participant's (docs/architecture.md, Participants). */
  fence: WorkFence;
  subjectId: number | null;
  heartbeatMs: number;
  log: Logger;
  /** What earlier owners of this run finished (an adopted run); its counters carry on from there. */
  base?: RunProgress;
  /** Subjects that failed under earlier owners, per step: not claimed again. */
  failed?: Record<string, number[]>;
  /**
   * Careful mode (an adoption after an owner was lost without progress): one
   * handler at a time, each started only after everything before it is
   * committed and after its subject is marked in flight on the run row.
   */
  careful?: boolean;
  /** Whether the run's lock connection still answers (RunLock.verify): asked when ownership is in doubt. */
  verifyLock?: () => Promise<boolean>;
  /** A participant's heartbeat (its own row); the owner's is the run row's. Undefined back: fenced. */
  beat?: (progress: RunProgress) => Promise<{ stopRequestedBy: string | null } | undefined>;
  /** The owner of a distributed run: what its participants have done, added to its counters. */
  extraProgress?: () => RunProgress;
  /**
   * The owner of a distributed run, when a wave found nothing: waits until no
   * participant holds a page of the run; true if one did (their commits can
   * make work for later steps: another wave looks).
   */
  settle?: (signal: AbortSignal) => Promise<boolean>;
  /**
   * Where in each feeder's slice this runner starts claiming, as a fraction
   * of the slice (0: its start, the owner's). Participants start elsewhere
   * (participantStart), so the runners of one run do not all begin at the
   * same subjects and trail each other's claims, each conflict a detour.
   */
  startAt?: number;
  /**
   * A distributed run: the subjects that failed under any of its runners,
   * read again before each claim, so that a subject one instance failed is
   * not tried again by another (each runner's own failures it knows
   * already). One query per page, over the failed rows only.
   */
  failedInRun?: () => Promise<Record<string, number[]>>;
}

const NO_CURSOR = Number.MIN_SAFE_INTEGER;
/** One feeder waits on each claim's two statements in turn and cannot keep a fast workflow's queue full; two can (bench/noop-engine.ts). */
const FEEDERS_PER_STEP = 2;
/**
 * Handler calls started in one turn of the event loop, at most. Calls started
 * together are answered together, so with 500 slow calls in flight an
 * uncapped pool settles into bursts: hundreds of answers handled and calls
 * started in one turn, the event-loop stalls that delay everything else in the
 * process. 25 keeps bench/io-bound.ts's event-loop delay within its target
 * without slowing a no-op run (a turn hop per 25 items); the figures for 10
 * to 50 are in bench/RESULTS.md.
 */
const STARTS_PER_TURN = 25;

/**
 * The start fraction of the `ordinal`-th participant of a run (1, 2, …): the
 * golden-ratio sequence, which spreads any number of participants evenly
 * over a slice without knowing how many will join.
 */
export function participantStart(ordinal: number): number {
  return (ordinal * 0.6180339887498949) % 1;
}

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
 * Executes one run in waves (docs/architecture.md, Waves and the completer).
 * Each wave walks every step's
 * pending subjects page by page, claims each page as a range
 * (src/db/queries/claim-interactions.ts), runs its items' handlers on one
 * bounded queue, and commits results in batches through the Completer. A
 * wave that finds nothing to do ends the run.
 */
export class Runner {
  private readonly controller = new AbortController();
  private cause: StopCause | null = null;
  private readonly steps: StepRun[];
  private readonly pool: ItemPool;
  private readonly completer: Completer;
  /** Pages with items not yet committed: what a stop leaves pending. */
  private readonly openPages = new Set<Page>();
  private readonly options: RunnerOptions;
  /** Until when ownership counts as confirmed (see callInDoubt). */
  private freshUntil: number;
  private confirming: Promise<boolean> | null = null;

  constructor(options: RunnerOptions) {
    this.options = options;
    const { workflow } = options;
    this.steps = workflow.steps.map((definition, index) => ({
      definition,
      name: definition.name,
      previousStep: index === 0 ? null : workflow.steps[index - 1]!.name,
      counter: { done: options.base?.[definition.name]?.done ?? 0, failed: options.base?.[definition.name]?.failed ?? 0, running: 0 },
      failedSubjects: [...(options.failed?.[definition.name] ?? [])],
    }));
    // Ownership is fresh for two heartbeat intervals after the last fenced write that found the run ours.
    this.freshUntil = Date.now() + 2 * options.heartbeatMs;
    this.pool = new ItemPool({
      concurrency: options.careful ? 1 : workflow.concurrency,
      maxConcurrency: workflow.maxConcurrency,
      timeoutMs: workflow.timeoutMs,
      retries: workflow.retries,
      retryBackoffMs: workflow.retryBackoffMs,
      startsPerTurn: STARTS_PER_TURN,
      log: options.log,
      signal: this.controller.signal,
      call: (item, ctx) =>
        !options.careful && Date.now() <= this.freshUntil ? item.page.step.definition.handle(item.input, ctx) : this.callInDoubt(item, ctx),
      accept: (item, value) => this.accept(item, value),
      settle: (item, outcome) => {
        item.input = undefined; // no more calls; the JSON text goes to the database
        return this.completer.add(outcome.ok ? { item, status: 'completed', error: null } : { item, status: 'failed', error: outcome.error });
      },
    });
    this.completer = new Completer(options.db, options.fence, workflow.id, workflow.batchSize, {
      committed: (step, results, finishedPages) => {
        for (const result of results) {
          if (result.status === 'completed') step.counter.done++;
          else {
            step.counter.failed++;
            step.failedSubjects.push(result.item.subjectId);
          }
        }
        for (const page of finishedPages) this.openPages.delete(page);
      },
      fatal: (error) => this.abort(error instanceof FencedError ? { kind: 'fenced' } : { kind: 'error', error: error.message }),
    });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Ends the run early. The first cause wins. */
  abort(cause: StopCause): void {
    if (this.cause) return;
    this.cause = cause;
    this.options.log.info({ cause }, 'run stopping'); // the run's logger carries runId
    if (cause.kind === 'fenced' || cause.kind === 'lock-lost') this.completer.abandon();
    const reason = new Error(`run stopped: ${cause.kind}`);
    this.controller.abort(reason);
    this.pool.abort(reason);
  }

  // ── Graceful shutdown hook (engine.shutdown): start no more handlers, let
  // those in flight finish. A quiet pool also stops the claiming (feeders
  // wait for room in it). abort() afterwards ends the run as usual; results
  // that came in meanwhile are committed by execute()'s last drain.
  /** Starts no more handlers; resolves when none is in flight. */
  quiesce(): Promise<void> {
    return this.pool.quiesce();
  }

  progress(): RunProgress {
    const progress: RunProgress = {};
    const limit = this.pool.limit;
    for (const step of this.steps) progress[step.name] = limit === undefined ? { ...step.counter } : { ...step.counter, limit };
    const extra = this.options.extraProgress?.();
    if (extra) {
      for (const [name, p] of Object.entries(extra)) {
        const own = progress[name];
        progress[name] = own ? { ...own, done: own.done + p.done, failed: own.failed + p.failed, running: own.running + p.running } : { ...p };
      }
    }
    return progress;
  }

  async execute(): Promise<Execution> {
    const beat = setInterval(() => void this.heartbeat(), this.options.heartbeatMs);
    try {
      while (!this.signal.aborted) {
        const found = await Promise.all(this.steps.map((step) => this.feed(step)));
        await this.pool.onIdle();
        await this.completer.drainAndRelease();
        if (found.every((n) => n === 0) && !(this.options.settle && (await this.options.settle(this.signal)))) break;
      }
    } catch (error) {
      this.abort(error instanceof FencedError ? { kind: 'fenced' } : { kind: 'error', error: (error as Error).message });
    } finally {
      clearInterval(beat);
    }
    await this.pool.onIdle();
    // Results finished before a stop are kept; a fenced run writes nothing.
    if (this.cause?.kind !== 'fenced' && this.cause?.kind !== 'lock-lost') await this.completer.drain();
    return { cause: this.cause, progress: this.progress(), unfinished: this.unfinished() };
  }

  private addFailed(failed: Record<string, number[]>): void {
    for (const step of this.steps) {
      const known = new Set(step.failedSubjects);
      for (const subject of failed[step.name] ?? []) if (!known.has(subject)) step.failedSubjects.push(subject);
    }
  }

  private unfinished(): UnfinishedItem[] {
    const items: UnfinishedItem[] = [];
    for (const page of this.openPages) {
      for (const item of page.items) {
        if (item.state === 'committed') continue;
        items.push({ step: page.step.name, subjectId: item.subjectId, attempts: item.attempts, inputJson: item.inputJson, claimedAtMs: item.claimedAtMs });
      }
    }
    return items;
  }

  /**
   * One step's share of a wave. Claiming a page is two statements and a
   * feeder waits for each in turn, so a single feeder bounds a fast
   * workflow; the step's pending id range is split among FEEDERS_PER_STEP
   * feeders that claim side by side. Returns the items found.
   */
  private async feed(step: StepRun): Promise<number> {
    const { db, subjectId } = this.options;
    if (subjectId !== null) return this.feedRange(step, NO_CURSOR, null);
    const range = await pendingRange(db, step.definition.pending(db));
    if (!range) return 0;
    const bounds = splitRange(range.min, range.max, FEEDERS_PER_STEP);
    const startAt = this.options.startAt ?? 0;
    const found = await Promise.all(
      bounds.map(async ([after, upTo]) => {
        const end = upTo ?? range.max;
        const from = after + Math.floor((end - after) * startAt);
        if (from <= after || from >= end) return this.feedRange(step, after, upTo);
        // From the start point to the slice's end, then the part before it.
        return (await this.feedRange(step, from, upTo)) + (await this.feedRange(step, after, from));
      }),
    );
    return found.reduce((a, b) => a + b, 0);
  }

  /**
   * Claims page after page of subjects in (after, upTo], as fast as the queue
   * takes them. A page that overlaps another run's claim (a single_subject
   * run beside this batch, or a lost run not yet recovered) is claimed up to
   * just below that claim, and the feeder goes on past it: those subjects are
   * the other run's.
   */
  private async feedRange(step: StepRun, after: number, upTo: number | null): Promise<number> {
    const { db, workflow, fence, subjectId } = this.options;
    let found = 0;
    /** Set while claiming the part of the range below another run's claim: where to go on afterwards. */
    let detour = null as { upTo: number; resumeAfter: number } | null;
    while (!this.signal.aborted) {
      // Backpressure: keep about one page waiting per feeder, no more.
      await this.pool.onSizeLessThan(workflow.batchSize);
      if (this.signal.aborted) break;
      // Another runner's failure is committed before its claim ends, so read now it is excluded from this claim.
      if (this.options.failedInRun) this.addFailed(await this.options.failedInRun());
      const outcome = await claimPage(db, {
        fence,
        workflowId: workflow.id,
        step: step.name,
        pending: step.definition.pending(db),
        after,
        upTo: detour?.upTo ?? upTo,
        limit: workflow.batchSize,
        subjectId,
        exclude: step.failedSubjects,
      });
      if (outcome.kind === 'fenced') {
        this.abort({ kind: 'fenced' });
        break;
      }
      if (outcome.kind === 'conflict') {
        const others = await overlappingClaims(db, { workflowId: workflow.id, step: step.name, runId: fence.runId, first: outcome.first, last: outcome.last });
        const blocking = others[0];
        if (!blocking) continue; // it ended meanwhile: claim again
        if (blocking.run_id === fence.runId && blocking.holder === (fence.participant ? fence.ownerToken : null))
          throw new Error(`run ${fence.runId} overlaps its own claim on step ${step.name} [${blocking.first}, ${blocking.last}]`);
        if (blocking.first > outcome.first) detour = { upTo: blocking.first - 1, resumeAfter: Math.max(blocking.last, detour?.resumeAfter ?? blocking.last) };
        else after = blocking.last;
        continue;
      }
      if (outcome.kind === 'claimed') {
        after = outcome.last;
        found += await this.takePage(step, outcome.claimId, outcome.first, outcome.last, outcome.claimedAtMs);
      }
      const exhausted = outcome.kind === 'empty' || outcome.seen < workflow.batchSize;
      if (!exhausted) continue;
      if (!detour) break;
      after = detour.resumeAfter;
      detour = null;
    }
    return found;
  }

  /** Reads a claimed page and queues its items; returns how many. */
  private async takePage(step: StepRun, claimId: number, first: number, last: number, claimedAtMs: number): Promise<number> {
    const { db, workflow, subjectId } = this.options;
    const subjects = await readClaimedPage(db, {
      workflowId: workflow.id,
      step: step.name,
      pending: step.definition.pending(db),
      first,
      last,
      subjectId,
      exclude: step.failedSubjects,
    });
    if (subjects.length === 0) {
      this.completer.releaseLater(claimId);
      return 0;
    }
    const page: Page = { claimId, step, items: new Array(subjects.length), open: subjects.length };
    for (let i = 0; i < subjects.length; i++) {
      const subject = subjects[i]!;
      page.items[i] = {
        page,
        subjectId: subject.subjectId,
        input: JSON.parse(subject.inputJson),
        inputJson: subject.inputJson,
        pendingId: subject.pendingId,
        claimedAtMs,
        attempts: 0,
        state: 'queued',
        output: undefined,
        outputJson: null,
      };
    }
    this.openPages.add(page);
    this.pool.push(page.items);
    return subjects.length;
  }

  /** A handler's value: checked against the step's output schema and rendered as JSON, or the reason it is rejected. */
  private accept(item: Item, value: unknown): string | undefined {
    const step = item.page.step;
    let output = value;
    if (step.definition.output) {
      const parsed = step.definition.output.safeParse(value);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        return `output rejected by step ${step.name}: ${issue ? `${issue.path.join('.') || 'value'}: ${issue.message}` : 'invalid'}`;
      }
      output = parsed.data;
    }
    try {
      item.outputJson = JSON.stringify(output ?? null);
    } catch (error) {
      return `output of step ${step.name} is not JSON: ${(error as Error).message}`;
    }
    item.output = output;
    return undefined;
  }

  private async heartbeat(): Promise<boolean> {
    const sentAt = Date.now();
    try {
      const progress = this.progress();
      const beat = await (this.options.beat ? this.options.beat(progress) : heartbeat(this.options.db, this.options.fence, progress));
      if (!beat) {
        this.abort({ kind: 'fenced' });
        return false;
      }
      // A beat that took longer than an interval says the process or the database stalled: confirm again before more calls.
      if (Date.now() - sentAt < this.options.heartbeatMs) this.freshUntil = sentAt + 2 * this.options.heartbeatMs;
      if (beat.stopRequestedBy !== null) this.abort({ kind: 'stop', by: beat.stopRequestedBy });
      return true;
    } catch (error) {
      this.freshUntil = 0;
      this.options.log.warn({ err: error }, 'heartbeat failed');
      return false;
    }
  }

  /**
   * A handler call while ownership is in doubt: no fenced write has found the
   * run ours for two heartbeat intervals (the process was frozen, say, with
   * SIGSTOP, or a heartbeat failed), or the run is in careful mode. Before
   * anything starts, one fenced heartbeat and the lock connection confirm
   * the run is still ours; if not, the run aborts and the call is cancelled
   * without calling the handler (a paid model call, say). In careful mode
   * the item's predecessors are committed and the item is marked in flight
   * first (markInFlight).
   */
  private async callInDoubt(item: Item, ctx: StepContext): Promise<unknown> {
    if (Date.now() > this.freshUntil && !(await this.confirm())) throw new Error('ownership lost before the call started');
    if (this.options.careful) {
      await this.completer.drain();
      const marked = await markInFlight(this.options.db, this.options.fence, { step: item.page.step.name, subject: item.subjectId }, this.progress());
      if (!marked) {
        this.abort({ kind: 'fenced' });
        throw new Error('ownership lost before the call started');
      }
    }
    if (this.signal.aborted) throw new Error('run stopped before the call started');
    return item.page.step.definition.handle(item.input, ctx);
  }

  /** One confirmation at a time, shared by every call waiting on it. */
  private confirm(): Promise<boolean> {
    this.confirming ??= (async () => {
      while (!this.signal.aborted) {
        if (await this.heartbeat()) {
          if (this.options.verifyLock && !(await this.options.verifyLock())) {
            this.abort({ kind: 'lock-lost', error: 'the lock connection no longer answers' });
            return false;
          }
          this.freshUntil = Date.now() + 2 * this.options.heartbeatMs;
          return !this.signal.aborted;
        }
        if (this.signal.aborted) break;
        await new Promise((resolve) => setTimeout(resolve, Math.min(200, this.options.heartbeatMs)));
      }
      return false;
    })().finally(() => (this.confirming = null));
    return this.confirming;
  }
}
