import type { KnownBlock } from '@slack/types';
import { formatDelta, formatNumber, metricChanges, numeric, statusWords } from '../../commands/format.ts';
import type { RunView } from '../../commands/results.ts';
import { truncate } from '../../lib/truncate.ts';
import { SLACK_LIMITS as L } from '../block-limits.ts';
import { stopButton } from './buttons.ts';
import type { FailedItem } from '../../engine/store.ts';
import { runEta } from '../../engine/estimates.ts';
import { oneLine } from '../../lib/one-line.ts';
import { personLabel } from '../../lib/person.ts';
import {
  clamp,
  code,
  codeBlock,
  context,
  esc,
  fields,
  formatDuration,
  formatTime,
  header,
  linesBlocks,
  type Message,
  runNames,
  section,
  tableBlocks,
  who,
} from './primitives.ts';
import { etaLabel, isLive, modeLabel, STATUS_EMOJI, stepRows, workflowLabel } from './run-lines.ts';

// The run's own message: posted when it starts, edited as it progresses
// (src/chat/slack/notifier.ts) and replaced by the audit summary at its end.

/** The run's channel message through its life: progress and Stop while it runs, the audit summary once it has ended. */
export function runMessage(view: RunView, options: { now?: Date } = {}): Message {
  const now = options.now ?? new Date();
  const message = isLive(view) ? liveRunMessage(view, now) : endedRunMessage(view);
  const names = runNames(view);
  return names ? { ...message, names } : message;
}

function title(view: RunView): string {
  return `Run #${view.id} ${statusWords(view, personLabel)} — workflow ${view.workflowId}${view.workflowName ? ` ${view.workflowName}` : ''}`;
}

function liveRunMessage(view: RunView, now: Date): Message {
  const eta = etaLabel(view, now);
  const blocks: KnownBlock[] = [
    header(`${STATUS_EMOJI[view.status]} ${title(view)}`),
    fields([
      `*Workflow*\n${workflowLabel(view)}`,
      `*Mode*\n${modeLabel(view)}`,
      `*Requested by*\n${who(view.requestedBy)} via ${code(view.source, 40)}`,
      `*Elapsed*\n${view.startedAt ? formatDuration((now.getTime() - Date.parse(view.startedAt)) / 1000) : 'not started yet'}`,
      ...(eta ? [`*Progress*\n${esc(eta)}`] : []),
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
    header(`${STATUS_EMOJI[view.status]} ${title(view)}`),
    fields([
      `*Status*\n${statusWords(view, who)}`,
      `*Duration*\n${view.durationSeconds !== null ? formatDuration(view.durationSeconds) : '-'}`,
      `*Interactions*\n${view.interactionsCompleted} done, ${view.interactionsFailed} failed`,
      `*Workflow*\n${workflowLabel(view)}`,
      `*Mode*\n${modeLabel(view)}`,
      `*Requested by*\n${who(view.requestedBy)} via ${code(view.source, 40)}`,
    ]),
  ];
  const notes: string[] = [];
  if (view.status === 'completed' && view.interactionsCompleted + view.interactionsFailed === 0) notes.push('No pending work: nothing to do.');
  if (view.takenOverByRunId !== null) notes.push(`Replaced by run #${view.takenOverByRunId}, which carries on with the unfinished work.`);
  else if (view.stopRequestedBy && view.status !== 'stopped') notes.push(`Stop requested by ${who(view.stopRequestedBy)}.`);
  if (view.forcedBy) notes.push(`Forced by ${who(view.forcedBy)}${view.forcedRunId ? ` over run #${view.forcedRunId}` : ''}.`);
  const adopted = adoptionNote(view);
  if (adopted) notes.push(`${adopted[0]!.toUpperCase()}${adopted.slice(1)}.`);
  if (view.interactionsFailed > 0)
    notes.push(`${view.interactionsFailed} failed: the first ${Math.min(10, view.interactionsFailed)} are listed in the thread.`);
  if (notes.length) blocks.push(section(notes.join('\n')));
  if (view.error) blocks.push(section(`*${view.endedReason === 'refused' ? 'Refused' : 'Error'}*\n${codeBlock(view.error, L.sectionText - 20)}`));
  const times = [view.startedAt ? `started ${formatTime(view.startedAt)}` : '', view.endedAt ? `ended ${formatTime(view.endedAt)}` : ''].filter(Boolean);
  const room = L.messageBlocks - blocks.length - (times.length ? 1 : 0);
  if (view.stateBefore || view.stateAfter) blocks.push(...metricsBlocks(view, room));
  if (times.length) blocks.push(context(times));
  return { text: runSummaryLine(view), blocks, ephemeral: false };
}

/**
 * One line that says where a run stands, without the clock: the console
 * prints it again only when it changes, and it is the message's fallback
 * text, so the notification of a finished run carries its delta.
 */
export function runSummaryLine(view: RunView): string {
  const name = `Run #${view.id} (workflow ${view.workflowId}${view.workflowName ? ` ${truncate(view.workflowName, 60)}` : ''})`;
  if (isLive(view)) {
    const steps = stepRows(view).map((r) => `${r.step} ${r.done}${r.expected !== undefined ? `/${r.expected}` : ''}${r.failed ? ` (${r.failed} failed)` : ''}`);
    const percent = runEta({ forecast: view.expectedWork, progress: view.progress, elapsedSeconds: 0, history: null }).percent;
    const share = percent !== null && view.progress ? ` ${Math.floor(percent)}%` : '';
    const last = view.adoptions.at(-1);
    const why = last?.reason === 'handoff' ? 'its instance shut down' : 'its owner was lost';
    const owner = view.awaitingOwner ? ', waiting for an instance' : last ? `, taken up by another instance after ${why}` : '';
    return truncate(
      `${STATUS_EMOJI[view.status]} ${name} ${statusWords(view, personLabel)}${owner}${share}: ${steps.length ? steps.join(', ') : 'starting'}`,
      300,
    );
  }
  const duration = view.durationSeconds !== null ? ` in ${formatDuration(view.durationSeconds)}` : '';
  const change = view.delta ? ` · Δ ${formatDelta(view.delta, view.metricNames)}` : '';
  return truncate(
    `${STATUS_EMOJI[view.status]} ${name} ${statusWords(view, personLabel)}${duration}: ${view.interactionsCompleted} done, ${view.interactionsFailed} failed${change}`,
    300,
  );
}

/** The thread reply under a finished run's message: its first failed subjects with their errors. */
export function failuresMessage(view: RunView, failures: readonly FailedItem[]): Message {
  const shown = failures.length;
  const more = view.interactionsFailed - shown;
  const lines = failures.map((f) => `• ${esc(truncate(f.step, 60))} · subject ${f.subjectId}: ${code(oneLine(f.error ?? 'no error recorded'), 250)}`);
  return {
    text: truncate(`Run #${view.id}: ${view.interactionsFailed} failed item${view.interactionsFailed === 1 ? '' : 's'}`, 300),
    blocks: [
      section(
        `*Run #${view.id}: ${view.interactionsFailed} failed item${view.interactionsFailed === 1 ? '' : 's'}*${shown < view.interactionsFailed ? ` (the first ${shown})` : ''}`,
      ),
      ...linesBlocks(lines, 8, 'failures'),
      context([`${more > 0 ? `…and ${more} more. ` : ''}They are pending again for the next run; \`status ${view.id}\` has the audit record.`]),
    ],
    ephemeral: false,
  };
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

/** The metrics the run changed, before → after with their delta, then the unchanged ones folded into one line. */
function metricsBlocks(view: RunView, maxBlocks: number): KnownBlock[] {
  const before = view.stateBefore ?? {};
  const after = view.stateAfter ?? {};
  const { changed, unchanged } = metricChanges(view);
  if (changed.length + unchanged.length === 0 || maxBlocks < 1) return [];
  const blocks: KnownBlock[] = [];
  if (changed.length) {
    const width = clamp(Math.max(6, ...changed.map((n) => n.length)), 6, 32);
    const head = `${'metric'.padEnd(width)} ${'before'.padStart(10)} ${'after'.padStart(10)} ${'delta'.padStart(10)}`;
    const lines = changed.map((name) => {
      const b = numeric(before[name]);
      const a = numeric(after[name]);
      const d = numeric(view.delta?.[name]) ?? (a !== undefined && b !== undefined ? a - b : undefined);
      const cells = `${formatNumber(b).padStart(10)} ${formatNumber(a).padStart(10)} ${formatNumber(d, true).padStart(10)}`;
      // A long name gets a line of its own, so the numbers stay in their columns and every name stays whole.
      return name.length > width ? `${truncate(name, 300)}\n${''.padEnd(width)} ${cells}` : `${name.padEnd(width)} ${cells}`;
    });
    blocks.push(...tableBlocks('*Changed*', head, lines, maxBlocks - (unchanged.length ? 1 : 0), 'metrics'));
  }
  if (unchanged.length) {
    const values = unchanged.map((name) => `${name} ${formatNumber(numeric(after[name]) ?? numeric(before[name]))}`);
    blocks.push(context([`Unchanged (${unchanged.length}): ${esc(truncate(values.join(', '), L.contextText - 40))}`]));
  }
  return blocks;
}

/** The last time another instance took the run up, and why; undefined if it never changed hands. */
export function adoptionNote(view: RunView): string | undefined {
  const last = view.adoptions.at(-1);
  if (!last) return undefined;
  const why = last.reason === 'handoff' ? 'its instance shut down' : 'its owner was lost';
  const times = view.adoptions.length > 1 ? ` (${view.adoptions.length} times in all)` : '';
  return `taken up by another instance (${formatTime(last.at)}) after ${why}${times}`;
}
