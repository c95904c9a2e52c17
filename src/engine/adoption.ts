import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { failedSubjects, heldClaims, holdAdopterLocks, lockRunningRun, ownerlessRuns, runTotals, transferOwnership } from '../db/queries/adoption.ts';
import { fenceParticipants } from '../db/queries/participants.ts';
import type { RunOwner } from '../db/queries/runs.ts';
import { releaseLostClaims } from '../db/queries/release-claims.ts';
import { Listener } from '../db/listener.ts';
import type { OwnerRecord, OwnershipReason } from '../db/run-states.ts';
import type { EngineTables, RunProgress, RunRow } from '../db/schema.ts';
import type { Engine } from './engine.ts';
import { endLostRun, pendingQueries, type WorkflowLookup } from './recovery.ts';

// Adoption (docs/architecture.md, Adoption): a running run whose lock is free
// has no owner (it died, or handed the run off on shutdown). A serving
// instance that defines its workflow takes it over: the same run, a new owner
// token, the lost owner's claims ended and what they held left pending with
// its attempts, the counters carried on from what the run has committed.

/** NOTIFY on a handoff: adopters look at once instead of at their next poll. */
export const ADOPT_CHANNEL = 'workflow_adopt';
/**
 * How often a serving instance looks for runs without an owner. A SIGKILL
 * sends nothing, so this bounds the time from an owner's death to its
 * adoption (with the time to take it over: bench/adoption.ts); the look is
 * one statement over the active runs and pg_locks.
 */
export const ADOPT_POLL_MS = 1_000;

export type Ownership =
  | { kind: 'gone' }
  /** Ended `abandoned` (crash_loop) instead: adopted too often without progress. */
  | { kind: 'crash_loop'; row: RunRow; released: { claims: number; pending: number } }
  | {
      kind: 'adopted';
      row: RunRow;
      reason: OwnershipReason;
      /** What the run had finished at its last heartbeat, per step: the new owner's counters start here (exact at the run's end). */
      progress: RunProgress;
      failed: Record<string, number[]>;
      /** After an owner was lost without progress: one item at a time, each marked in flight first. */
      careful: boolean;
      released: { claims: number; pending: number };
    };

/**
 * The adoption itself, in one transaction, by a caller that holds the run's
 * advisory lock: the run row FOR UPDATE (waits for any fenced write of the
 * old owner still in flight), the lost owner's claims released as pending
 * interactions, and the fence moved to the new owner with the owners list
 * extended. An owner lost `maxAdoptions` times in a row without the run
 * finishing anything more ends the run `abandoned` (crash_loop), naming what
 * the last owner had in flight.
 */
export async function takeOwnership(
  db: Kysely<EngineTables>,
  runId: number,
  owner: RunOwner,
  options: { workflows: WorkflowLookup; maxAdoptions: number },
): Promise<Ownership> {
  return db.transaction().execute(async (tx): Promise<Ownership> => {
    const row = await lockRunningRun(tx, runId);
    if (!row) return { kind: 'gone' };
    const reason: OwnershipReason = row.owner_token === null ? 'handoff' : 'owner_lost';
    const owners: OwnerRecord[] = [...(row.owners ?? [])];
    const last = owners.at(-1);
    // The counters carry on from the lost owner's last heartbeat: counting the
    // run's interactions is a scan of the whole table (no index covers
    // finished rows by run, on purpose: migrations/0006) and would delay every
    // adoption by it; what the heartbeat missed is counted at the run's end.
    // Progress is judged on the heartbeat too. An owner lost within a
    // heartbeat of its last commit counts as lost without progress, which
    // only makes the next owner careful; a careful owner writes its progress
    // before each item (markInFlight), so its own streak is exact.
    const progress = heartbeatProgress(row.progress);
    const finished = finishedCount(progress);
    const now = new Date().toISOString();
    const progressed = !last || finished > last.interactions_at_start;
    // A handoff is no crash: it neither counts nor resets the streak.
    const noProgress = reason === 'handoff' ? (last?.no_progress ?? 0) : progressed ? 0 : (last?.no_progress ?? 0) + 1;
    const inFlight = reason === 'owner_lost' ? describeInFlight(row.in_flight, await heldClaims(tx, runId)) : undefined;
    if (last && !last.until) owners[owners.length - 1] = { ...last, until: now, ended: reason, ...(inFlight ? { in_flight_at_loss: inFlight } : {}) };

    if (noProgress >= options.maxAdoptions) {
      await tx
        .updateTable('workflow_runs')
        .set({ owners: JSON.stringify(owners) })
        .where('id', '=', runId)
        .execute();
      const error = `its owner was lost ${noProgress} times in a row without the run finishing anything (WORKFLOW_MAX_ADOPTIONS ${options.maxAdoptions}); in flight at the last loss: ${inFlight}`;
      const ended = await endLostRun(tx, db, row, 'crash_loop', { workflows: options.workflows, error });
      return ended ? { kind: 'crash_loop', ...ended } : { kind: 'gone' };
    }
    // Every participant is fenced with the lost owner; their claims are released below with the owner's.
    await fenceParticipants(tx, runId);
    const released = await releaseLostClaims(tx, runId, pendingQueries(db, options.workflows));
    const failed = await failedSubjects(tx, runId);
    owners.push({ instance: owner.instance, reason, since: now, interactions_at_start: finished, no_progress: noProgress });
    const adopted = await transferOwnership(tx, runId, owner, { owners, progress });
    return { kind: 'adopted', row: adopted, reason, progress, failed, careful: noProgress >= 1, released };
  });
}

/**
 * What a run really finished, per step, counted from its interactions: the
 * end of a run whose counters began from a lost owner's heartbeat. Steps
 * keep the order and the concurrency limit of `counters`, the runner's own.
 */
export async function exactTotals(db: Kysely<EngineTables>, runId: number, counters: RunProgress): Promise<RunProgress> {
  const counted = await runTotals(db, runId);
  const totals: RunProgress = {};
  for (const [step, own] of Object.entries(counters)) {
    const c = counted[step];
    totals[step] = { ...own, done: c?.done ?? 0, failed: c?.failed ?? 0, running: 0 };
  }
  for (const [step, c] of Object.entries(counted)) totals[step] ??= c;
  return totals;
}

/** A run row's last heartbeat of progress, as the new owner's starting counters (nothing is running for it yet). */
function heartbeatProgress(progress: RunProgress | null): RunProgress {
  const base: RunProgress = {};
  for (const [step, p] of Object.entries(progress ?? {})) base[step] = { done: p.done, failed: p.failed, running: 0 };
  return base;
}

function finishedCount(progress: RunProgress): number {
  return Object.values(progress).reduce((n, p) => n + p.done + p.failed, 0);
}

/** What a lost owner was running: the item its careful mode marked, else the ranges it had claimed. */
function describeInFlight(marker: { step: string; subject: number } | null, claims: { step: string; first: number; last: number }[]): string {
  if (marker) return `step ${marker.step}, subject ${marker.subject}`;
  if (claims.length === 0) return 'nothing claimed';
  const shown = claims.slice(0, 5).map((c) => (c.first === c.last ? `step ${c.step}, subject ${c.first}` : `step ${c.step}, subjects ${c.first}-${c.last}`));
  return `${shown.join('; ')}${claims.length > shown.length ? `; and ${claims.length - shown.length} more ranges` : ''} (claimed)`;
}

/**
 * The serving side of adoption: every ADOPT_POLL_MS (and at once on a
 * handoff's NOTIFY) it lists the running runs of the workflows it defines
 * whose lock nobody holds, and adopts each it can take the lock of
 * (Engine.adopt). Its session also holds this instance's adopter presence
 * locks, by which others know a lost run will be adopted (adopterPresent).
 */
export class Adopter {
  private readonly listener: Listener;
  private readonly engine: Engine;
  private readonly workflowIds: number[];
  private readonly log: Logger;
  private readonly pollMs: number;
  private timer: NodeJS.Timeout | null = null;
  private pass: Promise<void> | null = null;
  private closed = false;

  constructor(engine: Engine, options: { connectionString: string; workflowIds: number[]; log: Logger; pollMs?: number }) {
    this.engine = engine;
    this.workflowIds = options.workflowIds;
    this.log = options.log;
    this.pollMs = options.pollMs ?? ADOPT_POLL_MS;
    this.listener = new Listener({
      connectionString: options.connectionString,
      applicationName: `workflow-adopter:${engine.instanceId}`,
      channels: [ADOPT_CHANNEL],
    });
    this.listener.on('notification', () => void this.poke());
    this.listener.on('lost', (error) => {
      if (!this.closed) this.log.warn({ err: error }, 'adopter connection lost; reconnecting');
    });
    this.listener.on('reconnected', () => {
      if (this.closed || !this.listener.session) return;
      holdAdopterLocks(this.listener.session, this.workflowIds).then(
        () => this.poke(),
        (error: unknown) => this.log.warn({ err: error }, 'adopter: could not take the presence locks again'),
      );
    });
  }

  async start(): Promise<void> {
    if (this.workflowIds.length === 0) return;
    await this.listener.start({ retry: true });
    if (this.listener.session) await holdAdopterLocks(this.listener.session, this.workflowIds);
    this.timer = setInterval(() => void this.poke(), this.pollMs);
    this.timer.unref();
    await this.poke();
  }

  /** One pass at a time; a poke during a pass shares it. */
  poke(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.pass ??= this.adoptAll().finally(() => (this.pass = null));
    return this.pass;
  }

  private async adoptAll(): Promise<void> {
    try {
      for (const candidate of await ownerlessRuns(this.engine.db, this.workflowIds)) {
        if (this.closed) return;
        const outcome = await this.engine.adopt(candidate);
        if (outcome.kind === 'adopted') this.log.warn({ runId: candidate.id, workflowId: candidate.workflow_id }, 'adopted a run whose owner is gone');
        else if (outcome.kind === 'abandoned')
          this.log.error({ runId: candidate.id, error: outcome.run.error }, 'run abandoned: its owners kept being lost without progress');
      }
    } catch (error) {
      this.log.warn({ err: error }, 'adoption pass failed');
    }
  }

  /** Adopts nothing more and releases the presence locks (before a shutdown hands this instance's runs off). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.pass;
    await this.listener.close();
  }
}
