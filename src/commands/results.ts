import type { ExpectedWork, Metrics, RunProgress, RunRow } from '../db/schema.ts';
import type { ActiveRun, RunSummary } from '../engine/engine.ts';
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
  expectedWork: ExpectedWork | null;
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

/** `unavailable`: the database could not be reached (an outage); nothing was done. */
export type RefusalReason = 'duplicate' | 'rate_limited' | 'not_resumable' | 'busy' | 'no_server' | 'permission' | 'not_continuous' | 'unavailable';

export type CommandResult =
  | { kind: 'run_started'; run: ActiveRun; view: RunView }
  | { kind: 'run_queued'; view: RunView }
  | { kind: 'refused'; reason: RefusalReason; message: string; workflowId?: number; running?: RunView; nextAllowedAt?: string }
  | { kind: 'invalid'; message: string; usage: string }
  | { kind: 'not_found'; message: string }
  | { kind: 'runs'; runs: RunView[] }
  | { kind: 'run'; run: RunView; audit: { input: unknown; output: unknown } | null }
  | { kind: 'history'; runs: RunView[] }
  | { kind: 'workflows'; workflows: WorkflowView[] }
  | { kind: 'stop'; outcome: 'stopped' | 'stop_requested' | 'recovered' | 'not_running'; run: RunView; message: string }
  | { kind: 'help'; text: string }
  | { kind: 'health'; report: HealthReport }
  | { kind: 'done'; message: string };

export type RunFinished = { kind: 'run_finished'; summary: RunSummary; view: RunView };

/** Exit codes: 0 done, 1 run failed, 2 bad usage, 3 refused. */
export function exitCode(result: CommandResult | RunFinished): number {
  switch (result.kind) {
    case 'invalid':
    case 'not_found':
      return 2;
    case 'refused':
      return 3;
    case 'stop':
      return result.outcome === 'not_running' ? 3 : 0;
    case 'run_finished':
      return result.summary.outcome === 'completed' || result.summary.outcome === 'stopped' || result.summary.outcome === 'handed_off' ? 0 : 1;
    default:
      return 0;
  }
}

export function toRunView(run: RunRow, workflowName: string | null): RunView {
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
    expectedWork: run.expected_work,
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
