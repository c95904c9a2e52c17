import type { RunMode } from './schema.ts';

// The run state machine: the statuses a workflow run goes through, the
// reasons it ends for, which moves between statuses are allowed (each ending
// names its reason), and which action a request is stored and audited as.
// The status column is typed by these unions, and the statements in
// queries/runs.ts that move a run take them; see docs/architecture.md, "Run
// states". The CHECK on workflow_runs.status (migrations/0001_engine.ts) lists
// the same statuses.

export const RUN_STATUSES = ['queued', 'running', 'completed', 'failed', 'stopped', 'abandoned'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/** Not ended yet: waiting for a serving instance (queued) or owned by one (running). */
export const ACTIVE_RUN_STATUSES = ['queued', 'running'] as const satisfies readonly RunStatus[];
export type ActiveRunStatus = (typeof ACTIVE_RUN_STATUSES)[number];

/** Final: nothing moves a run out of these. */
export const ENDED_RUN_STATUSES = ['completed', 'failed', 'stopped', 'abandoned'] as const satisfies readonly RunStatus[];
export type EndedRunStatus = (typeof ENDED_RUN_STATUSES)[number];

/** What `run --run <id>` (single_run) may pick up: an ended run with work left. */
export const RESUMABLE_RUN_STATUSES = ['stopped', 'failed', 'abandoned'] as const satisfies readonly EndedRunStatus[];

export const ENDED_REASONS = [
  /** The run ran out of work having done some. */
  'finished',
  /** The run found nothing to do. */
  'no_work',
  /** A fatal error in the run itself (not an item's failure: those are counted). */
  'error',
  /** Someone asked it to stop (`stop`, the Stop button, Ctrl-C). */
  'stop_requested',
  /** Its process shut down gracefully. */
  'shutdown',
  /** A `force` took it over; the forcing instance wrote the end. */
  'forced',
  /** Its owner was gone (its lock free) and no instance adopts it; recovery wrote the end. */
  'owner_lost',
  /** Adopted again and again without progress (WORKFLOW_MAX_ADOPTIONS): a handler likely kills its process; the error names what was in flight. */
  'crash_loop',
  /** Queued by `run --detach` and never started: refused by the serving instance, or stopped first. */
  'refused',
] as const;
export type EndedReason = (typeof ENDED_REASONS)[number];

/**
 * Every allowed move from one status to another, with the reasons that go
 * with it. A run is created `queued` (`run --detach`) or `running`; the only
 * move without a reason is a queued run's start. `by` says who writes the
 * move: the run's owner (fenced by its owner token), recovery on behalf of
 * an owner that is gone or forced out (holding the run's lock), or whoever
 * handles the queued run.
 */
export const RUN_TRANSITIONS = [
  { from: 'queued', to: 'running', reasons: [], by: 'owner' },
  { from: 'queued', to: 'failed', reasons: ['refused'], by: 'queue' },
  { from: 'running', to: 'completed', reasons: ['finished', 'no_work'], by: 'owner' },
  { from: 'running', to: 'failed', reasons: ['error'], by: 'owner' },
  { from: 'running', to: 'stopped', reasons: ['stop_requested', 'shutdown'], by: 'owner' },
  { from: 'running', to: 'stopped', reasons: ['forced'], by: 'recovery' },
  { from: 'running', to: 'abandoned', reasons: ['owner_lost'], by: 'recovery' },
  { from: 'running', to: 'abandoned', reasons: ['crash_loop'], by: 'recovery' },
] as const satisfies readonly { from: RunStatus; to: RunStatus; reasons: readonly EndedReason[]; by: 'owner' | 'recovery' | 'queue' }[];

type Transition = (typeof RUN_TRANSITIONS)[number];
type EndingOf<T extends Transition> = T extends unknown ? { status: T['to']; reason: T['reasons'][number] } : never;

/** How a run's owner ends it: the status with its reason (queries/runs.ts endRun). */
export type OwnerEnding = EndingOf<Extract<Transition, { from: 'running'; by: 'owner' }>>;
/** How recovery ends a run whose owner is gone or was forced out (queries/runs.ts endRunWithoutOwner). */
export type RecoveryEnding = EndingOf<Extract<Transition, { by: 'recovery' }>>;
export type RecoveryReason = RecoveryEnding['reason'];
/** How a queued run ends without starting (queries/runs.ts refuseQueuedRun). */
export type QueueEnding = EndingOf<Extract<Transition, { by: 'queue' }>>;

export function isAllowedTransition(from: RunStatus, to: RunStatus, reason: EndedReason | null): boolean {
  return RUN_TRANSITIONS.some(
    (t) => t.from === from && t.to === to && (reason === null ? t.reasons.length === 0 : (t.reasons as readonly EndedReason[]).includes(reason)),
  );
}

export function isActive(status: RunStatus): status is ActiveRunStatus {
  return (ACTIVE_RUN_STATUSES as readonly RunStatus[]).includes(status);
}

export function isResumable(status: RunStatus): boolean {
  return (RESUMABLE_RUN_STATUSES as readonly RunStatus[]).includes(status);
}

/**
 * Why an owner's run ended, from what stopped it (null: it ran out of work)
 * and how many items it finished. The engine's StopCause kinds that reach
 * here are the ones whose end the owner writes; `fenced` and `lock-lost`
 * write nothing.
 */
export function ownerEnding(cause: { kind: 'stop' | 'shutdown' | 'error' } | null, itemsFinished: number): OwnerEnding {
  if (cause === null) return itemsFinished === 0 ? { status: 'completed', reason: 'no_work' } : { status: 'completed', reason: 'finished' };
  switch (cause.kind) {
    case 'stop':
      return { status: 'stopped', reason: 'stop_requested' };
    case 'shutdown':
      return { status: 'stopped', reason: 'shutdown' };
    case 'error':
      return { status: 'failed', reason: 'error' };
  }
}

/** The status recovery ends a run in, for its reason. */
export function recoveryEnding(reason: RecoveryReason): RecoveryEnding {
  return reason === 'forced' ? { status: 'stopped', reason } : { status: 'abandoned', reason };
}

// Ownership (docs/architecture.md, Ownership and Adoption). A `running` run
// changes hands without changing status: its row keeps its id, its audit and
// its counters, and gets a new owner token (the fence), so every write of the
// previous owner matches nothing from then on. workflow_runs.owners lists
// every owner with how its tenure began and ended.

/** How an owner got the run: it started it, or adopted it from an owner that was lost or handed it off. */
export const OWNERSHIP_REASONS = ['start', 'owner_lost', 'handoff'] as const;
export type OwnershipReason = (typeof OWNERSHIP_REASONS)[number];

/**
 * How an owner's tenure ended: it wrote the run's end (`ended`), released it
 * for adoption on shutdown (`handoff`, owner_token cleared, the run stays
 * `running`), or was replaced without writing: adopted after its lock was
 * found free (`owner_lost`), or the run was ended for it by recovery or force
 * (`recovered`).
 */
export const OWNERSHIP_ENDINGS = ['ended', 'handoff', 'owner_lost', 'recovered'] as const;
export type OwnershipEnding = (typeof OWNERSHIP_ENDINGS)[number];

/**
 * The moves of ownership of a `running` run, and who makes each: the owner
 * releases its run (SIGTERM to `serve`, or to a foreground run while a
 * serving instance can adopt it); an adopter (a serving instance that defines
 * the workflow and has not opted out with `adopt: false`), holding the run's
 * lock, takes a run whose lock was free, released or not.
 */
export const OWNERSHIP_MOVES = [
  { move: 'release', reason: 'handoff', by: 'owner' },
  { move: 'adopt', reason: 'handoff', by: 'adopter' },
  { move: 'adopt', reason: 'owner_lost', by: 'adopter' },
] as const satisfies readonly { move: 'release' | 'adopt'; reason: OwnershipReason; by: 'owner' | 'adopter' }[];

/** One entry of workflow_runs.owners: one owner's tenure (JSON, snake_case as the audit view shows it). */
export interface OwnerRecord {
  instance: string;
  reason: OwnershipReason;
  since: string;
  until?: string;
  ended?: OwnershipEnding;
  /** The run's finished interactions (completed + failed) when this owner took it. */
  interactions_at_start: number;
  /** Adoptions in a row after an owner was lost without the run progressing, this one included. */
  no_progress: number;
  /** What the owner had in flight when it was lost: the item its careful mode marked, or its claimed ranges. */
  in_flight_at_loss?: string;
}

export const RUN_ACTIONS = ['run', 'force', 'resume'] as const;
export type RunAction = (typeof RUN_ACTIONS)[number];

/**
 * What a request is: stored on its run (workflow_runs.action) and written to
 * the audit log under the same name. Force comes first: a forced resume
 * (`force --run 12`) is a force (it needs the admin role, and a detached one
 * must still force when a serving instance starts it); the run it resumes is
 * on the row as resumes_run_id.
 */
export function runAction(request: { force: boolean; mode: RunMode }): RunAction {
  if (request.force) return 'force';
  return request.mode === 'single_run' ? 'resume' : 'run';
}
