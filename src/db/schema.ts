import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';
import type { EndedReason, OwnerRecord, RunAction, RunStatus } from './run-states.ts';

// Table types of the tables the engine and its chat surfaces own
// (migrations/0001_engine.ts, 0003_chat.ts, 0004_continuous.ts,
// 0007_claim_ranges.ts). Domain tables are typed by the workflows that own
// them (src/workflows/postings/schema.ts).

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json<T = unknown> = ColumnType<T, string | null | undefined, string | null>;

export type RunMode = 'global_batch' | 'single_subject' | 'single_run';
/** An interaction row is written when its item finishes (completed, failed) or is left unfinished by its run (pending). */
export type InteractionStatus = 'pending' | 'completed' | 'failed';
export type AuditOutcome = 'accepted' | 'refused' | 'invalid' | 'event';

/** Named metric values: a snapshot of the domain's state. */
export type Metrics = Record<string, number>;
/** Subjects per step: pending now, or expected by a run. */
export type ExpectedWork = Record<string, number>;
/** `limit`: the adaptive concurrency's current value (concurrency: 'auto'), the same on every step of the run. */
export type StepProgress = { done: number; failed: number; running: number; limit?: number };
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
  /** The owner's handler calls at once, counted towards runConcurrency by joiners (migrations/0034_run_owner_slots.ts). */
  owner_slots: number | null;
  state_before: Json<Metrics | null>;
  /** The forecast per step: a subject pending at step k is expected at every later step (migrations/0020_run_forecast.ts). */
  expected_work: Json<ExpectedWork | null>;
  /** What each step had pending when the run started. */
  pending_work: Json<ExpectedWork | null>;
  /** The metrics in the order the workflow's metrics query declares them (jsonb does not keep it). */
  metric_names: ColumnType<string[] | null, string[] | null | undefined, string[] | null>;
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
  /** Every owner the run has had, in order (migrations/0021_run_adoption.ts). */
  owners: ColumnType<OwnerRecord[], string | undefined, string>;
  /** The item an owner in careful mode is running (after an adoption without progress). */
  in_flight: Json<{ step: string; subject: number } | null>;
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

/**
 * A run's claim on a range of one step's subjects (migrations/0007_claim_ranges.ts):
 * no two claims of one (workflow, step) overlap, so no subject is handed to two
 * runs at once. Deleted when its page is finished or its run ends.
 */
export interface InteractionClaimsTable {
  id: Generated<number>;
  run_id: number;
  workflow_id: number;
  step: string;
  /**
   * An int8range; the driver has no parser for ranges, so it reads as
   * PostgreSQL's text, e.g. '[1,11)'. The queries select lower() and upper().
   */
  subjects: string;
  claimed_at: Generated<Date>;
}

/** Which instance posts a run's message in a channel, and the message's ts once posted (migrations/0003_chat.ts). */
export interface RunMessagesTable {
  run_id: number;
  channel: string;
  ts: string | null;
  claimed_by: string;
  claimed_at: Generated<Date>;
}

/** Button clicks (and other actions) already acted on, by key (migrations/0003_chat.ts). */
export interface HandledActionsTable {
  key: string;
  actor: string;
  handled_at: Generated<Date>;
}

/** The latest tick of a workflow's schedule that was acted on (migrations/0030_schedules.ts). */
export interface WorkflowSchedulesTable {
  workflow_id: number;
  cron: string;
  timezone: string;
  last_tick: Timestamp;
  updated_at: Generated<Date>;
}

/** A force waiting for a second admin's approval (migrations/0031_force_requests.ts). */
export interface ForceRequestsTable {
  id: Generated<number>;
  workflow_id: number;
  /** The run as asked: mode, subject_id, resume_run_id. */
  request: Json<ForceRequestAsked>;
  /** The requester as the audit log names them. */
  requested_by: string;
  /** The requester's identity, compared with the decider's (the Slack user id, or the CLI's user@host). */
  requester: string;
  source: string;
  /** The chat channel it was asked in; null outside chat. */
  channel: string | null;
  requested_at: Generated<Date>;
  expires_at: Timestamp;
  status: Generated<ForceRequestStatus>;
  decided_by: string | null;
  decided_at: Timestamp | null;
  run_id: number | null;
  message_channel: string | null;
  message_ts: string | null;
  message_status: string | null;
}

export type ForceRequestStatus = 'pending' | 'approved' | 'rejected' | 'expired';

export interface ForceRequestAsked {
  mode: RunMode;
  subject_id: number | null;
  resume_run_id: number | null;
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
  interaction_claims: InteractionClaimsTable;
  audit_log: AuditLogTable;
  workflow_run_audit: WorkflowRunAuditView;
  run_messages: RunMessagesTable;
  handled_actions: HandledActionsTable;
  workflow_schedules: WorkflowSchedulesTable;
  force_requests: ForceRequestsTable;
}

export type RunRow = Selectable<WorkflowRunsTable>;
export type NewRun = Insertable<WorkflowRunsTable>;
export type InteractionRow = Selectable<InteractionsTable>;
export type AuditRow = Selectable<AuditLogTable>;
export type ForceRequestRow = Selectable<ForceRequestsTable>;
export type NewAuditEntry = Insertable<AuditLogTable>;
