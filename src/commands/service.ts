import { DATABASE_BUSY, DATABASE_UNAVAILABLE, isBusyError, isConnectionError } from '../db/errors.ts';
import { runAction, type RunAction } from '../db/run-states.ts';
import type { ForceRequestRow, RunRow } from '../db/schema.ts';
import type { Engine, QueueRefusal, RunRequest } from '../engine/engine.ts';
import { snake, type Retention } from '../engine/retention.ts';
import type { PauseState } from '../engine/store.ts';
import type { ResolvedWorkflow } from '../workflows/define.ts';
import { forecastWork } from '../engine/snapshot.ts';
import { secondsFor } from '../engine/estimates.ts';
import type { Grant } from '../access-grants.ts';
import { highestRole, requiredRole, type Role } from './access.ts';
import { parseCommand, usage, type Command, type Surface } from './grammar.ts';
import { HEALTH_CHECK_INTERVAL_MS, type Health } from './health.ts';
import { nextTick } from '../lib/cron.ts';
import { relativeTime, utcText } from '../lib/relative-time.ts';
import type { CommandResult, ForceRequestView, PlanView, RefusalReason, RunView, ScheduleView } from './results.ts';
import type { RunViews } from './run-views.ts';

/** Who asked, and through which surface: every audit entry names both. */
export interface Actor {
  id: string;
  /**
   * The person behind `id`, kept apart from the name it shows (the Slack user
   * id): two-person approval compares it. Absent: `id` is the identity (the
   * CLI's user@host).
   */
  userId?: string;
  source: string;
  /** The roles the surface resolved for this user; absent = unrestricted (the local CLI). */
  roles?: ReadonlySet<Role>;
  /** The grants of WORKFLOW_ACCESS that gave those roles (Slack), for `whoami`. */
  grants?: readonly Grant[];
  /**
   * The roles this user holds over a run requested in `runChannel` (null: not
   * from a chat channel). A grant limited to channels acts only on runs
   * requested in them. Absent = `roles` over every run.
   */
  rolesOver?(runChannel: string | null): ReadonlySet<Role>;
  /** The chat channel the request came from: its run reports there. */
  channel?: string;
}

/** What a button asks for. Buttons name the run they act on, so a stale one cannot hit a newer run. */
export type ButtonAction =
  | { type: 'stop'; runId: number }
  /** Force restart over a running run (the duplicate refusal's button). */
  | { type: 'force'; runId: number }
  /** Force a start the rate limit refused (no run to take over). */
  | { type: 'force_start'; workflowId: number }
  /** A second admin's decision on a force request (two-person approval). */
  | { type: 'force_approve'; requestId: number }
  | { type: 'force_reject'; requestId: number };

export interface WorkflowLookup {
  all(): ResolvedWorkflow[];
  find(idOrName: string | number): ResolvedWorkflow | undefined;
}

type RunCommand = Extract<Command, { verb: 'run' }>;

/**
 * Executes parsed commands against the engine and writes the audit log:
 * every state-changing request, accepted or refused, and every invalid input.
 * Surfaces (CLI, console, Slack) call this and only render what it returns.
 */
export class CommandService {
  private readonly engine: Engine;
  private readonly workflows: WorkflowLookup;
  private readonly views: RunViews;
  private readonly health: Health;
  private readonly retention: Retention | undefined;

  constructor(engine: Engine, workflows: WorkflowLookup, parts: { views: RunViews; health: Health; retention?: Retention }) {
    this.engine = engine;
    this.workflows = workflows;
    this.views = parts.views;
    this.health = parts.health;
    this.retention = parts.retention;
  }

  /**
   * Text or argv in, result out. `json` is the CLI's --json flag. With
   * `once`, a key naming this delivery (a chat surface's hash of the signed
   * request): the same delivery again is acted on no second time.
   */
  async handle(
    input: string | string[],
    actor: Actor,
    surface: Surface,
    options: { once?: string } = {},
  ): Promise<{ result: CommandResult; json: boolean; command?: Command }> {
    try {
      if (options.once !== undefined && !(await this.engine.store.claimAction(options.once, actor.id))) {
        const text = Array.isArray(input) ? input.join(' ') : input;
        const message = 'that command was delivered again and has already been handled; nothing more was done';
        await this.audit(actor, 'command', 'refused', { reason: message, details: { refusal: 'delivered_again', input: text.slice(0, 200) } });
        return { result: { kind: 'done', message }, json: false };
      }
      return await this.handleParsed(input, actor, surface);
    } catch (error) {
      if (isBusyError(error)) return { result: busy(), json: false };
      if (!isConnectionError(error)) throw error;
      return { result: unavailable(error), json: false };
    }
  }

  private async handleParsed(input: string | string[], actor: Actor, surface: Surface): Promise<{ result: CommandResult; json: boolean; command?: Command }> {
    const parsed = parseCommand(input, { surface });
    if (!parsed.ok) {
      const text = Array.isArray(input) ? input.join(' ') : input;
      await this.audit(actor, 'parse', 'invalid', { reason: parsed.error, details: { input: text.slice(0, 200) } });
      return { result: { kind: 'invalid', message: parsed.error, usage: parsed.usage }, json: false };
    }
    return { result: await this.execute(parsed.command, actor, surface), json: parsed.json, command: parsed.command };
  }

  async execute(command: Command, actor: Actor, surface: Surface = 'chat'): Promise<CommandResult> {
    // Anyone may ask who they are, a user with no role above all.
    if (command.verb === 'whoami') return this.whoami(actor);
    const needed = requiredRole(command);
    if (actor.roles && !actor.roles.has(needed)) return this.forbidden(command, needed, actor);
    switch (command.verb) {
      case 'run':
        return this.run(command, actor, surface);
      case 'force-decision':
        return this.decideForce(command.requestId, command.decision, actor, surface);
      case 'stop':
        return this.stop(command.runId, actor);
      case 'list': {
        await this.engine.recoverAbandoned();
        return { kind: 'runs', runs: await this.views.inProgress() };
      }
      case 'status': {
        await this.engine.recoverAbandoned();
        const run = await this.engine.store.run(command.runId);
        if (!run) return this.notFound(command.runId, actor, 'status');
        const record = await this.engine.store.runAuditRecord(run.id);
        return { kind: 'run', run: this.view(run), audit: record ? { input: record.input, output: record.output } : null };
      }
      case 'history': {
        // A dead run is not shown as running: ended here unless a serving instance adopts it.
        await this.engine.recoverAbandoned();
        let workflowId: number | undefined;
        if (command.workflow !== undefined) {
          const workflow = this.workflows.find(command.workflow);
          if (!workflow) return this.unknownWorkflow(command.workflow, actor, 'history', surface);
          workflowId = workflow.id;
        }
        const rows = await this.engine.store.runHistory({ workflowId, limit: command.limit });
        return { kind: 'history', runs: rows.map((r) => this.view(r)) };
      }
      case 'workflows': {
        const active = await this.engine.store.runsInProgress();
        const pauses = await this.engine.store.pauseStates();
        const views = [];
        for (const w of this.workflows.all()) {
          views.push({
            id: w.id,
            name: w.name,
            description: w.description,
            subject: w.subject,
            steps: w.steps.map((s) => s.name),
            pending: await this.engine.store.pendingWork(w),
            rateLimitSeconds: w.rateLimitSeconds,
            concurrency: w.concurrency,
            running: active.filter((r) => r.workflow_id === w.id).map((r) => r.id),
            continuous: w.continuous !== undefined,
            paused: pausedView(pauses.get(w.id)),
          });
        }
        return { kind: 'workflows', workflows: views };
      }
      case 'prune':
        return this.prune(command.olderThanDays, command.dryRun, actor);
      case 'health':
        return this.checkHealth(actor);
      case 'pause':
      case 'resume':
        return this.setPaused(command.workflow, command.verb === 'pause', actor, surface);
      case 'schedules':
        return { kind: 'schedules', schedules: await this.schedules() };
      case 'plan':
        return this.plan(command.workflow, actor, surface);
      case 'help':
        return { kind: 'help', text: usage(command.topic, surface) };
      default:
        return { kind: 'invalid', message: `${command.verb} is only available in the CLI`, usage: usage(undefined, surface) };
    }
  }

  /** `approved`: the force request a second admin just approved, which this run carries out. */
  private async run(command: RunCommand, actor: Actor, surface: Surface, approved?: ForceRequestRow): Promise<CommandResult> {
    const action = runAction(command);
    let workflow: ResolvedWorkflow | undefined;
    if (command.workflow !== undefined) {
      workflow = this.workflows.find(command.workflow);
      if (!workflow) return this.unknownWorkflow(command.workflow, actor, action, surface);
    }
    if (command.mode === 'single_run') {
      const resumed = await this.engine.store.run(command.runId!);
      if (!resumed) return this.notFound(command.runId!, actor, action, workflow?.id);
      const elsewhere = await this.outsideGrant(resumed, requiredRole(command), action, actor);
      if (elsewhere) return elsewhere;
      workflow ??= this.engine.workflow(resumed.workflow_id);
      if (!workflow) return this.unknownWorkflow(String(resumed.workflow_id), actor, action, surface);
    }
    if (command.force && actor.rolesOver) {
      // A force takes over the workflow's running run, wherever it was requested.
      const running = (await this.engine.store.runsInProgress()).find((r) => r.workflow_id === workflow!.id && r.status === 'running');
      const elsewhere = running && (await this.outsideGrant(running, 'admin', action, actor));
      if (elsewhere) return elsewhere;
    }
    const details: Record<string, unknown> = {
      mode: command.mode,
      subject_id: command.subjectId ?? null,
      resume_run_id: command.runId ?? null,
      force: command.force,
      ...(approved ? { force_request: approved.id, requested_by: approved.requested_by, approved_by: actor.id } : {}),
    };
    if (command.force && workflow!.forceApproval && !approved) return this.fileForceRequest(command, workflow!, actor, surface, details);
    const request: RunRequest = {
      workflow: workflow!,
      mode: command.mode,
      subjectId: command.subjectId,
      resumeRunId: command.runId,
      force: command.force,
      requestedBy: actor.id,
      source: actor.source,
      // An approved force reports where it was asked for.
      notifyChannel: approved ? (approved.channel ?? actor.channel) : actor.channel,
    };

    if (command.detach) return this.detach(request, actor, action, details);

    const outcome = await this.engine.startRun(request);
    if (!outcome.started) return this.refused(outcome.refusal, actor, action, workflow!.id, details);
    await this.audit(actor, action, 'accepted', {
      workflowId: workflow!.id,
      runId: outcome.run.id,
      details: { ...details, forced_run_id: outcome.run.row.forced_run_id },
    });
    return { kind: 'run_started', run: outcome.run, view: this.view(outcome.run.row) };
  }

  /**
   * A force of a workflow that requires approval: filed, audited, and
   * answered with how a second admin approves it. Nothing is forced. The
   * requester's access over the run it would take over was checked already.
   */
  private async fileForceRequest(
    command: RunCommand,
    workflow: ResolvedWorkflow,
    actor: Actor,
    surface: Surface,
    details: Record<string, unknown>,
  ): Promise<CommandResult> {
    const row = await this.engine.store.fileForceRequest({
      workflowId: workflow.id,
      request: { mode: command.mode, subject_id: command.subjectId ?? null, resume_run_id: command.runId ?? null },
      requestedBy: actor.id,
      requester: identity(actor),
      source: actor.source,
      channel: actor.channel ?? null,
      expiresInSeconds: workflow.forceApproval!.expiresAfterSeconds,
    });
    const view = this.forceView(row);
    await this.audit(actor, 'force_request', 'accepted', {
      workflowId: workflow.id,
      details: { ...details, force_request: row.id, expires_at: view.expiresAt },
    });
    const prefix = surface === 'chat' ? '/workflow' : 'workflow';
    const message = `approval required: request #${row.id}; another admin approves in Slack or with \`${prefix} force --approve ${row.id}\` before ${view.expiresAt} (\`${prefix} force --reject ${row.id}\` withdraws it)`;
    return { kind: 'force_request', outcome: 'filed', request: view, message };
  }

  /**
   * A second admin's decision on a force request. The requester cannot
   * approve their own; an approval carries the force out through the same
   * path as a typed force, with the approver's access checked now (their
   * admin role, over the run it takes over) and the requester and approver
   * both in its audit entry. Expiry is checked here as well as by the sweep.
   */
  private async decideForce(requestId: number, decision: 'approve' | 'reject', actor: Actor, surface: Surface): Promise<CommandResult> {
    const action = decision === 'approve' ? 'force_approve' : 'force_reject';
    await this.expireForceRequests(requestId);
    const row = await this.engine.store.forceRequest(requestId);
    if (!row) {
      const message = `force request ${requestId} does not exist`;
      await this.audit(actor, action, 'invalid', { reason: message, details: { force_request: requestId } });
      return { kind: 'not_found', message };
    }
    if (row.status !== 'pending') return this.notPending(row, actor, action);
    const entry = { workflowId: row.workflow_id, details: { force_request: row.id, requested_by: row.requested_by } };
    if (decision === 'approve' && row.requester === identity(actor)) {
      const message = `you filed force request #${row.id}: another admin must approve it (you may reject it to withdraw it)`;
      await this.audit(actor, action, 'refused', { ...entry, reason: message, details: { ...entry.details, refusal: 'own_request' } });
      return { kind: 'refused', reason: 'permission', message, workflowId: row.workflow_id };
    }
    const workflow = this.engine.workflow(row.workflow_id);
    if (decision === 'approve') {
      if (!workflow) return this.unknownWorkflow(String(row.workflow_id), actor, action, surface);
      // Before deciding: an approver refused here leaves the request to the admins it is granted to.
      if (actor.rolesOver) {
        const running = (await this.engine.store.runsInProgress()).find((r) => r.workflow_id === row.workflow_id && r.status === 'running');
        const elsewhere = running && (await this.outsideGrant(running, 'admin', action, actor));
        if (elsewhere) return elsewhere;
      }
    }
    const decided = await this.engine.store.decideForceRequest(row.id, decision === 'approve' ? 'approved' : 'rejected', {
      id: actor.id,
      identity: identity(actor),
    });
    if (!decided) {
      await this.expireForceRequests(row.id);
      return this.notPending((await this.engine.store.forceRequest(row.id)) ?? row, actor, action);
    }
    await this.audit(actor, action, 'accepted', entry);
    if (decision === 'reject') {
      return { kind: 'force_request', outcome: 'rejected', request: this.forceView(decided), message: `force request #${row.id} rejected; nothing was forced` };
    }
    const asked = decided.request;
    const command: RunCommand = {
      verb: 'run',
      workflow: String(decided.workflow_id),
      mode: asked.mode,
      ...(asked.subject_id !== null && { subjectId: asked.subject_id }),
      ...(asked.resume_run_id !== null && { runId: asked.resume_run_id }),
      force: true,
      detach: false,
    };
    const result = await this.run(command, actor, surface, decided);
    if (result.kind === 'run_started') await this.engine.store.setForceRequestRun(decided.id, result.view.id);
    return result;
  }

  /** A decision on a request no longer pending: nothing done, audited, and what became of it. */
  private async notPending(row: ForceRequestRow, actor: Actor, action: string): Promise<CommandResult> {
    const view = this.forceView(row);
    const how = view.status === 'expired' ? `expired at ${view.expiresAt}` : `${view.status} by ${view.decidedBy ?? 'someone'}`;
    const message = `force request #${row.id} was already ${how}${view.runId ? ` (run #${view.runId})` : ''}; nothing more was done`;
    await this.audit(actor, action, 'refused', {
      workflowId: row.workflow_id,
      runId: row.run_id,
      reason: message,
      details: { force_request: row.id, refusal: 'not_pending', status: row.status },
    });
    return { kind: 'force_request', outcome: 'not_pending', request: view, message };
  }

  /**
   * Marks pending force requests past their time expired (all, or one) and
   * audits each once, whichever instance or request finds it: called when a
   * request is decided and by the serving instances' sweep.
   */
  async expireForceRequests(requestId?: number): Promise<ForceRequestView[]> {
    const expired = await this.engine.store.expireForceRequests(requestId);
    for (const row of expired) {
      await this.engine.store.audit({
        actor: 'force-approval',
        source: 'system',
        action: 'force_expire',
        outcome: 'event',
        workflowId: row.workflow_id,
        reason: `force request #${row.id} by ${row.requested_by} expired unapproved; nothing was forced`,
        details: { force_request: row.id, requested_by: row.requested_by, expires_at: new Date(row.expires_at).toISOString() },
      });
    }
    return expired.map((row) => this.forceView(row));
  }

  /**
   * Force requests whose chat message is behind their status, each handed to
   * this caller alone: to post (ts null) in its channel or `notifyChannel`,
   * or to update to what it shows now.
   */
  async forceRequestMessages(notifyChannel: string | undefined): Promise<{ request: ForceRequestView; channel: string; ts: string | null }[]> {
    const rows = await this.engine.store.claimForceRequestMessages(notifyChannel ?? null);
    return rows.map((row) => ({ request: this.forceView(row), channel: row.message_channel!, ts: row.message_ts }));
  }

  setForceRequestMessageTs(requestId: number, ts: string): Promise<void> {
    return this.engine.store.setForceRequestMessageTs(requestId, ts);
  }

  forceView(row: ForceRequestRow): ForceRequestView {
    const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString());
    return {
      id: row.id,
      workflowId: row.workflow_id,
      workflowName: this.engine.workflow(row.workflow_id)?.name ?? null,
      mode: row.request.mode,
      subjectId: row.request.subject_id,
      resumeRunId: row.request.resume_run_id,
      requestedBy: row.requested_by,
      requestedAt: iso(row.requested_at)!,
      expiresAt: iso(row.expires_at)!,
      status: row.status,
      decidedBy: row.decided_by,
      decidedAt: iso(row.decided_at),
      runId: row.run_id,
    };
  }

  /** `run --detach`: the engine queues it for a serving instance, or says at once why not. */
  private async detach(request: RunRequest, actor: Actor, action: RunAction, details: Record<string, unknown>): Promise<CommandResult> {
    const { workflow } = request;
    const outcome = await this.engine.queueRun(request);
    if (!outcome.queued) {
      const { refusal } = outcome;
      if (refusal.reason !== 'no_server') return this.refused(refusal, actor, action, workflow.id, details);
      await this.audit(actor, action, 'refused', { workflowId: workflow.id, reason: refusal.message, details });
      return { kind: 'refused', reason: 'no_server', message: refusal.message };
    }
    await this.audit(actor, action, 'accepted', { workflowId: workflow.id, runId: outcome.run.id, details: { ...details, detached: true } });
    // A serving instance checks every rule again when it takes the run, and
    // may refuse it (the rate limit, a run that started meanwhile): wait for
    // its answer, so the exit code says what happened.
    const answered = (await this.engine.waitWhileQueued(outcome.run.id, DETACH_WAIT_MS)) ?? outcome.run;
    if (answered.status === 'failed' && answered.ended_reason === 'refused') {
      const why = await this.engine.store.queuedRefusal(answered.id);
      const reason = (REFUSAL_REASONS as readonly string[]).includes(why?.refusal ?? '') ? (why!.refusal as RefusalReason) : 'busy';
      return {
        kind: 'refused',
        reason,
        message: `run #${answered.id} was refused by the serving instance: ${answered.error ?? 'no reason given'}`,
        workflowId: workflow.id,
        runId: answered.id,
        ...(why?.nextAllowedAt ? { nextAllowedAt: why.nextAllowedAt } : {}),
      };
    }
    return { kind: 'run_queued', view: this.view(answered) };
  }

  private async stop(runId: number, actor: Actor): Promise<CommandResult> {
    const elsewhere = await this.outsideGrant(runId, 'operator', 'stop', actor);
    if (elsewhere) return elsewhere;
    const outcome = await this.engine.requestStop(runId, actor.id);
    if (outcome.kind === 'not_found') return this.notFound(runId, actor, 'stop');
    const run = outcome.run!;
    if (outcome.kind === 'not_running') {
      const message = `run ${runId} is not running (it is ${run.status}); nothing to stop`;
      await this.audit(actor, 'stop', 'refused', { workflowId: run.workflow_id, runId, reason: message });
      return { kind: 'stop', outcome: 'not_running', run: this.view(run), message };
    }
    await this.audit(actor, 'stop', 'accepted', { workflowId: run.workflow_id, runId, details: { outcome: outcome.kind } });
    if (outcome.kind === 'recovered') {
      return {
        kind: 'stop',
        outcome: 'recovered',
        run: this.view(run),
        message: `run ${runId} had lost its owner; marked abandoned and its unfinished work returned to pending`,
      };
    }
    const ended = await this.engine.waitForEnd(runId, STOP_WAIT_MS);
    if (ended && ended.status !== 'running') {
      return {
        kind: 'stop',
        outcome: 'stopped',
        run: this.view(ended),
        message: `run ${runId} ${ended.status === 'stopped' ? 'stopped' : `ended (${ended.status})`}`,
      };
    }
    return {
      kind: 'stop',
      outcome: 'stop_requested',
      run: this.view(ended ?? run),
      message: `stop requested for run ${runId}; it is finishing its in-flight work`,
    };
  }

  private async refused(refusal: QueueRefusal, actor: Actor, action: string, workflowId: number, details: Record<string, unknown>): Promise<CommandResult> {
    await this.audit(actor, action, 'refused', {
      workflowId,
      runId: refusal.reason === 'duplicate' ? refusal.running.id : null,
      reason: refusal.message,
      details: { ...details, refusal: refusal.reason },
    });
    return {
      kind: 'refused',
      reason: refusal.reason,
      message: refusal.message,
      workflowId,
      running: refusal.reason === 'duplicate' ? this.view(refusal.running) : undefined,
      nextAllowedAt: refusal.reason === 'rate_limited' ? refusal.nextAllowedAt.toISOString() : undefined,
    };
  }

  /**
   * A button click. `key` identifies the click (Slack's action_ts, say): a
   * double click, a retried delivery or a second instance acting on the same
   * click acts at most once. A button on a stale message (its run already
   * ended) does nothing and says what happened instead.
   */
  async press(action: ButtonAction, actor: Actor, key: string): Promise<CommandResult> {
    try {
      return await this.pressUnguarded(action, actor, key);
    } catch (error) {
      if (isBusyError(error)) return busy();
      if (!isConnectionError(error)) throw error;
      return unavailable(error);
    }
  }

  private async pressUnguarded(action: ButtonAction, actor: Actor, key: string): Promise<CommandResult> {
    if (action.type === 'force_approve' || action.type === 'force_reject') {
      const command: Command = { verb: 'force-decision', requestId: action.requestId, decision: action.type === 'force_approve' ? 'approve' : 'reject' };
      if (actor.roles && !actor.roles.has('admin')) return this.forbidden(command, 'admin', actor);
      // The decision itself acts once (one UPDATE of a pending row); the claim makes a double click say so.
      const request = await this.engine.store.forceRequest(action.requestId);
      const own = action.type === 'force_approve' && request?.requester === identity(actor);
      if (!own && !(await this.engine.store.claimAction(key, actor.id))) {
        return { kind: 'done', message: `that click on force request #${action.requestId} was already handled` };
      }
      return this.execute(command, actor);
    }
    if (action.type === 'force_start') {
      const command: Command = { verb: 'run', workflow: String(action.workflowId), mode: 'global_batch', force: true, detach: false };
      if (actor.roles && !actor.roles.has('admin')) return this.forbidden(command, 'admin', actor);
      if (!(await this.engine.store.claimAction(key, actor.id))) return { kind: 'done', message: 'that click was already handled' };
      return this.execute(command, actor);
    }
    const run = await this.engine.store.run(action.runId);
    if (!run) return this.notFound(action.runId, actor, `button:${action.type}`);
    const command: Command =
      action.type === 'stop'
        ? { verb: 'stop', runId: run.id }
        : {
            verb: 'run',
            workflow: String(run.workflow_id),
            mode: run.mode === 'single_run' ? 'global_batch' : run.mode,
            subjectId: run.subject_id ?? undefined,
            force: true,
            detach: false,
          };
    const needed = requiredRole(command);
    if (actor.roles && !actor.roles.has(needed)) return this.forbidden(command, needed, actor);
    // Before the claim: a click refused here leaves the button to those it is granted to.
    const elsewhere = await this.outsideGrant(run, needed, action.type, actor);
    if (elsewhere) return elsewhere;
    if (!(await this.engine.store.claimAction(key, actor.id))) {
      return { kind: 'done', message: `that click on run #${run.id} was already handled` };
    }
    if (run.status !== 'running') {
      const by = run.stopped_by ? ` by ${run.stopped_by}` : '';
      const message = `run #${run.id} has already ended (${run.status}${by}${run.taken_over_by_run_id ? `, taken over by run #${run.taken_over_by_run_id}` : ''}); nothing to ${action.type}`;
      await this.audit(actor, `button:${action.type}`, 'refused', { workflowId: run.workflow_id, runId: run.id, reason: message });
      return { kind: 'stop', outcome: 'not_running', run: this.view(run), message };
    }
    return this.execute(command, actor);
  }

  /**
   * A grant limited to channels acts only on runs requested in its channels:
   * the refusal (audited) when `actor` lacks `needed` over this run, else
   * undefined. Only surfaces with channel-limited grants (Slack) look.
   */
  private async outsideGrant(target: RunRow | number, needed: Role, action: string, actor: Actor): Promise<CommandResult | undefined> {
    if (!actor.rolesOver) return undefined;
    const run = typeof target === 'number' ? await this.engine.store.run(target) : target;
    if (!run || actor.rolesOver(run.notify_channel).has(needed)) return undefined;
    const where = run.notify_channel ? `in channel ${run.notify_channel}` : 'outside Slack';
    const message = `run #${run.id} was requested ${where}; your ${needed} role holds only for runs requested in the channels it is granted in. Ask there, or ask an admin (WORKFLOW_ACCESS).`;
    await this.audit(actor, action, 'refused', {
      workflowId: run.workflow_id,
      runId: run.id,
      reason: message,
      details: { needed, refusal: 'permission', run_channel: run.notify_channel },
    });
    return { kind: 'refused', reason: 'permission', message };
  }

  /**
   * A request the surface turned away before it became a command (from
   * another workspace, an unreadable button): audited like any other, with
   * the run and workflow it named when it named them.
   */
  async reject(
    actor: Actor,
    entry: { action: string; outcome: 'refused' | 'invalid'; reason: string; runId?: number; workflowId?: number; details?: Record<string, unknown> },
  ): Promise<void> {
    let workflowId = entry.workflowId;
    if (workflowId === undefined && entry.runId !== undefined) workflowId = (await this.engine.store.run(entry.runId))?.workflow_id;
    await this.audit(actor, entry.action, entry.outcome, { workflowId, runId: entry.runId, reason: entry.reason, details: entry.details });
  }

  private async forbidden(command: Command, needed: Role, actor: Actor): Promise<CommandResult> {
    const has = actor.roles && actor.roles.size > 0 ? [...actor.roles].join(', ') : 'no role';
    const what =
      command.verb === 'run' && command.force
        ? 'force'
        : command.verb === 'force-decision'
          ? command.decision === 'approve'
            ? 'force_approve'
            : 'force_reject'
          : command.verb;
    const message = `\`${what}\` needs the ${needed} role; you have ${has}. Ask an admin to grant it (WORKFLOW_ACCESS).`;
    await this.audit(actor, what, 'refused', { reason: message, details: { needed, refusal: 'permission' } });
    return { kind: 'refused', reason: 'permission', message };
  }

  /**
   * `prune` (admin): retention now (src/engine/retention.ts), or with
   * --dry-run only its counts. Audited either way, with the counts.
   */
  private async prune(olderThanDays: number | undefined, dryRun: boolean, actor: Actor): Promise<CommandResult> {
    if (!this.retention) return { kind: 'done', message: 'no retention service in this process' };
    const days = olderThanDays ?? this.retention.retentionDays;
    if (days === 0) {
      const message = 'retention is off (WORKFLOW_RETENTION_DAYS=0): give --older-than <days>d';
      await this.audit(actor, 'prune', 'invalid', { reason: message });
      return { kind: 'invalid', message, usage: usage('prune') };
    }
    const counts = await this.retention.prune({ olderThanDays: days, dryRun });
    await this.audit(actor, 'prune', 'accepted', { details: { older_than_days: days, dry_run: dryRun, ...snake(counts) } });
    const what = `${counts.interactions} interactions, ${counts.handledActions} handled button clicks, ${counts.runMessages} run messages, ${counts.claims} leftover claims of ${counts.runs} runs ended more than ${days} days ago, and ${counts.forceRequests} force requests decided or expired before then`;
    return { kind: 'done', message: dryRun ? `would delete ${what} (dry run: nothing deleted)` : `deleted ${what}; runs and the audit log are kept` };
  }

  /**
   * The health monitor's findings after one pass now (recovering what it
   * finds, probing services), or, when a pass started on the database within
   * the interval, the latest findings and when the next pass is allowed:
   * refused and audited like any other rate limit.
   */
  private async checkHealth(actor: Actor): Promise<CommandResult> {
    const checked = await this.health.check();
    if (!checked) return { kind: 'done', message: 'no health monitor in this process' };
    const { report, limited } = checked;
    if (!limited) return { kind: 'health', report };
    const { lastStartAt, lastStartBy, nextAllowedAt } = limited;
    const message = `the last health pass on this database started at ${utcText(lastStartAt)} (${relativeTime(lastStartAt)}${lastStartBy ? `, on instance ${lastStartBy}` : ''}); the next is allowed at ${utcText(nextAllowedAt)} (${relativeTime(nextAllowedAt)}): one pass every ${HEALTH_CHECK_INTERVAL_MS / 1000} s, whoever asks`;
    await this.audit(actor, 'health', 'refused', {
      reason: message,
      details: { refusal: 'rate_limited', last_start_at: lastStartAt, last_start_by: lastStartBy, next_allowed_at: nextAllowedAt },
    });
    return { kind: 'health', report, limited: { message, lastStartAt, nextAllowedAt } };
  }

  /**
   * pause/resume a continuous workflow (src/engine/continuous.ts): a switch in
   * the database, so every serving instance sees it. Pause keeps new work from
   * starting runs; a run already going is not stopped (that is `stop`).
   * Resume announces work, so the serving leader looks at once. Audited,
   * accepted or refused.
   */
  private async setPaused(ref: string, paused: boolean, actor: Actor, surface: Surface): Promise<CommandResult> {
    const action = paused ? 'pause' : 'resume';
    const workflow = this.workflows.find(ref);
    if (!workflow) return this.unknownWorkflow(ref, actor, action, surface);
    if (!workflow.continuous && !workflow.schedule) {
      const message = `workflow ${workflow.id} (${workflow.name}) is neither continuous nor scheduled: it runs only when asked (\`run ${workflow.id}\`), so there is nothing to ${action}`;
      await this.audit(actor, action, 'refused', { workflowId: workflow.id, reason: message, details: { refusal: 'not_continuous' } });
      return { kind: 'refused', reason: 'not_continuous', message, workflowId: workflow.id };
    }
    const before = await this.engine.store.setPaused(workflow.id, paused, actor.id);
    if (!before) return this.unknownWorkflow(ref, actor, action, surface);
    await this.audit(actor, action, 'accepted', { workflowId: workflow.id, details: { was_paused: before.paused } });
    if (!paused) await this.engine.store.announceWork(workflow.id);
    const name = `workflow ${workflow.id} (${workflow.name})`;
    const message = paused
      ? `${before.paused ? `${name} was already paused; it stays paused` : `${name} paused`}: new work starts no run until \`resume ${workflow.id}\`${(await this.engine.store.runsInProgress()).some((r) => r.workflow_id === workflow.id) ? ' (the run going now goes on; `stop` it to end it)' : ''}`
      : `${before.paused ? `${name} resumed` : `${name} was not paused`}: new work starts runs again (pending work now, once the rate limit allows)`;
    return { kind: 'done', message };
  }

  /** Each scheduled workflow with its next start, as the scheduler would see it now. */
  private async schedules(): Promise<ScheduleView[]> {
    const states = await this.engine.store.scheduleStates();
    const pauses = await this.engine.store.pauseStates();
    const now = new Date();
    const views: ScheduleView[] = [];
    for (const w of this.workflows.all()) {
      if (!w.schedule) continue;
      const timezone = w.schedule.timezone ?? 'UTC';
      const state = states.get(w.id);
      // A state kept for another cron starts again from now, as the scheduler does.
      const from = state && state.cron === w.schedule.cron && state.timezone === timezone ? state.lastTick : now;
      const next = nextTick({ cron: w.schedule.cron, timezone }, from);
      views.push({
        workflowId: w.id,
        workflowName: w.name,
        cron: w.schedule.cron,
        timezone,
        next: next?.toISOString() ?? null,
        overdue: next !== null && next.getTime() <= now.getTime(),
        lastTick: state ? state.lastTick.toISOString() : null,
        paused: pausedView(pauses.get(w.id)),
      });
    }
    return views;
  }

  private whoami(actor: Actor): CommandResult {
    const role = actor.roles ? highestRole(actor.roles) : 'unrestricted';
    return { kind: 'whoami', whoami: { actor: actor.id, source: actor.source, role, grants: actor.grants ? [...actor.grants] : null } };
  }

  /**
   * `plan`: a dry run of a global_batch. The forecast per step, the time it
   * should take at past runs' per-step pace, and whether it would start now.
   * Nothing is started or written except its audit entry.
   */
  private async plan(ref: string, actor: Actor, surface: Surface): Promise<CommandResult> {
    const workflow = this.workflows.find(ref);
    if (!workflow) return this.unknownWorkflow(ref, actor, 'plan', surface);
    const steps = workflow.steps.map((s) => s.name);
    const pending = await this.engine.store.pendingWork(workflow);
    const forecast = forecastWork(pending, steps);
    const interactions = Object.values(forecast).reduce((n, k) => n + k, 0);
    const pace = await this.engine.store.pace(workflow.id);
    const estimate = pace ? { seconds: secondsFor(forecast, pace), fromRuns: pace.runs } : null;
    const check = await this.engine.preflight(workflow);
    const paused = workflow.continuous ? (await this.engine.store.pauseStates()).get(workflow.id) : undefined;
    const verdict: PlanView['verdict'] = check.running
      ? { start: false, reason: 'duplicate', running: this.view(check.running) }
      : check.nextAllowedAt
        ? { start: false, reason: 'rate_limited', lastStartAt: check.lastStartAt!.toISOString(), nextAllowedAt: check.nextAllowedAt.toISOString() }
        : paused?.paused
          ? { start: false, reason: 'paused', by: paused.pausedBy }
          : { start: true };
    await this.audit(actor, 'plan', 'accepted', {
      workflowId: workflow.id,
      details: {
        forecast,
        pending,
        estimate_seconds: estimate ? Math.round(estimate.seconds) : null,
        would_start: verdict.start,
        ...(verdict.start ? {} : { refusal: verdict.reason }),
      },
    });
    return {
      kind: 'plan',
      plan: { workflowId: workflow.id, workflowName: workflow.name, steps, pending, forecast, interactions, estimate, verdict },
    };
  }

  /** An unknown run id is bad input: audited like any other. */
  private async notFound(runId: number, actor: Actor, action: string, workflowId?: number): Promise<CommandResult> {
    const message = `run ${runId} does not exist`;
    await this.audit(actor, action, 'invalid', { workflowId, reason: message });
    return { kind: 'not_found', message };
  }

  private async unknownWorkflow(ref: string, actor: Actor, action: string, surface: Surface): Promise<CommandResult> {
    const known =
      this.workflows
        .all()
        .map((w) => `${w.id} (${w.name})`)
        .join(', ') || 'none';
    const message = `unknown workflow "${ref}"; defined: ${known}`;
    await this.audit(actor, action, 'invalid', { reason: message });
    return { kind: 'invalid', message, usage: usage(action === 'history' ? 'history' : action === 'pause' || action === 'resume' ? action : 'run', surface) };
  }

  private audit(
    actor: Actor,
    action: string,
    outcome: 'accepted' | 'refused' | 'invalid',
    entry: { workflowId?: number | null; runId?: number | null; reason?: string | null; details?: Record<string, unknown> },
  ): Promise<number> {
    return this.engine.store.audit({ actor: actor.id, source: actor.source, action, outcome, ...entry });
  }

  private view(run: RunRow): RunView {
    return this.views.view(run);
  }
}

const STOP_WAIT_MS = 15_000;
/** How long `run --detach` waits for a serving instance to start or refuse its run: it is told at once (NOTIFY), so seconds at most. */
const DETACH_WAIT_MS = 10_000;
const REFUSAL_REASONS = ['duplicate', 'rate_limited', 'not_resumable', 'busy'] as const;

/** Who a person is for two-person approval: the Slack user id, or the CLI's user@host. */
function identity(actor: Actor): string {
  return actor.userId ?? actor.id;
}

function pausedView(state: PauseState | undefined): { by: string | null; at: string | null } | null {
  if (!state?.paused) return null;
  return { by: state.pausedBy, at: state.pausedAt ? new Date(state.pausedAt).toISOString() : null };
}

/**
 * The database could not be reached (an outage, a restart): say so at once
 * instead of failing or timing out; the pools reconnect by themselves. The
 * request cannot be audited (the audit log is in that database).
 */
function unavailable(error: unknown): CommandResult {
  return { kind: 'refused', reason: 'unavailable', message: `${DATABASE_UNAVAILABLE} (${describeError(error)})` };
}

/**
 * A lock held elsewhere or a statement past its timeout
 * (DATABASE_LOCK_TIMEOUT_MS, DATABASE_STATEMENT_TIMEOUT_MS): answered within
 * the timeout instead of hanging. Not audited: the audit log may be what is
 * locked.
 */
function busy(): CommandResult {
  return { kind: 'refused', reason: 'busy', message: DATABASE_BUSY };
}

function describeError(error: unknown): string {
  const e = error as { code?: string; message?: string };
  return (e?.code ?? e?.message ?? String(error)).slice(0, 120);
}
