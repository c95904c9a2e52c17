import type { Db } from '../db/connect.ts';
import { appendAudit, type AuditEntry } from '../db/queries/audit.ts';
import * as chat from '../db/queries/chat.ts';
import * as continuous from '../db/queries/continuous.ts';
import * as forceRequests from '../db/queries/force-requests.ts';
import { failedItems, type FailedItem } from '../db/queries/failures.ts';
import * as runs from '../db/queries/runs.ts';
import * as schedules from '../db/queries/schedules.ts';
import type { ScheduleState } from '../db/queries/schedules.ts';
import * as stats from '../db/queries/stats.ts';
import { recentBatchPace } from '../db/queries/throughput.ts';
import type { ExpectedWork, ForceRequestRow, RunRow } from '../db/schema.ts';
import type { ResolvedWorkflow } from '../workflows/define.ts';
import { PACE_RUNS, throughputFrom, type Throughput } from './estimates.ts';
import { expectedWork } from './snapshot.ts';

export type { FailedItem } from '../db/queries/failures.ts';

export type { PauseState } from '../db/queries/continuous.ts';
export type { ObservabilityStats } from '../db/queries/stats.ts';

/**
 * The statements the command layer needs beside starting and stopping runs
 * (Engine.startRun, queueRun, requestStop): run records, the audit log, the
 * pause switches, the chat surfaces' own rows and the observability figures.
 * Commands reach the database through here and the Engine only, never
 * src/db/queries directly (docs/architecture.md, "Layers").
 */
export class Store {
  private readonly db: Db;
  private readonly instanceId: string;

  constructor(db: Db, instanceId: string) {
    this.db = db;
    this.instanceId = instanceId;
  }

  // ── Runs ──

  run(runId: number): Promise<RunRow | undefined> {
    return runs.getRun(this.db, runId);
  }

  /** Queued and running runs, oldest first. */
  runsInProgress(): Promise<RunRow[]> {
    return runs.activeRuns(this.db);
  }

  runHistory(options: { workflowId?: number; limit: number }): Promise<RunRow[]> {
    return runs.runHistory(this.db, options);
  }

  /** A run's input and output as the workflow_run_audit view shows them. */
  async runAuditRecord(runId: number): Promise<{ id: number; input: unknown; output: unknown } | undefined> {
    return this.db.selectFrom('workflow_run_audit').select(['id', 'input', 'output']).where('id', '=', runId).executeTakeFirst();
  }

  /** A workflow's pace over its latest completed batches; null before it has any. */
  async pace(workflowId: number): Promise<Throughput | null> {
    return throughputFrom(await recentBatchPace(this.db, workflowId, PACE_RUNS));
  }

  /** A run's first failed items, with their errors. */
  failedItems(runId: number, limit: number): Promise<FailedItem[]> {
    return failedItems(this.db, runId, limit);
  }

  /** What a workflow would do now: its pending subjects per step. */
  pendingWork(workflow: ResolvedWorkflow): Promise<ExpectedWork> {
    return expectedWork(this.db, workflow, null);
  }

  // ── Audit log ──

  /**
   * Why a serving instance refused a queued run (`run --detach`): the
   * dispatcher's audit entry for it, found through audit_log_run.
   */
  async queuedRefusal(runId: number): Promise<{ refusal: string; nextAllowedAt: string | null } | undefined> {
    const row = await this.db
      .selectFrom('audit_log')
      .select('details')
      .where('run_id', '=', runId)
      .where('outcome', '=', 'refused')
      .orderBy('id', 'desc')
      .executeTakeFirst();
    const details = row?.details as { refusal?: unknown; next_allowed_at?: unknown } | undefined;
    if (!details || typeof details.refusal !== 'string') return undefined;
    return { refusal: details.refusal, nextAllowedAt: typeof details.next_allowed_at === 'string' ? details.next_allowed_at : null };
  }

  audit(entry: AuditEntry): Promise<number> {
    return appendAudit(this.db, entry);
  }

  // ── Schedules ──

  /** The schedules' state: the latest tick acted on, per workflow. */
  scheduleStates(): Promise<Map<number, ScheduleState>> {
    return schedules.scheduleStates(this.db);
  }

  // ── Pause switches of continuous workflows ──

  pauseStates(): Promise<Map<number, continuous.PauseState>> {
    return continuous.pauseStates(this.db);
  }

  /** The state before the change; undefined when the workflow is not registered. */
  setPaused(workflowId: number, paused: boolean, by: string): Promise<continuous.PauseState | undefined> {
    return continuous.setPaused(this.db, workflowId, paused, by);
  }

  /** Tells the serving leader that a workflow has work, so it looks at once. */
  announceWork(workflowId: number): Promise<void> {
    return continuous.notifyWork(this.db, workflowId);
  }

  // ── Force requests (two-person approval) ──

  fileForceRequest(entry: Parameters<typeof forceRequests.fileForceRequest>[1]): Promise<ForceRequestRow> {
    return forceRequests.fileForceRequest(this.db, entry);
  }

  forceRequest(id: number): Promise<ForceRequestRow | undefined> {
    return forceRequests.forceRequest(this.db, id);
  }

  /** The request as decided, or undefined when it was not pending (decided, expired) or the decider may not approve it. */
  decideForceRequest(id: number, decision: 'approved' | 'rejected', decider: { id: string; identity: string }): Promise<ForceRequestRow | undefined> {
    return forceRequests.decideForceRequest(this.db, id, decision, decider);
  }

  /** Pending requests past their time, now expired; each to one caller only. */
  expireForceRequests(id?: number): Promise<ForceRequestRow[]> {
    return forceRequests.expireForceRequests(this.db, id);
  }

  setForceRequestRun(id: number, runId: number): Promise<void> {
    return forceRequests.setForceRequestRun(this.db, id, runId);
  }

  claimForceRequestMessages(notifyChannel: string | null, limit = 20): Promise<ForceRequestRow[]> {
    return forceRequests.claimForceRequestMessages(this.db, notifyChannel, limit);
  }

  setForceRequestMessageTs(id: number, ts: string): Promise<void> {
    return forceRequests.setForceRequestMessageTs(this.db, id, ts);
  }

  // ── Chat surfaces ──

  /** True for the first caller with this key only (a button click acted on once). */
  claimAction(key: string, actor: string): Promise<boolean> {
    return chat.claimAction(this.db, key, actor);
  }

  /** For exactly one live instance: the one that posts (ts null) or keeps current (its ts) this run's message in this channel. */
  claimRunMessage(runId: number, channel: string): Promise<{ ts: string | null } | undefined> {
    return chat.claimRunMessage(this.db, runId, channel, this.instanceId);
  }

  setRunMessageTs(runId: number, channel: string, ts: string): Promise<void> {
    return chat.setRunMessageTs(this.db, runId, channel, ts);
  }

  // ── Observability ──

  ping(): Promise<void> {
    return stats.ping(this.db);
  }

  observabilityStats(endedSince: Date | null): Promise<stats.ObservabilityStats> {
    return stats.observabilityStats(this.db, endedSince);
  }
}
