import type { KnownBlock } from '@slack/types';
import { formatDelta, formatWork } from '../../commands/format.ts';
import type { RunView, WorkflowView } from '../../commands/results.ts';
import { truncate } from '../../lib/truncate.ts';
import { SLACK_LIMITS as L } from '../block-limits.ts';
import { runWithStop } from './buttons.ts';
import { code, context, esc, header, linesBlocks, message, type Message, section } from './primitives.ts';
import { runLine } from './run-lines.ts';

// Queries that list: running runs, recent history, the workflows. Each list
// is cut with "…and N more" rather than exceed a message's 50 blocks.

export function runsMessage(runs: RunView[], now: Date): Message {
  if (runs.length === 0) return message('No runs are running', [section('No runs are running.')]);
  const max = L.messageBlocks - 2;
  const blocks: KnownBlock[] = [header(`Running runs (${runs.length})`)];
  for (const run of runs.slice(0, max)) blocks.push(runWithStop(run, now));
  if (runs.length > max) blocks.push(context([`…and ${runs.length - max} more running`]));
  return message(`${runs.length} run${runs.length === 1 ? '' : 's'} running`, blocks);
}

export function historyMessage(runs: RunView[], now: Date): Message {
  if (runs.length === 0) return message('No runs yet', [section('No runs yet.')]);
  const lines = runs.map((r) => `${runLine(r, now)}${r.delta ? `\n      Δ ${esc(truncate(formatDelta(r.delta), 400))}` : ''}`);
  return message(`${runs.length} recent run${runs.length === 1 ? '' : 's'}`, [header('Recent runs'), ...linesBlocks(lines, L.messageBlocks - 1, 'runs')]);
}

export function workflowsMessage(workflows: WorkflowView[]): Message {
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
