import { statusWords } from '../../commands/format.ts';
import { inOrder, type RunView } from '../../commands/results.ts';
import { isActive } from '../../db/run-states.ts';
import { runEta } from '../../engine/estimates.ts';
import { spanText } from '../../lib/relative-time.ts';
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

/** Per step, in the workflow's declared order. */
export function stepRows(view: RunView): StepRow[] {
  const expected = view.expectedWork ?? {};
  const progress = view.progress ?? {};
  const steps = inOrder(view.steps ?? [], [...Object.keys(expected), ...Object.keys(progress)]);
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
  const progress = isLive(run) && run.progress ? ` — ${esc(truncate(progressLabel(run, now), 300))}` : '';
  const counts = !isLive(run) ? ` · ${run.interactionsCompleted} done, ${run.interactionsFailed} failed` : '';
  return `${STATUS_EMOJI[run.status]} *#${run.id}* ${statusWords(run, who)} · workflow ${workflowLabel(run)} · ${modeLabel(run)} · by ${who(run.requestedBy)} · ${when}${took ? ` · ${took}` : ''}${counts}${progress}`;
}

/** Plain text (it also goes in confirm dialogs): the share done and time left, then each step's counts. */
export function progressLabel(run: RunView, now: Date = new Date()): string {
  const rows = stepRows(run);
  const eta = etaLabel(run, now);
  if (!run.progress || rows.every((r) => r.done + r.failed === 0)) return eta ? `just started · ${eta}` : 'just started';
  const steps = rows
    .filter((r) => r.done + r.failed > 0 || (r.expected ?? 0) > 0)
    .map((r) => `${r.step} ${r.done} done${r.failed ? `, ${r.failed} failed` : ''}${r.expected !== undefined ? ` of ${r.expected} expected` : ''}`)
    .join('; ');
  return eta ? `${eta} — ${steps}` : steps;
}

/** "42% · about 1 min 05 s left": the run's own pace once it has one, past runs' before; empty when neither is known. */
export function etaLabel(run: RunView, now: Date): string {
  const elapsed = run.startedAt ? (now.getTime() - Date.parse(run.startedAt)) / 1000 : 0;
  const eta = runEta({ forecast: run.expectedWork, progress: run.progress, elapsedSeconds: elapsed, history: run.history ?? null });
  const parts: string[] = [];
  if (eta.percent !== null) parts.push(`${Math.floor(eta.percent)}%`);
  if (eta.seconds !== null && eta.seconds > 0) parts.push(`about ${spanText(eta.seconds)} left${eta.basis === 'history' ? ' (from past runs)' : ''}`);
  return parts.join(' · ');
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
