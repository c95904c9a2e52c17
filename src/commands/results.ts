import type { Grant, Role } from '../access-grants.ts';
import type { ExpectedWork, Metrics, RunProgress, RunRow } from '../db/schema.ts';
import type { ActiveRun, RunSummary } from '../engine/engine.ts';
import type { Throughput } from '../engine/estimates.ts';
import type { HealthReport } from '../engine/monitor.ts';

// What a command produced, independent of any surface: the CLI renders it as
// text or JSON, the chat surfaces as messages.

/** A run as every surface shows it. */
export interface RunView {
  id: number;
  workflowId: number;
  workflowName: string | null;
  mode: RunRow['mode'];
  subjectId: number | null;
  resumesRunId: number | null;
  status: RunRow['status'];
  action: RunRow['action'];
  requestedBy: string;
  source: string;
  startedAt: string | null;
  endedAt: string | null;
  durationSeconds: number | null;
  /** The workflow's steps in their declared order (the keys of the run's counters otherwise). */
  steps: string[];
  /** The forecast per step: a subject pending at step k is expected at every later step. */
  expectedWork: ExpectedWork | null;
  /** What each step had pending when the run started. */
  pendingAtStart: ExpectedWork | null;
  /** The metrics in the order the workflow declares them. */
  metricNames: string[];
  progress: RunProgress | null;
  interactionsCompleted: number;
  interactionsFailed: number;
  stateBefore: Metrics | null;
  stateAfter: Metrics | null;
  delta: Metrics | null;
  stopRequestedBy: string | null;
  stoppedBy: string | null;
  forcedBy: string | null;
  forcedRunId: number | null;
  takenOverByRunId: number | null;
  endedReason: string | null;
  error: string | null;
  /** Past runs' pace, for the time left before the run has a pace of its own (live runs only). */
  history?: Throughput | null;
  /** Each time another instance took the run up (docs/architecture.md, Adoption): when, by whom, and why (`owner_lost`, `handoff`). */
  adoptions: { at: string; instance: string; reason: string }[];
  /** Released on shutdown and not taken up yet (no owner for the moment). */
  awaitingOwner: boolean;
}

export interface WorkflowView {
  id: number;
  name: string;
  description: string;
  subject: string;
  steps: string[];
  pending: ExpectedWork;
  rateLimitSeconds: number;
  concurrency: number | 'auto';
  running: number[];
  /** Started by serving instances when new work arrives (src/engine/continuous.ts). */
  continuous?: boolean;
  /** A continuous workflow an operator paused: `by` and `at` say who and when. */
  paused?: { by: string | null; at: string | null } | null;
}

/** `plan <workflow>`: what a global_batch would do now, without starting it. */
export interface PlanView {
  workflowId: number;
  workflowName: string;
  steps: string[];
  /** Pending per step now. */
  pending: ExpectedWork;
  /** What a run would expect per step (a subject pending at step k reaches every later step). */
  forecast: ExpectedWork;
  /** Interactions in all: the forecast summed. */
  interactions: number;
  /** From past runs' per-step pace; null when the workflow has no completed batch yet. */
  estimate: { seconds: number; fromRuns: number } | null;
  /** Whether a run would start now, or why not. */
  verdict:
    | { start: true }
    | { start: false; reason: 'duplicate'; running: RunView }
    | { start: false; reason: 'rate_limited'; lastStartAt: string; nextAllowedAt: string }
    | { start: false; reason: 'paused'; by: string | null };
}

/** `schedules`: a scheduled workflow and its next start. */
export interface ScheduleView {
  workflowId: number;
  workflowName: string;
  cron: string;
  timezone: string;
  /** The next tick the scheduler acts on; null if the cron never fires again. */
  next: string | null;
  /** That tick has passed (no instance served): the leader starts its catch-up run at its next look. */
  overdue: boolean;
  /** The latest tick acted on; null before a serving instance first saw the schedule. */
  lastTick: string | null;
  paused: { by: string | null; at: string | null } | null;
}

/** `whoami`: who the surface says you are, your role, and the grants that give it. */
export interface WhoamiView {
  actor: string;
  source: string;
  /** The highest role held; null for none; 'unrestricted' for the local CLI, which acts with the database's own credentials. */
  role: Role | null | 'unrestricted';
  grants: Grant[] | null;
}

/** A force waiting for a second admin (two-person approval), as every surface shows it. */
export interface ForceRequestView {
  id: number;
  workflowId: number;
  workflowName: string | null;
  mode: RunRow['mode'];
  subjectId: number | null;
  resumeRunId: number | null;
  requestedBy: string;
  requestedAt: string;
  expiresAt: string;
  status: 'pending' | 'approved' | 'rejected' | 'expired';
  decidedBy: string | null;
  decidedAt: string | null;
  /** The run the approved force started. */
  runId: number | null;
}

/** `unavailable`: the database could not be reached (an outage); nothing was done. */
export type RefusalReason = 'duplicate' | 'rate_limited' | 'not_resumable' | 'busy' | 'no_server' | 'permission' | 'not_continuous' | 'unavailable';

export type CommandResult =
  | { kind: 'run_started'; run: ActiveRun; view: RunView }
  | { kind: 'run_queued'; view: RunView }
  | { kind: 'refused'; reason: RefusalReason; message: string; workflowId?: number; running?: RunView; nextAllowedAt?: string; runId?: number }
  | { kind: 'invalid'; message: string; usage: string }
  | { kind: 'not_found'; message: string }
  | { kind: 'runs'; runs: RunView[] }
  | { kind: 'run'; run: RunView; audit: { input: unknown; output: unknown } | null }
  | { kind: 'history'; runs: RunView[] }
  | { kind: 'workflows'; workflows: WorkflowView[] }
  | { kind: 'stop'; outcome: 'stopped' | 'stop_requested' | 'recovered' | 'not_running'; run: RunView; message: string }
  | { kind: 'help'; text: string }
  /**
   * `limited`: no pass was made, one having started on the database within
   * the interval (`message` says when, and when the next is allowed); the
   * report is the latest findings.
   */
  | { kind: 'health'; report: HealthReport; limited?: { message: string; lastStartAt: string; nextAllowedAt: string } }
  | { kind: 'plan'; plan: PlanView }
  | { kind: 'schedules'; schedules: ScheduleView[] }
  | { kind: 'whoami'; whoami: WhoamiView }
  /**
   * A force request: `filed` (approval required; nothing forced yet),
   * `rejected` (by this decider), `not_pending` (already decided or expired:
   * nothing done). An approved one answers with the run it started.
   */
  | { kind: 'force_request'; outcome: 'filed' | 'rejected' | 'not_pending'; request: ForceRequestView; message: string }
  | { kind: 'done'; message: string };

/** `interrupted`: this process stopped the run itself (Ctrl-C, SIGTERM), rather than someone else. */
export type RunFinished = { kind: 'run_finished'; summary: RunSummary; view: RunView; interrupted?: 'SIGINT' | 'SIGTERM' };

/**
 * Exit codes (README, "Exit codes"): 0 done, 1 run failed, 2 bad usage, 3
 * refused (a `health` pass as well), 4 the run was stopped or forced out by someone else; a foreground
 * run stopped here ends as a signal would, 130 for Ctrl-C and 143 for SIGTERM.
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, refused: 3, stoppedByOther: 4, interrupted: 130, terminated: 143 } as const;

export function exitCode(result: CommandResult | RunFinished): number {
  switch (result.kind) {
    case 'invalid':
    case 'not_found':
      return 2;
    case 'refused':
      return 3;
    // Filed is not forced: a script must not go on as if the force had happened.
    case 'force_request':
      return result.outcome === 'rejected' ? 0 : 3;
    case 'stop':
      return result.outcome === 'not_running' ? 3 : 0;
    case 'health':
      return result.limited ? 3 : 0;
    case 'run_finished':
      switch (result.summary.outcome) {
        case 'completed':
          return EXIT.ok;
        case 'stopped':
          if (result.interrupted === 'SIGINT') return EXIT.interrupted;
          if (result.interrupted === 'SIGTERM') return EXIT.terminated;
          return EXIT.stoppedByOther;
        case 'taken_over':
          return EXIT.stoppedByOther;
        case 'handed_off':
          return EXIT.ok;
        default:
          return EXIT.failed;
      }
    default:
      return 0;
  }
}

/**
 * A run as every surface shows it. `steps` is the workflow's declared order
 * (from its definition); jsonb keeps no key order, so without it the steps
 * come in the stored counters' order.
 */
export function toRunView(run: RunRow, workflowName: string | null, steps: readonly string[] = []): RunView {
  const counted = [...Object.keys(run.expected_work ?? {}), ...Object.keys(run.progress ?? {})];
  const stored = [...Object.keys(run.state_before ?? {}), ...Object.keys(run.state_after ?? {})];
  const started = run.started_at ? new Date(run.started_at) : null;
  const ended = run.ended_at ? new Date(run.ended_at) : null;
  return {
    id: run.id,
    workflowId: run.workflow_id,
    workflowName,
    mode: run.mode,
    subjectId: run.subject_id,
    resumesRunId: run.resumes_run_id,
    status: run.status,
    action: run.action,
    requestedBy: run.requested_by,
    source: run.source,
    startedAt: started?.toISOString() ?? null,
    endedAt: ended?.toISOString() ?? null,
    durationSeconds: started ? Math.round(((ended ?? new Date()).getTime() - started.getTime()) / 10) / 100 : null,
    steps: inOrder(steps, counted),
    expectedWork: run.expected_work,
    pendingAtStart: run.pending_work ?? null,
    metricNames: inOrder(run.metric_names ?? [], stored),
    progress: run.progress,
    interactionsCompleted: run.interactions_completed,
    interactionsFailed: run.interactions_failed,
    stateBefore: run.state_before,
    stateAfter: run.state_after,
    delta: run.delta,
    stopRequestedBy: run.stop_requested_by,
    stoppedBy: run.stopped_by,
    forcedBy: run.forced_by,
    forcedRunId: run.forced_run_id,
    takenOverByRunId: run.taken_over_by_run_id,
    endedReason: run.ended_reason,
    error: run.error,
    adoptions: (run.owners ?? []).slice(1).map((o) => ({ at: o.since, instance: o.instance, reason: o.reason })),
    awaitingOwner: run.status === 'running' && run.owner_token === null,
  };
}

/** The declared names first, in their order, then any other name seen, once each. */
export function inOrder(declared: readonly string[], seen: readonly string[]): string[] {
  return [...new Set([...declared, ...seen])];
}
