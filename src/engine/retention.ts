import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import { appendAudit } from '../db/queries/audit.ts';
import * as prune from '../db/queries/prune.ts';

// Retention: one maintenance service. What the runs of more than
// WORKFLOW_RETENTION_DAYS ago left behind is deleted in small batches
// (src/db/queries/prune.ts has the statements and the reasons for their
// shape): their finished interactions, button clicks handled that long ago,
// their run messages, claims they somehow left, force requests decided or
// expired that long ago. Never a run still going,
// never a pending interaction (unfinished work the next run adopts), never
// workflow_runs or audit_log: each run's record and the audit trail are kept
// for good (trimming them is the owner's deliberate act; docs/operations.md).
//
// The health monitor's leader starts a pass at each tick (one at a time per
// process); `workflow prune` (admin) runs one on demand. Every pass that
// deletes something, and every on-demand one, is audited with its counts.

export interface PruneCounts {
  /** Ended runs looked at. */
  runs: number;
  interactions: number;
  handledActions: number;
  runMessages: number;
  claims: number;
  forceRequests: number;
}

export interface PruneRequest {
  olderThanDays: number;
  dryRun?: boolean;
  /** Checked between batches: a pass stops early (what it deleted stays deleted) when this says so. */
  shouldStop?: () => boolean;
}

export interface RetentionOptions {
  db: Db;
  log: Logger;
  /** WORKFLOW_RETENTION_DAYS; 0 = the automatic passes never delete. */
  retentionDays: number;
  /** Rows per DELETE (default 2,000). */
  batchSize?: number;
  /**
   * After each batch, rest this many times as long as the batch took
   * (default 1: pruning takes at most about half of one backend's time), so
   * that the runs going meanwhile keep the server's I/O and CPU.
   */
  restRatio?: number;
}

const DAY_MS = 86_400_000;
/** Runs ended a little before the last pass's horizon are looked at again: an end is stamped at its transaction's start. */
const OVERLAP_MS = 10 * 60_000;

export class Retention {
  private readonly options: RetentionOptions;
  private readonly batchSize: number;
  private running: Promise<PruneCounts> | null = null;
  /** The automatic passes' horizon: runs ended before it were pruned by an earlier pass of this process. */
  private prunedBefore: Date | null = null;

  constructor(options: RetentionOptions) {
    this.options = options;
    this.batchSize = options.batchSize ?? 2_000;
  }

  get retentionDays(): number {
    return this.options.retentionDays;
  }

  /** The monitor leader's tick: a pass with the configured retention unless one is going (or retention is off). */
  tick(shouldStop: () => boolean): void {
    if (this.options.retentionDays === 0 || this.running) return;
    this.running = this.automaticPass(shouldStop)
      .catch((error: unknown) => {
        this.options.log.warn({ err: error }, 'retention pass failed; the next tick tries again');
        return empty();
      })
      .finally(() => (this.running = null));
  }

  /** Settles when the pass in progress (if any) has stopped. */
  async idle(): Promise<void> {
    await this.running;
  }

  private async automaticPass(shouldStop: () => boolean): Promise<PruneCounts> {
    const cutoff = new Date(Date.now() - this.options.retentionDays * DAY_MS);
    const since = this.prunedBefore && new Date(this.prunedBefore.getTime() - OVERLAP_MS);
    const counts = await this.prune({ olderThanDays: this.options.retentionDays, shouldStop }, cutoff, since);
    if (!shouldStop()) this.prunedBefore = cutoff;
    if (counts.interactions + counts.handledActions + counts.runMessages + counts.claims + counts.forceRequests > 0) {
      this.options.log.info({ ...counts, olderThanDays: this.options.retentionDays }, 'retention: pruned');
      await appendAudit(this.options.db, {
        actor: 'retention',
        source: 'monitor',
        action: 'prune',
        outcome: 'event',
        details: { older_than_days: this.options.retentionDays, dry_run: false, ...snake(counts) },
      });
    }
    return counts;
  }

  /**
   * Deletes (or, dry, counts) what runs ended more than `olderThanDays` ago
   * left behind. `since` narrows the runs looked at to those ended after it.
   */
  async prune(request: PruneRequest, cutoff = new Date(Date.now() - request.olderThanDays * DAY_MS), since: Date | null = null): Promise<PruneCounts> {
    const { db } = this.options;
    const dryRun = request.dryRun ?? false;
    const stop = request.shouldStop ?? (() => false);
    const counts = empty();
    const runs = await prune.endedRunsBetween(db, since, cutoff);
    counts.runs = runs.length;
    if (dryRun) {
      counts.interactions = await prune.countRunInteractions(
        db,
        runs.map((r) => r.id),
      );
    } else {
      for (const run of runs) {
        for (;;) {
          if (stop()) return counts;
          const started = performance.now();
          const deleted = await prune.deleteRunInteractions(db, run.id, this.batchSize);
          counts.interactions += deleted;
          if (deleted < this.batchSize) break;
          await new Promise((resolve) => setTimeout(resolve, (performance.now() - started) * (this.options.restRatio ?? 1)));
        }
      }
    }
    for (;;) {
      if (stop()) return counts;
      const deleted = await prune.deleteHandledActions(db, cutoff, this.batchSize, dryRun);
      counts.handledActions += deleted;
      if (dryRun || deleted < this.batchSize) break;
    }
    counts.runMessages = await prune.deleteRunMessages(db, cutoff, dryRun);
    counts.claims = await prune.deleteEndedRunClaims(db, cutoff, dryRun);
    counts.forceRequests = await prune.deleteForceRequests(db, cutoff, dryRun);
    return counts;
  }
}

function empty(): PruneCounts {
  return { runs: 0, interactions: 0, handledActions: 0, runMessages: 0, claims: 0, forceRequests: 0 };
}

/** The counts as the audit log's details spell them. */
export function snake(counts: PruneCounts): Record<string, number> {
  return {
    runs: counts.runs,
    interactions: counts.interactions,
    handled_actions: counts.handledActions,
    run_messages: counts.runMessages,
    claims: counts.claims,
    force_requests: counts.forceRequests,
  };
}
