import type { CommandResult } from '../../commands/results.ts';
import { oneLine } from '../../lib/one-line.ts';
import { truncate } from '../../lib/truncate.ts';
import { SLACK_LIMITS as L } from '../block-limits.ts';
import { healthMessage } from './health.ts';
import { historyMessage, runsMessage, workflowsMessage } from './lists.ts';
import { planMessage, schedulesMessage, whoamiMessage } from './plan.ts';
import { codeBlock, context, esc, message, type Message, namesOf, section, textBlocks, who } from './primitives.ts';
import { refusedMessage } from './refusals.ts';
import { runMessage } from './run.ts';
import { modeLabel, runLine, STATUS_EMOJI, workflowLabel } from './run-lines.ts';

// Block Kit messages as plain functions of data: the Slack app posts them and
// the console prints them (../plain-text.ts), so both surfaces say the same.
// Each command result goes to its family's builder here; the short replies
// (errors, help, a stop's outcome) are built in place.

/**
 * Every command result as a message. Refusals, errors, help and queries are
 * ephemeral (only the asker sees them); what changes a run (started, queued,
 * stopped) is posted for the channel.
 * `workflowId` names the workflow of a rate-limit refusal, whose result does
 * not carry it; without it, it is read from the refusal's message.
 */
export function resultMessage(result: CommandResult, options: { now?: Date; workflowId?: number } = {}): Message {
  const built = build(result, options.now ?? new Date(), options.workflowId);
  const names = { ...built.names, ...namesOf(peopleIn(result)) };
  return Object.keys(names).length ? { ...built, names } : built;
}

/** Everyone a result may name, so a terminal can show their names for the mentions (Message.names). */
function peopleIn(result: CommandResult): string[] {
  const views = (() => {
    switch (result.kind) {
      case 'run_started':
      case 'run_queued':
        return [result.view];
      case 'run':
      case 'stop':
        return [result.run];
      case 'runs':
      case 'history':
        return result.runs;
      case 'refused':
        return result.running ? [result.running] : [];
      case 'plan':
        return result.plan.verdict.start || result.plan.verdict.reason !== 'duplicate' ? [] : [result.plan.verdict.running];
      default:
        return [];
    }
  })();
  const people = views.flatMap((v) => [v.requestedBy, v.stopRequestedBy, v.stoppedBy, v.forcedBy].filter((p): p is string => p !== null));
  if (result.kind === 'whoami') people.push(result.whoami.actor);
  if (result.kind === 'force_request') people.push(result.request.requestedBy, ...(result.request.decidedBy ? [result.request.decidedBy] : []));
  return people;
}

function build(result: CommandResult, now: Date, workflowId: number | undefined): Message {
  const options = { workflowId };
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
      return healthMessage(result.report, result.limited, now);
    case 'plan':
      return planMessage(result.plan, now);
    case 'whoami':
      return whoamiMessage(result.whoami);
    case 'schedules':
      return schedulesMessage(result.schedules, now);
    // What the asker is told; the request's own message, with its buttons, is posted for the channel (forceRequestMessage).
    case 'force_request':
      return message(truncate(oneLine(result.message), 200), [
        section(`${result.outcome === 'filed' ? '🔐' : 'ℹ️'} ${esc(truncate(result.message, 2_000))}`),
        context([`Force request #${result.request.id}: ${result.request.status}${result.request.decidedBy ? ` by ${who(result.request.decidedBy)}` : ''}`]),
      ]);
  }
}
