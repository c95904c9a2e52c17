import type { KnownBlock } from '@slack/types';
import { formatNumber, numeric } from '../../commands/format.ts';
import type { RunView } from '../../commands/results.ts';
import { truncate } from '../../lib/truncate.ts';
import { SLACK_LIMITS as L } from '../block-limits.ts';
import { stopButton } from './buttons.ts';
import { clamp, code, codeBlock, context, esc, fields, formatDuration, formatTime, header, type Message, section, tableBlocks, who } from './primitives.ts';
import { isLive, modeLabel, STATUS_EMOJI, stepRows, workflowLabel } from './run-lines.ts';

// The run's own message: posted when it starts, edited as it progresses
// (src/chat/slack/notifier.ts) and replaced by the audit summary at its end.

/** The run's channel message through its life: progress and Stop while it runs, the audit summary once it has ended. */
export function runMessage(view: RunView, options: { now?: Date } = {}): Message {
  const now = options.now ?? new Date();
  return isLive(view) ? liveRunMessage(view, now) : endedRunMessage(view);
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
  if (view.awaitingOwner) notes.push('its instance shut down: waiting for another instance to take it up');
  const adopted = adoptionNote(view);
  if (adopted) notes.push(adopted);
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
  const adopted = adoptionNote(view);
  if (adopted) notes.push(`${adopted[0]!.toUpperCase()}${adopted.slice(1)}.`);
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

/** The last time another instance took the run up, and why; undefined if it never changed hands. */
export function adoptionNote(view: RunView): string | undefined {
  const last = view.adoptions.at(-1);
  if (!last) return undefined;
  const why = last.reason === 'handoff' ? 'its instance shut down' : 'its owner was lost';
  const times = view.adoptions.length > 1 ? ` (${view.adoptions.length} times in all)` : '';
  return `taken up by another instance (${formatTime(last.at)}) after ${why}${times}`;
}
