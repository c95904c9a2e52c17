import type { CommandResult } from '../../commands/results.ts';
import { DIALOG_CALLBACK_ID, dialogCommand, type DialogValues, runDialog } from '../blocks/dialog.ts';
import type { SlackDeps } from './listeners.ts';

/** Answers the user as a typed command is answered (listeners.ts, reply). */
type Answer = (result: CommandResult, channel: string | undefined) => Promise<void>;

// The run dialog's two halves (src/chat/blocks/dialog.ts): opening it for
// `/workflow` alone or `/workflow run`, and its submission, which becomes a
// typed command and goes through the command service as one.

export { DIALOG_CALLBACK_ID };

/** Whether a slash command's text asks for the dialog rather than naming a command. */
export function wantsDialog(text: string | undefined): boolean {
  return /^\s*(run)?\s*$/i.test(text ?? '');
}

/** Opens the dialog (within 3 s of the command: trigger_id expires). A user who may not run is told so instead. */
export async function openRunDialog(
  deps: SlackDeps,
  command: { user_id: string; user_name?: string; channel_id?: string; trigger_id: string },
  answer: Answer,
): Promise<void> {
  const channel = command.channel_id || undefined;
  const actor = await deps.actors.resolve({ userId: command.user_id, userName: command.user_name, channel });
  const result = await deps.service.execute({ verb: 'workflows' }, actor);
  if (result.kind !== 'workflows' || (actor.roles && !actor.roles.has('operator'))) {
    // Typed, `run` alone would say what is missing; a viewer is told which role a run needs.
    const { result: typed } = await deps.service.handle('run', actor, 'chat');
    return answer(result.kind === 'workflows' ? typed : result, channel);
  }
  const admin = !actor.roles || actor.roles.has('admin');
  await deps.client.views.open({ trigger_id: command.trigger_id, view: runDialog(result.workflows, { admin, channel }) });
}

/** The fields of a view_submission payload this uses. */
export interface ViewSubmissionPayload {
  user: { id: string; username?: string; name?: string };
  view: { callback_id?: string; private_metadata?: string; state?: { values?: DialogValues } };
}

/**
 * A submitted dialog: the errors to show in it (answered in the ack, so
 * Slack keeps the dialog open), or the words of the command, run after the
 * ack as if typed in the channel the dialog was opened from.
 */
export function readSubmission(
  body: ViewSubmissionPayload,
): { errors: Record<string, string>; text?: string; channel?: string } | { text: string; channel?: string } {
  let channel: string | undefined;
  try {
    const meta = JSON.parse(body.view.private_metadata ?? '{}') as { channel?: unknown };
    if (typeof meta.channel === 'string' && /^[CGD][A-Z0-9]{2,}$/.test(meta.channel)) channel = meta.channel;
  } catch {
    // Not ours to trust: the run reports to the notify channel instead.
  }
  return { ...dialogCommand(body.view.state?.values ?? {}), channel };
}

/** Runs a submitted dialog's command as its user, and answers as a typed command is answered. */
export async function handleSubmission(deps: SlackDeps, body: ViewSubmissionPayload, text: string, channel: string | undefined, answer: Answer): Promise<void> {
  let result: CommandResult;
  try {
    const actor = await deps.actors.resolve({ userId: body.user.id, userName: body.user.username ?? body.user.name, channel });
    ({ result } = await deps.service.handle(text, actor, 'chat'));
  } catch (error) {
    deps.log.error({ err: error, user: body.user.id }, 'run dialog failed');
    result = { kind: 'done', message: `Sorry, that failed on our side (${(error as Error).message.slice(0, 300)}).` };
  }
  await answer(result, channel);
}
