import type { KnownBlock } from '@slack/types';
import { estimateText, planTable, scheduleLine, verdictText, whoamiLines } from '../../commands/plan-text.ts';
import type { PlanView, ScheduleView, WhoamiView } from '../../commands/results.ts';
import { truncate } from '../../lib/truncate.ts';
import { SLACK_LIMITS as L } from '../block-limits.ts';
import { context, esc, header, linesBlocks, type Message, message, section, tableBlocks, who } from './primitives.ts';

// `plan` (a dry run of a batch), `schedules` and `whoami` as messages: the same words as
// the CLI (src/commands/plan-text.ts), people as mentions.

export function planMessage(plan: PlanView, now: Date): Message {
  const [head, ...rows] = planTable(plan);
  const verdict = verdictText(plan, now, who);
  const icon = plan.verdict.start ? '🟢' : '🚫';
  const blocks: KnownBlock[] = [
    header(`Plan: workflow ${plan.workflowId} ${plan.workflowName}`),
    ...tableBlocks('*Work a batch would do now*', head!, rows, 3, 'steps'),
    section(`*Estimate*\n${plan.interactions} interactions; ${esc(estimateText(plan))}`),
    // The verdict is built from data we escape here; the mention in it is ours.
    section(`*Would it start?*\n${icon} ${escapeAllButMentions(verdict)}`),
    context(['A dry run: nothing was started or changed.']),
  ];
  return message(
    truncate(`Plan for workflow ${plan.workflowId}: ${plan.interactions} interactions; ${plan.verdict.start ? 'would start now' : 'would be refused'}`, 300),
    blocks,
  );
}

export function whoamiMessage(w: WhoamiView): Message {
  const lines = whoamiLines(w, who).map(escapeAllButMentions);
  return message(truncate(`You are ${w.actor}: ${w.role ?? 'no role'}`, 300), [section(truncate(lines.join('\n'), L.sectionText - 10))]);
}

/** Escapes text for mrkdwn while keeping the <@U…> mentions `who` put in it. */
function escapeAllButMentions(text: string): string {
  return text
    .split(/(<@[UW][A-Z0-9]{2,20}>)/)
    .map((part, i) => (i % 2 === 1 ? part : esc(part)))
    .join('');
}

export function schedulesMessage(schedules: ScheduleView[], now: Date): Message {
  if (schedules.length === 0) return message('No workflow is scheduled', [section('No workflow is scheduled.')]);
  const lines = schedules.map((s) => `🗓️ ${escapeAllButMentions(scheduleLine(s, now, who))}`);
  return message(`${schedules.length} scheduled workflow${schedules.length === 1 ? '' : 's'}`, [
    header('Schedules'),
    ...linesBlocks(lines, L.messageBlocks - 1, 'schedules'),
  ]);
}
