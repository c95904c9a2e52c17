import type { RunView } from '../../commands/results.ts';
import { isActive } from '../../db/run-states.ts';
import { truncate } from '../../lib/truncate.ts';
import { code, esc, formatDuration, formatTime, who } from './primitives.ts';

// A run as short mrkdwn text: the status emoji, one line per run, its
// progress, workflow and mode, as every message family shows them.

export const STATUS_EMOJI: Record<RunView['status'], string> = {
  queued: '🕒',
  running: '⏳',
  completed: '✅',
  failed: '❌',
  stopped: '⏹️',
  abandoned: '⚠️',
};

export function isLive(view: RunView): boolean {
  return isActive(view.status);
}

export interface StepRow {
  step: string;
  expected: number | undefined;
  done: number;
  failed: number;
  running: number;
}

export function stepRows(view: RunView): StepRow[] {
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

/** One run as one mrkdwn line (of bounded length). */
export function runLine(run: RunView, now: Date): string {
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

export function progressLabel(run: RunView): string {
  const rows = stepRows(run);
  if (!run.progress || rows.every((r) => r.done + r.failed === 0)) return 'just started';
  return rows
    .filter((r) => r.done + r.failed > 0 || (r.expected ?? 0) > 0)
    .map((r) => `${r.step} ${r.done} done${r.failed ? `, ${r.failed} failed` : ''}${r.expected !== undefined ? ` of ${r.expected} expected` : ''}`)
    .join('; ');
}

export function workflowLabel(run: RunView): string {
  return `${run.workflowId}${run.workflowName ? ` ${code(run.workflowName, 80)}` : ''}`;
}

export function modeLabel(run: RunView): string {
  const parts: string[] = [run.mode];
  if (run.subjectId !== null) parts.push(`subject ${run.subjectId}`);
  if (run.resumesRunId !== null) parts.push(`resuming #${run.resumesRunId}`);
  if (run.action === 'force') parts.push('forced');
  return parts.join(' · ');
}
