import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';
import type { EndedReason, RunAction, RunStatus } from './run-states.ts';

// Table types of the engine's own tables (migrations/0001_engine.ts). Domain
// tables are typed by the workflows that own them.

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json<T = unknown> = ColumnType<T, string | null | undefined, string | null>;

export type RunMode = 'global_batch' | 'single_subject' | 'single_run';
/** An interaction row is written when its item finishes (completed, failed) or is left unfinished by its run (pending). */
export type InteractionStatus = 'pending' | 'completed' | 'failed';
export type AuditOutcome = 'accepted' | 'refused' | 'invalid' | 'event';

/** Named metric values: a snapshot of the domain's state. */
export type Metrics = Record<string, number>;
/** Pending subjects per step at a run's start. */
export type ExpectedWork = Record<string, number>;
export type StepProgress = { done: number; failed: number; running: number };
export type RunProgress = Record<string, StepProgress>;

export interface WorkflowsTable {
  id: number;
  name: string;
  description: Generated<string>;
  definition: Json;
  synced_at: Generated<Date>;
  /** Continuous workflows only: an operator switched it off (migrations/0004_continuous.ts). */
  paused: Generated<boolean>;
  paused_by: string | null;
  paused_at: Timestamp | null;
}

export interface WorkflowRunsTable {
  id: Generated<number>;
  workflow_id: number;
  mode: RunMode;
  subject_id: number | null;
  resumes_run_id: number | null;
  lock_key: number;
  status: RunStatus;
  action: RunAction;
  requested_by: string;
  source: string;
  owner_token: string | null;
  owner_instance: string | null;
  state_before: Json<Metrics | null>;
  expected_work: Json<ExpectedWork | null>;
  state_after: Json<Metrics | null>;
  delta: Json<Metrics | null>;
  progress: Json<RunProgress | null>;
  interactions_completed: Generated<number>;
  interactions_failed: Generated<number>;
  stop_requested_by: string | null;
  stop_requested_at: Timestamp | null;
  stopped_by: string | null;
  forced_by: string | null;
  forced_run_id: number | null;
  taken_over_by_run_id: number | null;
  ended_reason: EndedReason | null;
  error: string | null;
  created_at: Generated<Date>;
  started_at: Timestamp | null;
  heartbeat_at: Timestamp | null;
  ended_at: Timestamp | null;
  /** The channel a run reports to; null = the configured notify channel. */
  notify_channel: Generated<string | null>;
}

export interface InteractionsTable {
  id: Generated<number>;
  run_id: number;
  workflow_id: number;
  step: string;
  subject_id: number;
  status: InteractionStatus;
  parent_id: number | null;
  attempts: Generated<number>;
  input: Json | null;
  output: Json | null;
  error: string | null;
  claimed_at: Generated<Date>;
  finished_at: Timestamp | null;
}

export interface AuditLogTable {
  id: Generated<number>;
  at: Generated<Date>;
  actor: string;
  source: string;
  action: string;
  outcome: AuditOutcome;
  workflow_id: number | null;
  run_id: number | null;
  reason: string | null;
  details: Json<Record<string, unknown>>;
}

export interface WorkflowRunAuditView {
  id: number;
  workflow_id: number;
  mode: RunMode;
  status: RunStatus;
  created_at: Date;
  ended_at: Date | null;
  input: Record<string, unknown>;
  output: Record<string, unknown>;
}

export interface EngineTables {
  workflows: WorkflowsTable;
  workflow_runs: WorkflowRunsTable;
  interactions: InteractionsTable;
  audit_log: AuditLogTable;
  workflow_run_audit: WorkflowRunAuditView;
}

export type RunRow = Selectable<WorkflowRunsTable>;
export type NewRun = Insertable<WorkflowRunsTable>;
export type InteractionRow = Selectable<InteractionsTable>;
export type AuditRow = Selectable<AuditLogTable>;
export type NewAuditEntry = Insertable<AuditLogTable>;
