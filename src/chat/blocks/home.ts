import type { HomeView, KnownBlock } from '@slack/types';
import { formatDelta } from '../../commands/format.ts';
import type { RunView } from '../../commands/results.ts';
import { truncate } from '../../lib/truncate.ts';
import { runWithStop } from './buttons.ts';
import { context, esc, header, section } from './primitives.ts';
import { runLine } from './run-lines.ts';

// The App Home tab: a view, not a message, so it has 100 blocks, not 50.

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
