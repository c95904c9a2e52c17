import type { KnownBlock } from '@slack/types';
import type { ForceRequestView } from '../../commands/results.ts';
import { approveButton, rejectButton } from './buttons.ts';
import { context, esc, formatTime, message, type Message, namesOf, section, who } from './primitives.ts';

// A force request (two-person approval) as the channel sees it: posted with
// Approve and Reject while pending, and replaced by its outcome once it is
// approved, rejected or expired, so a stale message offers no buttons.

export function forceRequestMessage(request: ForceRequestView): Message {
  const workflow = `workflow ${request.workflowId}${request.workflowName ? ` ${esc(request.workflowName)}` : ''}`;
  const what = `${workflow}, ${request.mode}${request.subjectId !== null ? ` subject ${request.subjectId}` : ''}${request.resumeRunId !== null ? ` resuming run #${request.resumeRunId}` : ''}`;
  const blocks: KnownBlock[] = [];
  let text: string;
  switch (request.status) {
    case 'pending':
      text = `Force request #${request.id} (${workflow}) needs another admin's approval`;
      blocks.push(
        section(
          `🔐 *Force request #${request.id}*: ${who(request.requestedBy)} asks to force ${what}. Another admin must approve it before ${formatTime(request.expiresAt)}.`,
        ),
        { type: 'actions', block_id: 'force_request', elements: [approveButton(request), rejectButton(request)] },
        context([`Or type \`/workflow force --approve ${request.id}\` (or \`--reject\`); the requester cannot approve their own.`]),
      );
      break;
    case 'approved':
      text = `Force request #${request.id} (${workflow}) approved${request.runId ? `: run #${request.runId}` : ''}`;
      blocks.push(
        section(
          `✅ *Force request #${request.id}* approved by ${who(request.decidedBy ?? 'someone')}: ${what} forced${request.runId ? ` as run #${request.runId}` : ''}. Requested by ${who(request.requestedBy)}.`,
        ),
      );
      break;
    case 'rejected':
      text = `Force request #${request.id} (${workflow}) rejected; nothing was forced`;
      blocks.push(
        section(
          `🚫 *Force request #${request.id}* rejected by ${who(request.decidedBy ?? 'someone')}: nothing was forced. Requested by ${who(request.requestedBy)}.`,
        ),
      );
      break;
    case 'expired':
      text = `Force request #${request.id} (${workflow}) expired; nothing was forced`;
      blocks.push(
        section(
          `⌛ *Force request #${request.id}* expired at ${formatTime(request.expiresAt)} without an approval: nothing was forced. Requested by ${who(request.requestedBy)}.`,
        ),
      );
      break;
  }
  const names = namesOf([request.requestedBy, request.decidedBy]);
  return { ...message(text, blocks, false), ...(names ? { names } : {}) };
}
