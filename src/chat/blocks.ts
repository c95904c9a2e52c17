import type { Button, ConfirmationDialog, ContextBlock, HeaderBlock, HomeView, KnownBlock, MrkdwnElement, PlainTextElement, SectionBlock } from '@slack/types';
import type { CommandResult, RunView, WorkflowView } from '../commands/results.ts';
import type { ButtonAction } from '../commands/service.ts';
import type { HealthReport, MonitorEvent } from '../engine/monitor.ts';
import { SLACK_LIMITS as L } from './block-limits.ts';

// Block Kit messages as plain functions of data: the Slack app posts them and
// the console prints them (plain-text.ts), so both surfaces say the same.
// Every builder stays inside Slack's limits whatever the data, because Slack
// rejects a whole message over one field that is too long: a run's final
// report must not be lost to a 10 KB error or a long metric name.
//
// Data (names, users, errors) is escaped (&, <, >) everywhere, so a workflow
// name or an error cannot mention @channel or forge a link.

export interface Message {
  /** Fallback for notifications and screen readers: one short line. */
  text: string;
  blocks: KnownBlock[];
  /** Shown only to the person who asked (refusals, errors, queries). */
  ephemeral: boolean;
}

export const ACTION_IDS = { stop: 'workflow_stop', force: 'workflow_force', forceStart: 'workflow_force_start' } as const;

/** A button's value parsed back into what it asks for; undefined for anything that is not exactly what we put there. */
export function buttonAction(actionId: string, value: string): ButtonAction | undefined {
  if (typeof value !== 'string' || value.length > L.buttonValue) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const entries = Object.entries(parsed);
  const only = (key: string): number | undefined => {
    if (entries.length !== 1 || entries[0]![0] !== key) return undefined;
    const id = entries[0]![1];
    return typeof id === 'number' && Number.isSafeInteger(id) && id > 0 ? id : undefined;
  };
  switch (actionId) {
    case ACTION_IDS.stop: {
      const runId = only('runId');
      return runId === undefined ? undefined : { type: 'stop', runId };
    }
    case ACTION_IDS.force: {
      const runId = only('runId');
      return runId === undefined ? undefined : { type: 'force', runId };
    }
    case ACTION_IDS.forceStart: {
      const workflowId = only('workflowId');
      return workflowId === undefined ? undefined : { type: 'force_start', workflowId };
    }
    default:
      return undefined;
  }
}

// ─── Runs ────────────────────────────────────────────────────────────────────

/** The run's channel message through its life: progress and Stop while it runs, the audit summary once it has ended. */
export function runMessage(view: RunView, options: { now?: Date } = {}): Message {
  const now = options.now ?? new Date();
  return isLive(view) ? liveRunMessage(view, now) : endedRunMessage(view);
}

function isLive(view: RunView): boolean {
  return view.status === 'running' || view.status === 'queued';
}

function liveRunMessage(view: RunView, now: Date): Message {
  const blocks: KnownBlock[] = [
    header(`${STATUS_EMOJI[view.status]} Run #${view.id} ${view.status} — workflow ${view.workflowId}${view.workflowName ? ` ${view.workflowName}` : ''}`),
    fields([
      `*Workflow*\n${workflowLabel(view)}`,
      `*Mode*\n${modeLabel(view)}`,
      `*Requested by*\n${who(view.requestedBy)} via ${code(view.source, 40)}`,
      `*Elapsed*\n${view.startedAt ? formatDuration((now.getTime() - Date.parse(view.startedAt)) / 1000) : 'not started yet'}`,
    ]),
    ...progressBlocks(view, 3),
  ];
  const notes: string[] = [];
  if (view.forcedBy) notes.push(`forced by ${who(view.forcedBy)}${view.forcedRunId ? ` over run #${view.forcedRunId}` : ''}`);
  if (view.stopRequestedBy) notes.push(`stop requested by ${who(view.stopRequestedBy)}: finishing in-flight work`);
  if (view.startedAt) notes.push(`started ${formatTime(view.startedAt)}`);
  if (notes.length) blocks.push(context(notes));
  blocks.push({ type: 'actions', elements: [stopButton(view)] });
  return { text: runSummaryLine(view), blocks, ephemeral: false };
}

function endedRunMessage(view: RunView): Message {
  const blocks: KnownBlock[] = [
    header(`${STATUS_EMOJI[view.status]} Run #${view.id} ${view.status} — workflow ${view.workflowId}${view.workflowName ? ` ${view.workflowName}` : ''}`),
    fields([
      `*Status*\n${view.status}${view.endedReason ? ` (${esc(truncate(view.endedReason, 200))})` : ''}`,
      `*Duration*\n${view.durationSeconds !== null ? formatDuration(view.durationSeconds) : '-'}`,
      `*Interactions*\n${view.interactionsCompleted} done, ${view.interactionsFailed} failed`,
      `*Workflow*\n${workflowLabel(view)}`,
      `*Mode*\n${modeLabel(view)}`,
      `*Requested by*\n${who(view.requestedBy)} via ${code(view.source, 40)}`,
    ]),
  ];
  const notes: string[] = [];
  if (view.status === 'completed' && view.interactionsCompleted + view.interactionsFailed === 0) notes.push('No pending work: nothing to do.');
  if (view.stoppedBy) notes.push(`Stopped by ${who(view.stoppedBy)}${view.takenOverByRunId ? `; taken over by run #${view.takenOverByRunId}` : ''}.`);
  else if (view.takenOverByRunId) notes.push(`Taken over by run #${view.takenOverByRunId}.`);
  else if (view.stopRequestedBy) notes.push(`Stop requested by ${who(view.stopRequestedBy)}.`);
  if (view.forcedBy) notes.push(`Forced by ${who(view.forcedBy)}${view.forcedRunId ? ` over run #${view.forcedRunId}` : ''}.`);
  if (notes.length) blocks.push(section(notes.join('\n')));
  if (view.error) blocks.push(section(`*Error*\n${codeBlock(view.error, L.sectionText - 20)}`));
  const times = [view.startedAt ? `started ${formatTime(view.startedAt)}` : '', view.endedAt ? `ended ${formatTime(view.endedAt)}` : ''].filter(Boolean);
  const room = L.messageBlocks - blocks.length - (times.length ? 1 : 0);
  if (view.stateBefore || view.stateAfter) blocks.push(...metricsBlocks(view, room));
  if (times.length) blocks.push(context(times));
  return { text: runSummaryLine(view), blocks, ephemeral: false };
}

/**
 * One line that says where a run stands, without the clock: the console
 * prints it again only when it changes, and it is the message's fallback text.
 */
export function runSummaryLine(view: RunView): string {
  const name = `Run #${view.id} (workflow ${view.workflowId}${view.workflowName ? ` ${truncate(view.workflowName, 60)}` : ''})`;
  if (isLive(view)) {
    const steps = stepRows(view).map((r) => `${r.step} ${r.done}${r.expected !== undefined ? `/${r.expected}` : ''}${r.failed ? ` (${r.failed} failed)` : ''}`);
    const stop = view.stopRequestedBy ? ', stopping' : '';
    return truncate(`${STATUS_EMOJI[view.status]} ${name} ${view.status}${stop}: ${steps.length ? steps.join(', ') : 'starting'}`, 300);
  }
  const duration = view.durationSeconds !== null ? ` in ${formatDuration(view.durationSeconds)}` : '';
  return truncate(`${STATUS_EMOJI[view.status]} ${name} ${view.status}${duration}: ${view.interactionsCompleted} done, ${view.interactionsFailed} failed`, 300);
}

interface StepRow {
  step: string;
  expected: number | undefined;
  done: number;
  failed: number;
  running: number;
}

function stepRows(view: RunView): StepRow[] {
  const expected = view.expectedWork ?? {};
  const progress = view.progress ?? {};
  const steps = [...new Set([...Object.keys(expected), ...Object.keys(progress)])];
  return steps.map((step) => ({
    step,
    expected: typeof expected[step] === 'number' ? expected[step] : undefined,
    done: progress[step]?.done ?? 0,
    failed: progress[step]?.failed ?? 0,
    running: progress[step]?.running ?? 0,
  }));
}

/**
 * Expected work and progress per step. Pending is expected − done − failed
 * where that is known: later steps receive work as earlier ones finish, so
 * their count at the start is a lower bound and pending shows "-" once passed.
 */
function progressBlocks(view: RunView, maxBlocks: number): KnownBlock[] {
  const rows = stepRows(view);
  if (rows.length === 0) return [section('_Counting pending work…_')];
  const width = clamp(Math.max(4, ...rows.map((r) => r.step.length)), 4, 24);
  const head = `${'step'.padEnd(width)} ${'expected'.padStart(9)} ${'done'.padStart(9)} ${'failed'.padStart(9)} ${'pending'.padStart(9)}`;
  const lines = rows.map((r) => {
    const pending = r.expected !== undefined && r.expected - r.done - r.failed >= 0 ? String(r.expected - r.done - r.failed) : '-';
    const cells = [r.expected ?? '-', r.done, r.failed, pending].map((c) => String(c).padStart(9)).join(' ');
    return r.step.length > width ? `${truncate(r.step, 200)}\n${''.padEnd(width)} ${cells}` : `${r.step.padEnd(width)} ${cells}`;
  });
  return tableBlocks('*Progress*', head, lines, maxBlocks, 'steps');
}

/** Every metric before → after with its signed delta, as many code blocks as it takes, within the room left. */
function metricsBlocks(view: RunView, maxBlocks: number): KnownBlock[] {
  const before = view.stateBefore ?? {};
  const after = view.stateAfter ?? {};
  const names = [...new Set([...Object.keys(before), ...Object.keys(after), ...Object.keys(view.delta ?? {})])];
  if (names.length === 0) return [];
  const width = clamp(Math.max(6, ...names.map((n) => n.length)), 6, 32);
  const head = `${'metric'.padEnd(width)} ${'before'.padStart(10)} ${'after'.padStart(10)} ${'delta'.padStart(10)}`;
  const lines = names.map((name) => {
    const b = numeric(before[name]);
    const a = numeric(after[name]);
    const d = numeric(view.delta?.[name]) ?? (a !== undefined && b !== undefined ? a - b : undefined);
    const cells = `${formatNumber(b).padStart(10)} ${formatNumber(a).padStart(10)} ${formatNumber(d, true).padStart(10)}`;
    // A long name gets a line of its own, so the numbers stay in their columns and every name stays whole.
    return name.length > width ? `${truncate(name, 300)}\n${''.padEnd(width)} ${cells}` : `${name.padEnd(width)} ${cells}`;
  });
  return tableBlocks('*State before → after*', head, lines, maxBlocks, 'metrics');
}

/**
 * Rows as code blocks in sections of at most 3,000 characters each, in at
 * most `maxBlocks` sections; what does not fit is counted at the end.
 */
function tableBlocks(title: string, head: string, rows: string[], maxBlocks: number, noun: string): KnownBlock[] {
  if (maxBlocks < 1) return [];
  const blocks: KnownBlock[] = [];
  // Room for the rows of one section: its limit less the fences, the header row, the title and a "…and N more" tail.
  const room = () => L.sectionText - 60 - (blocks.length === 0 ? title.length + 1 : 0) - head.length;
  let chunk: string[] = [];
  let size = 0;
  const flush = (more: number) => {
    const prefix = blocks.length === 0 ? `${title}\n` : '';
    const tail = more > 0 ? `\n…and ${more} more ${noun}` : '';
    blocks.push(section(`${prefix}\`\`\`\n${[escCode(head), ...chunk].join('\n')}\n\`\`\`${tail}`));
    chunk = [];
    size = 0;
  };
  for (let i = 0; i < rows.length; i++) {
    const escaped = escCode(rows[i]!);
    const row = escaped.length > room() ? truncate(escaped, room()) : escaped;
    if (chunk.length > 0 && size + row.length + 1 > room()) {
      if (blocks.length + 1 >= maxBlocks) {
        flush(rows.length - i);
        return blocks;
      }
      flush(0);
    }
    chunk.push(row);
    size += row.length + 1;
  }
  flush(0);
  return blocks;
}

// ─── Other results ───────────────────────────────────────────────────────────

/**
 * Every command result as a message. Refusals, errors, help and queries are
 * ephemeral (only the asker sees them); what changes a run (started, queued,
 * stopped) is posted for the channel.
 * `workflowId` names the workflow of a rate-limit refusal, whose result does
 * not carry it; without it, it is read from the refusal's message.
 */
export function resultMessage(result: CommandResult, options: { now?: Date; workflowId?: number } = {}): Message {
  const now = options.now ?? new Date();
  switch (result.kind) {
    case 'run_started':
      return runMessage(result.view, { now });
    case 'run_queued':
      return message(
        `Run #${result.view.id} queued for a serving instance`,
        [
          section(
            `🕒 *Run #${result.view.id} queued* for a serving instance: workflow ${workflowLabel(result.view)}, ${modeLabel(result.view)}, requested by ${who(result.view.requestedBy)}.`,
          ),
        ],
        false,
      );
    case 'run':
      return { ...runMessage(result.run, { now }), ephemeral: true };
    case 'invalid':
      return message(`⚠️ ${truncate(oneLine(result.message), 200)}`, [
        section(`⚠️ ${esc(truncate(oneLine(result.message), 1_000))}`),
        ...(result.usage.trim() ? [section(`*Usage*\n${codeBlock(result.usage, L.sectionText - 20)}`)] : []),
      ]);
    case 'not_found':
      return message(`⚠️ ${truncate(oneLine(result.message), 200)}`, [section(`⚠️ ${esc(truncate(result.message, 2_000))}`)]);
    case 'help':
      return message('workflow help', textBlocks(result.text, L.messageBlocks));
    case 'done':
      return message(truncate(oneLine(result.message), 200) || 'done', [section(esc(truncate(result.message, 2_000)) || 'done')]);
    case 'stop':
      return message(
        truncate(oneLine(result.message), 200),
        [
          section(`${result.outcome === 'not_running' ? 'ℹ️' : STATUS_EMOJI.stopped} ${esc(truncate(result.message, 2_000))}`),
          context([runLine(result.run, now)]),
        ],
        result.outcome === 'not_running',
      );
    case 'runs':
      return runsMessage(result.runs, now);
    case 'history':
      return historyMessage(result.runs, now);
    case 'workflows':
      return workflowsMessage(result.workflows);
    case 'refused':
      return refusedMessage(result, now, options.workflowId);
    case 'health':
      return healthMessage(result.report);
  }
}

// ─── Health monitor ──────────────────────────────────────────────────────────

/** `workflow health`: who monitors, what the last pass fixed or found, and each external service. */
export function healthMessage(report: HealthReport): Message {
  const who = report.active
    ? `active on this instance (${code(report.instanceId, 60)})`
    : report.activeInstance
      ? `standby; active on ${code(report.activeInstance, 60)}`
      : 'no instance is monitoring (start one with `workflow serve`)';
  const fixed: string[] = [];
  for (const r of report.recovered) {
    fixed.push(
      `⚠️ run #${r.runId} (workflow ${r.workflowId}) marked *abandoned*: silent ${formatDuration(r.silentSeconds)} with its lock free; its claims released, ${r.interactionsReleased} unfinished interaction${r.interactionsReleased === 1 ? '' : 's'} left pending`,
    );
  }
  for (const r of report.stuck) {
    fixed.push(
      `🐢 run #${r.runId} (workflow ${r.workflowId}) *stuck*: silent ${formatDuration(r.silentSeconds)} while its owner${r.ownerInstance ? ` ${code(r.ownerInstance, 60)}` : ''} holds its lock (not recovered)`,
    );
  }
  for (const o of report.orphans) fixed.push(`♻️ ${orphanLine(o)}`);
  if (report.error) fixed.push(`❌ the pass failed: ${esc(truncate(report.error, 500))}`);
  const services = report.services.map(serviceLine);
  return message(`health: ${report.recovered.length} run(s) recovered, ${report.services.filter((s) => s.up === false).length} service(s) down`, [
    section(`🩺 *Health monitor* ${who}
last pass ${report.lastPassAt ? formatTime(report.lastPassAt) : 'never'}; every ${formatDuration(report.intervalMs / 1000)}, runs silent over ${formatDuration(report.staleAfterMs / 1000)} are checked`),
    ...linesBlocks(fixed.length ? fixed : ['✅ nothing to fix: no stale runs, no orphaned claims'], 10, 'findings'),
    ...(services.length ? linesBlocks(services, 8, 'services') : [context(['no external services declared'])]),
  ]);
}

/** Claims an ended run still held (the health monitor releases them). */
export function orphanLine(o: HealthReport['orphans'][number]): string {
  return `run #${o.runId} (workflow ${o.workflowId}, ${o.status}) still held ${o.claims} claim${o.claims === 1 ? '' : 's'}: released, ${o.interactionsReleased} unfinished interaction${o.interactionsReleased === 1 ? '' : 's'} left pending`;
}

function serviceLine(s: HealthReport['services'][number]): string {
  const used = `workflow${s.workflows.length === 1 ? '' : 's'} ${s.workflows.join(', ')}`;
  if (s.up === null) return `❔ ${code(s.name, 60)} not probed yet (${used})`;
  if (s.up) return `🟢 ${code(s.name, 60)} up${s.latencyMs !== null ? ` (${s.latencyMs} ms)` : ''} (${used})`;
  return `🔴 ${code(s.name, 60)} *down*${s.since ? ` since ${formatTime(s.since)}` : ''}: ${esc(truncate(s.error ?? 'no answer', 300))} (${used})`;
}

/** What the active monitor announces to the notify channel (and the console prints). */
export function monitorEventMessage(event: MonitorEvent): Message {
  switch (event.type) {
    case 'recovered': {
      const runs = event.runs.map(
        (r) =>
          `run #${r.runId} (workflow ${r.workflowId}): owner gone, marked abandoned, ${r.interactionsReleased} unfinished interaction${r.interactionsReleased === 1 ? '' : 's'} left pending`,
      );
      runs.push(...event.orphans.map(orphanLine));
      const summary = event.runs.length ? `recovered ${event.runs.length} abandoned run${event.runs.length === 1 ? '' : 's'}` : 'released orphaned claims';
      return message(
        `🩺 Health monitor ${summary}`,
        [
          section(`🩺 *Health monitor ${summary}*`),
          ...linesBlocks(
            runs.map((line) => `• ${esc(line)}`),
            8,
            'runs',
          ),
          context([`Resume with \`run <workflow> --mode single_run --run <id>\`, or the next batch picks the work up.`]),
        ],
        false,
      );
    }
    case 'stuck':
      return message(
        `🐢 Run #${event.run.runId} looks stuck`,
        [
          section(
            `🐢 *Run #${event.run.runId}* (workflow ${event.run.workflowId}) has not sent a heartbeat for ${formatDuration(event.run.silentSeconds)}, but its owner${event.run.ownerInstance ? ` ${code(event.run.ownerInstance, 60)}` : ''} still holds its lock. Not recovered; \`stop\` or \`force\` it if it does not move.`,
          ),
        ],
        false,
      );
    case 'service_down':
      return message(
        `🔴 ${event.service} is down`,
        [
          section(
            `🔴 *${esc(truncate(event.service, 100))} is down*: ${esc(truncate(event.error, 1_000))}\nWorkflow${event.workflows.length === 1 ? '' : 's'} ${event.workflows.join(', ')} will fail their calls to it until it is back.`,
          ),
        ],
        false,
      );
    case 'service_up':
      return message(
        `🟢 ${event.service} is back`,
        [section(`🟢 *${esc(truncate(event.service, 100))} is back*${event.downSeconds !== null ? ` after ${formatDuration(event.downSeconds)} down` : ''}.`)],
        false,
      );
  }
}

function refusedMessage(result: Extract<CommandResult, { kind: 'refused' }>, now: Date, workflowId: number | undefined): Message {
  const text = `🚫 ${truncate(oneLine(result.message), 200)}`;
  switch (result.reason) {
    case 'duplicate': {
      const running = result.running;
      if (!running) break;
      return message(text, [
        section(`🚫 *Workflow ${running.workflowId} is already running* as run #${running.id}.`),
        fields([
          `*Started by*\n${who(running.requestedBy)} via ${code(running.source, 40)}`,
          `*Started*\n${running.startedAt ? `${formatTime(running.startedAt)} (${formatDuration((now.getTime() - Date.parse(running.startedAt)) / 1000)} ago)` : 'just now'}`,
          `*Mode*\n${modeLabel(running)}`,
          `*Progress*\n${esc(truncate(progressLabel(running), 1_500))}`,
        ]),
        context(['Force restart stops that run (unfinished work returns to pending) and starts a new one. Admins only.']),
        { type: 'actions', elements: [forceButton(running)] },
      ]);
    }
    case 'rate_limited': {
      const id = workflowId ?? Number(/^workflow (\d+)\b/.exec(result.message)?.[1]);
      const at = result.nextAllowedAt;
      const when = at ? `${formatTime(at)} (in ${formatDuration(Math.max(0, (Date.parse(at) - now.getTime()) / 1000))})` : 'later';
      const blocks: KnownBlock[] = [section(`⏱️ *Rate limited.* ${esc(truncate(result.message, 1_500))}\nThe next start is allowed ${when}.`)];
      if (Number.isSafeInteger(id) && id > 0) {
        blocks.push(context(['Force starts now, bypassing the rate limit. Admins only.']));
        blocks.push({ type: 'actions', elements: [forceStartButton(id, at)] });
      }
      return message(text, blocks);
    }
    case 'permission':
      return message(text, [section(`🔒 ${esc(truncate(result.message, 2_000))}`)]);
  }
  return message(text, [section(`🚫 ${esc(truncate(result.message, 2_000))}`)]);
}

function runsMessage(runs: RunView[], now: Date): Message {
  if (runs.length === 0) return message('No runs are running', [section('No runs are running.')]);
  const max = L.messageBlocks - 2;
  const blocks: KnownBlock[] = [header(`Running runs (${runs.length})`)];
  for (const run of runs.slice(0, max)) blocks.push(runWithStop(run, now));
  if (runs.length > max) blocks.push(context([`…and ${runs.length - max} more running`]));
  return message(`${runs.length} run${runs.length === 1 ? '' : 's'} running`, blocks);
}

function historyMessage(runs: RunView[], now: Date): Message {
  if (runs.length === 0) return message('No runs yet', [section('No runs yet.')]);
  const lines = runs.map((r) => `${runLine(r, now)}${r.delta ? `\n      Δ ${esc(truncate(formatDelta(r.delta), 400))}` : ''}`);
  return message(`${runs.length} recent run${runs.length === 1 ? '' : 's'}`, [header('Recent runs'), ...linesBlocks(lines, L.messageBlocks - 1, 'runs')]);
}

function workflowsMessage(workflows: WorkflowView[]): Message {
  if (workflows.length === 0) return message('No workflows are defined', [section('No workflows are defined.')]);
  const lines = workflows.map((w) => {
    const running = w.running.length
      ? `\n      running: ${w.running
          .slice(0, 20)
          .map((id) => `#${id}`)
          .join(', ')}${w.running.length > 20 ? ` …and ${w.running.length - 20} more` : ''}`
      : '';
    const mode = w.continuous ? (w.paused ? ` · continuous, *paused*${w.paused.by ? ` by ${esc(truncate(w.paused.by, 40))}` : ''}` : ' · continuous') : '';
    return `*${w.id}* ${code(w.name, 80)} (${esc(truncate(w.subject, 40))}s): ${esc(truncate(w.steps.join(' → '), 300))}${mode}\n      pending: ${esc(truncate(formatWork(w.pending), 300))}${running}`;
  });
  return message(`${workflows.length} workflow${workflows.length === 1 ? '' : 's'}`, [
    header('Workflows'),
    ...linesBlocks(lines, L.messageBlocks - 1, 'workflows'),
  ]);
}

// ─── App Home ────────────────────────────────────────────────────────────────

const HOME_RUNNING = 60;
const HOME_RECENT = 10;

/** The App Home tab: running runs with Stop buttons, then the last ten runs with their deltas. */
export function homeView(running: RunView[], recent: RunView[], options: { now?: Date } = {}): HomeView {
  const now = options.now ?? new Date();
  const blocks: KnownBlock[] = [header('Workflow runs')];
  if (running.length === 0) blocks.push(section('Nothing is running.'));
  else {
    blocks.push(section(`*Running* (${running.length})`));
    for (const run of running.slice(0, HOME_RUNNING)) blocks.push(runWithStop(run, now));
    if (running.length > HOME_RUNNING) blocks.push(context([`…and ${running.length - HOME_RUNNING} more running`]));
  }
  blocks.push({ type: 'divider' }, header('Recent runs'));
  if (recent.length === 0) blocks.push(section('No runs yet.'));
  for (const run of recent.slice(0, HOME_RECENT)) {
    blocks.push(section(`${runLine(run, now)}${run.delta ? `\nΔ ${esc(truncate(formatDelta(run.delta), 2_000))}` : ''}`));
  }
  return { type: 'home', blocks };
}

// ─── Buttons ─────────────────────────────────────────────────────────────────

function stopButton(run: RunView): Button {
  return {
    type: 'button',
    action_id: ACTION_IDS.stop,
    text: plain(`Stop run #${run.id}`, L.buttonText),
    style: 'danger',
    value: JSON.stringify({ runId: run.id }),
    confirm: confirmDialog(
      `Stop run #${run.id}?`,
      `Run #${run.id} of workflow ${run.workflowId} (started by ${run.requestedBy}) stops: in-flight work is aborted and returns to pending, nothing is lost. Resume it later with: run --mode single_run --run ${run.id}`,
      'Stop',
    ),
  };
}

function forceButton(running: RunView): Button {
  return {
    type: 'button',
    action_id: ACTION_IDS.force,
    text: plain(`Force restart (stops run #${running.id})`, L.buttonText),
    style: 'danger',
    value: JSON.stringify({ runId: running.id }),
    confirm: confirmDialog(
      `Force restart: stop run #${running.id}?`,
      `This stops run #${running.id} of workflow ${running.workflowId} (started by ${running.requestedBy}; ${progressLabel(running)}) and starts a new run in its place. Its unfinished work returns to pending. Admins only.`,
      'Force restart',
    ),
  };
}

function forceStartButton(workflowId: number, nextAllowedAt: string | undefined): Button {
  return {
    type: 'button',
    action_id: ACTION_IDS.forceStart,
    text: plain('Force start now (admins)', L.buttonText),
    style: 'danger',
    value: JSON.stringify({ workflowId }),
    confirm: confirmDialog(
      `Force a start of workflow ${workflowId}?`,
      `The rate limit allows the next start${nextAllowedAt ? ` at ${nextAllowedAt}` : ' later'}. Forcing starts a run now, bypassing it. Admins only.`,
      'Force start',
    ),
  };
}

/** A run as one section with its Stop button beside it (one button per block keeps action ids fixed). */
function runWithStop(run: RunView, now: Date): SectionBlock {
  return { type: 'section', text: mrkdwn(runLine(run, now)), accessory: stopButton(run) };
}

function confirmDialog(title: string, text: string, confirm: string): ConfirmationDialog {
  return {
    title: plain(title, L.confirmTitle),
    text: plain(text, L.confirmText),
    confirm: plain(confirm, L.confirmButton),
    deny: plain('Cancel', L.confirmButton),
    style: 'danger',
  };
}

// ─── Lines ───────────────────────────────────────────────────────────────────

/** One run as one mrkdwn line (of bounded length). */
function runLine(run: RunView, now: Date): string {
  const when = run.startedAt ? formatTime(run.startedAt) : 'not started';
  const took = isLive(run)
    ? run.startedAt
      ? `running ${formatDuration((now.getTime() - Date.parse(run.startedAt)) / 1000)}`
      : ''
    : run.durationSeconds !== null
      ? formatDuration(run.durationSeconds)
      : '';
  const progress = isLive(run) && run.progress ? ` — ${esc(truncate(progressLabel(run), 300))}` : '';
  const counts = !isLive(run) ? ` · ${run.interactionsCompleted} done, ${run.interactionsFailed} failed` : '';
  return `${STATUS_EMOJI[run.status]} *#${run.id}* ${run.status} · workflow ${workflowLabel(run)} · ${modeLabel(run)} · by ${who(run.requestedBy)} · ${when}${took ? ` · ${took}` : ''}${counts}${progress}`;
}

function progressLabel(run: RunView): string {
  const rows = stepRows(run);
  if (!run.progress || rows.every((r) => r.done + r.failed === 0)) return 'just started';
  return rows
    .filter((r) => r.done + r.failed > 0 || (r.expected ?? 0) > 0)
    .map((r) => `${r.step} ${r.done} done${r.failed ? `, ${r.failed} failed` : ''}${r.expected !== undefined ? ` of ${r.expected} expected` : ''}`)
    .join('; ');
}

function workflowLabel(run: RunView): string {
  return `${run.workflowId}${run.workflowName ? ` ${code(run.workflowName, 80)}` : ''}`;
}

function modeLabel(run: RunView): string {
  const parts: string[] = [run.mode];
  if (run.subjectId !== null) parts.push(`subject ${run.subjectId}`);
  if (run.resumesRunId !== null) parts.push(`resuming #${run.resumesRunId}`);
  if (run.action === 'force') parts.push('forced');
  return parts.join(' · ');
}

function formatWork(work: Record<string, number> | null): string {
  if (!work || Object.keys(work).length === 0) return '-';
  return Object.entries(work)
    .map(([step, n]) => `${step} ${n}`)
    .join(', ');
}

function formatDelta(delta: Record<string, number>): string {
  return (
    Object.entries(delta)
      .filter(([, v]) => numeric(v) !== 0)
      .map(([k, v]) => `${k} ${formatNumber(numeric(v), true)}`)
      .join(', ') || 'no change'
  );
}

// ─── Block primitives ────────────────────────────────────────────────────────

function message(text: string, blocks: KnownBlock[], ephemeral = true): Message {
  return { text: truncate(text.trim() || '(no text)', 300), blocks: blocks.slice(0, L.messageBlocks), ephemeral };
}

function header(text: string): HeaderBlock {
  return { type: 'header', text: plain(text, L.headerText) };
}

function section(text: string): SectionBlock {
  return { type: 'section', text: mrkdwn(text) };
}

function fields(texts: string[]): SectionBlock {
  return { type: 'section', fields: texts.slice(0, L.fields).map((t) => mrkdwn(t, L.fieldText)) };
}

function context(texts: string[]): ContextBlock {
  return { type: 'context', elements: texts.slice(0, L.contextElements).map((t) => mrkdwn(t, L.contextText)) };
}

/** Lines of mrkdwn packed into as few sections as fit, at most `maxBlocks`, the rest counted. */
function linesBlocks(lines: string[], maxBlocks: number, noun: string): KnownBlock[] {
  const budget = L.sectionText - 40;
  const blocks: KnownBlock[] = [];
  let chunk: string[] = [];
  let size = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = fitMrkdwn(lines[i]!, budget);
    if (size + line.length + 1 > budget && chunk.length > 0) {
      if (blocks.length + 1 >= maxBlocks) {
        chunk.push(`…and ${lines.length - i} more ${noun}`);
        blocks.push(section(chunk.join('\n')));
        return blocks;
      }
      blocks.push(section(chunk.join('\n')));
      chunk = [];
      size = 0;
    }
    chunk.push(line);
    size += line.length + 1;
  }
  if (chunk.length) blocks.push(section(chunk.join('\n')));
  return blocks;
}

/** Long text (help) as code blocks, split on line boundaries. */
function textBlocks(text: string, maxBlocks: number): KnownBlock[] {
  const lines = text.split('\n').map((l) => escCode(truncate(l, 1_000)));
  const blocks: KnownBlock[] = [];
  let chunk: string[] = [];
  let size = 0;
  const budget = L.sectionText - 40;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (size + line.length + 1 > budget && chunk.length > 0) {
      if (blocks.length + 1 >= maxBlocks) {
        blocks.push(section(`\`\`\`\n${chunk.join('\n')}\n\`\`\`\n…and ${lines.length - i} more lines`));
        return blocks;
      }
      blocks.push(section(`\`\`\`\n${chunk.join('\n')}\n\`\`\``));
      chunk = [];
      size = 0;
    }
    chunk.push(line);
    size += line.length + 1;
  }
  if (chunk.length) blocks.push(section(`\`\`\`\n${chunk.join('\n')}\n\`\`\``));
  return blocks.length ? blocks : [section('(no help text)')];
}

function plain(text: string, max: number): PlainTextElement {
  return { type: 'plain_text', text: truncate(text.trim() || '-', max), emoji: true };
}

function mrkdwn(text: string, max: number = L.sectionText): MrkdwnElement {
  return { type: 'mrkdwn', text: fitMrkdwn(text.trim() ? text : '-', max) };
}

// ─── Text ────────────────────────────────────────────────────────────────────

const STATUS_EMOJI: Record<RunView['status'], string> = {
  queued: '🕒',
  running: '⏳',
  completed: '✅',
  failed: '❌',
  stopped: '⏹️',
  abandoned: '⚠️',
};

/** Slack needs &, < and > escaped in text; escaped, data can never become a mention or a link. */
export function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** At most `max` UTF-16 units (Slack counts characters; never more than these), ending in "…" when cut, never splitting a surrogate pair. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = Math.max(0, max - 1);
  const code = text.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}

/** Truncates escaped mrkdwn without leaving half an entity or a code fence open. */
function fitMrkdwn(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = truncate(text, max - 4)
    .slice(0, -1)
    .replace(/&[a-z]{0,4}$/, '');
  if ((cut.match(/```/g)?.length ?? 0) % 2 === 1) cut = `${truncate(cut, max - 5).slice(0, -1)}…\n\`\`\``;
  else cut = `${cut}…`;
  return cut;
}

/** Data inside an inline code span: formatting characters in it stay literal. */
function code(text: string, max: number): string {
  const clean = oneLine(text).replace(/`/g, "'");
  return clean ? `\`${esc(truncate(clean, max))}\`` : '-';
}

/** A Slack user id becomes a mention; anything else (console:ana, ana@laptop) is shown as data. */
function who(id: string): string {
  return /^[UW][A-Z0-9]{2,20}$/.test(id) ? `<@${id}>` : code(id, 80);
}

/** Text in a code block of at most `max` characters; a ``` inside cannot close it early. */
function codeBlock(text: string, max: number): string {
  const body = escCode(text);
  const room = max - 8;
  const shown =
    body.length > room ? `${truncate(body, room - 30).replace(/&[a-z]{0,4}…$/, '…')}\n(${text.length.toLocaleString('en-US')} characters, cut)` : body;
  return `\`\`\`\n${shown}\n\`\`\``;
}

function escCode(text: string): string {
  return esc(text).replace(/```/g, '``\u200b`');
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** A timestamp Slack shows in the reader's time zone; the fallback (console, notifications) is UTC. */
function formatTime(iso: string): string {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return esc(truncate(iso, 40));
  const fallback = `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
  return `<!date^${Math.floor(ms / 1000)}^{date_short_pretty} {time_secs}|${fallback}>`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.floor(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/** Metrics arrive as numbers, or as numeric strings when a driver returns bigints as text. */
function numeric(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
  return undefined;
}

function formatNumber(value: number | undefined, signed = false): string {
  if (value === undefined) return '-';
  const text = Number.isInteger(value) ? String(value) : String(Number(value.toFixed(4)));
  return signed && value > 0 ? `+${text}` : text;
}

function clamp(n: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, n));
}
