import type { KnownBlock } from '@slack/types';
import type { CommandResult } from '../../commands/results.ts';
import { oneLine } from '../../lib/one-line.ts';
import { truncate } from '../../lib/truncate.ts';
import { forceButton, forceStartButton } from './buttons.ts';
import { code, context, esc, fields, formatDuration, formatTime, message, type Message, section, who } from './primitives.ts';
import { modeLabel, progressLabel } from './run-lines.ts';

// Why a command was refused, with what the asker can do about it: a Force
// button when another run holds the workflow or the rate limit holds it back.

export function refusedMessage(result: Extract<CommandResult, { kind: 'refused' }>, now: Date, workflowId: number | undefined): Message {
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
