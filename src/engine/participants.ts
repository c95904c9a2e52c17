import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import { runTotals } from '../db/queries/adoption.ts';
import { fenceParticipants, hadParticipants, participantsHoldClaims, participantsOf } from '../db/queries/participants.ts';
import { releaseLostClaims } from '../db/queries/release-claims.ts';
import type { RunProgress } from '../db/schema.ts';
import { pendingQueries, type WorkflowLookup } from './recovery.ts';
import type { StopCause } from './runner.ts';

/** How often the owner of a distributed run looks while participants still hold pages of it. */
const SETTLE_POLL_MS = 50;

/**
 * The owner's side of a distributed run (docs/architecture.md,
 * Participants): it adds the participants' counters to its own, fences a
 * participant that has gone silent (three heartbeat intervals) and puts its
 * pages back as pending, waits for participants' pages before a run can end,
 * and at the end fences every participant that is left, so nothing of
 * theirs is written after the run's end.
 */
export class RunCoordinator {
  private extra: RunProgress = {};
  private timer: NodeJS.Timeout | null = null;
  private readonly db: Db;
  private readonly runId: number;
  private readonly workflows: WorkflowLookup;
  private readonly heartbeatMs: number;
  private readonly log: Logger;

  constructor(options: { db: Db; runId: number; workflows: WorkflowLookup; heartbeatMs: number; log: Logger }) {
    this.db = options.db;
    this.runId = options.runId;
    this.workflows = options.workflows;
    this.heartbeatMs = options.heartbeatMs;
    this.log = options.log;
  }

  start(): void {
    this.timer = setInterval(
      () => void this.refresh().catch((error: unknown) => this.log.warn({ err: error }, 'participants: refresh failed')),
      this.heartbeatMs,
    );
    this.timer.unref();
  }

  /** What the participants have done, summed per step (the owner's heartbeat adds it to the run's progress). */
  readonly progress = (): RunProgress => this.extra;

  /** Reads the participants' counters and fences those gone silent. */
  async refresh(): Promise<void> {
    const rows = await participantsOf(this.db, this.runId);
    const sum: RunProgress = {};
    for (const row of rows) {
      for (const [step, p] of Object.entries(row.progress)) {
        const s = (sum[step] ??= { done: 0, failed: 0, running: 0 });
        s.done += p.done;
        s.failed += p.failed;
        if (row.active) s.running += p.running;
      }
    }
    this.extra = sum;
    const silent = rows.filter((r) => r.active && r.silent_s * 1000 > 3 * this.heartbeatMs).map((r) => r.token);
    if (silent.length > 0) {
      const released = await this.fence(silent);
      this.log.warn({ runId: this.runId, participants: silent, released }, 'participants went silent: fenced, their pages pending again');
    }
  }

  /** The runner's settle hook: waits until no participant holds a page of the run; true if one did. */
  readonly settle = async (signal: AbortSignal): Promise<boolean> => {
    let waited = false;
    while (!signal.aborted && (await participantsHoldClaims(this.db, this.runId))) {
      waited = true;
      await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
      await this.refresh();
    }
    return waited;
  };

  /**
   * The owner's run is ending (`cause` null: out of work). A stopping run
   * gives its participants `graceMs` to commit what finished and leave; then
   * every participant still there is fenced and its pages go back as
   * pending. Returns the run's true totals, counted from its interactions,
   * when it had participants (undefined: the owner's counters are the run's).
   * A fenced or lost owner fences nothing: whoever took the run does.
   */
  async close(cause: StopCause | null, graceMs: number): Promise<RunProgress | undefined> {
    if (this.timer) clearInterval(this.timer);
    if (cause?.kind === 'fenced' || cause?.kind === 'lock-lost') return undefined;
    // A run whose connections were terminated (a force took it over) cannot
    // coordinate anything: the end's fenced writes decide what it may still do.
    const had = await hadParticipants(this.db, this.runId).catch((error: unknown) => {
      this.log.warn({ err: error }, 'cannot look for participants; ending without them');
      return false;
    });
    if (!had) return undefined;
    if (cause !== null) {
      const deadline = Date.now() + graceMs;
      while (Date.now() < deadline && (await participantsOf(this.db, this.runId)).some((r) => r.active)) {
        await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
      }
    }
    await this.fence();
    const totals = await runTotals(this.db, this.runId);
    for (const step of Object.values(totals)) step.running = 0;
    return totals;
  }

  /** Fences the participants named (all active ones when none are), their claims released as pending, in one transaction. */
  private fence(tokens?: string[]): Promise<number> {
    return this.db.transaction().execute(async (tx) => {
      const fenced = await fenceParticipants(tx, this.runId, tokens);
      if (fenced === 0) return 0;
      const all = tokens ?? (await participantsOf(tx, this.runId)).map((r) => r.token);
      const released = await releaseLostClaims(tx, this.runId, pendingQueries(this.db, this.workflows), all);
      return released.pending;
    });
  }
}
