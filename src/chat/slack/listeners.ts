import { createHash } from 'node:crypto';
import type { App } from '@slack/bolt';
import type { HomeView, ModalView } from '@slack/types';
import type { CommandResult, RunView } from '../../commands/results.ts';
import type { ButtonAction, CommandService } from '../../commands/service.ts';
import type { Logger } from '../../log.ts';
import { buttonAction, namedTargets } from '../blocks/buttons.ts';
import { homeView } from '../blocks/home.ts';
import { resultMessage } from '../blocks/result.ts';
import { actorId, type ActorResolver } from './actor.ts';
import { DIALOG_CALLBACK_ID, handleSubmission, openRunDialog, readSubmission, type ViewSubmissionPayload, wantsDialog } from './dialog.ts';

// Slack in, command service out. The Bolt listeners only acknowledge and hand
// the payload to the plain functions below, which tests can call directly.

/** The Web API methods the listeners use (the Bolt app's client has them all). */
export interface ReplyClient {
  chat: {
    postEphemeral(args: { channel: string; user: string; text: string; blocks?: unknown[] }): Promise<unknown>;
    postMessage(args: { channel: string; text: string; blocks?: unknown[] }): Promise<unknown>;
  };
  views: { publish(args: { user_id: string; view: HomeView }): Promise<unknown>; open(args: { trigger_id: string; view: ModalView }): Promise<unknown> };
}

export interface SlackDeps {
  service: CommandService;
  actors: ActorResolver;
  client: ReplyClient;
  log: Logger;
}

/** Posts to a slash command's or button's response_url (ephemeral by default). */
export type Respond = (message: {
  text: string;
  blocks?: unknown[];
  response_type?: 'ephemeral' | 'in_channel';
  replace_original?: boolean;
}) => Promise<unknown>;

/** The fields of a slash command payload this uses. */
export interface SlashCommandPayload {
  text?: string;
  user_id: string;
  user_name?: string;
  channel_id?: string;
  /** Unique to each time a user types the command; a delivery of it again carries the same. */
  trigger_id?: string;
}

/** The fields of a block_actions payload this uses. */
export interface BlockActionsPayload {
  user: { id: string; username?: string; name?: string };
  channel?: { id: string };
  container?: { type?: string; message_ts?: string; channel_id?: string };
  message?: { ts?: string };
  actions: { action_id: string; value?: string; action_ts?: string }[];
}

/** `/workflow <text>`, after the ack: run it as the user who typed it and answer them. */
export async function handleSlashCommand(deps: SlackDeps, command: SlashCommandPayload, respond?: Respond): Promise<void> {
  const channel = command.channel_id || undefined;
  let result: CommandResult;
  try {
    const actor = await deps.actors.resolve({ userId: command.user_id, userName: command.user_name, channel });
    ({ result } = await deps.service.handle(command.text ?? '', actor, 'chat', { once: deliveryKey(command) }));
  } catch (error) {
    deps.log.error({ err: error, user: command.user_id }, 'slash command failed');
    result = failure(error);
  }
  await reply(deps, { user: command.user_id, channel, respond }, result);
}

/**
 * A button click. The key names the target (the run, or the refusal message
 * for a force start), so a double click, a retried delivery or a click on a
 * stale message acts at most once: the service claims the key.
 */
export async function handleButton(deps: SlackDeps, body: BlockActionsPayload, respond?: Respond): Promise<void> {
  const clicked = body.actions[0];
  if (!clicked) return;
  const action = buttonAction(clicked.action_id, clicked.value ?? '');
  const channel = body.channel?.id ?? body.container?.channel_id;
  const where = { user: body.user.id, channel, respond };
  if (!action) {
    deps.log.warn({ actionId: clicked.action_id }, 'button with an unreadable value');
    // Only Slack can sign a click, so a value that is not one this app wrote is worth a trace.
    const named = namedTargets(clicked.value ?? '');
    await deps.service
      .reject(
        { id: actorId({ userId: body.user.id, userName: body.user.username ?? body.user.name }), source: 'slack', channel },
        {
          action: `button:${String(clicked.action_id).slice(0, 60)}`,
          outcome: 'invalid',
          reason: 'a button this app did not write (unknown action, or a value edited or from another version)',
          ...named,
          details: { value: String(clicked.value ?? '').slice(0, 200) },
        },
      )
      .catch((error: unknown) => deps.log.error({ err: error }, 'could not audit an unreadable button'));
    await reply(deps, where, {
      kind: 'done',
      message: 'That button could not be read (it may come from an older version of this app). Use `/workflow list` instead.',
    });
    return;
  }
  let result: CommandResult;
  try {
    const actor = await deps.actors.resolve({ userId: body.user.id, userName: body.user.username ?? body.user.name, channel });
    result = await deps.service.press(action, actor, actionKey(action, body));
  } catch (error) {
    deps.log.error({ err: error, user: body.user.id, action }, 'button failed');
    result = failure(error);
  }
  // What a click did is told to the one who clicked; the run's message shows the rest.
  await reply(deps, where, result, { ephemeral: true });
  // A click on the App Home tab: show it as it is now.
  if (body.container?.type === 'view') await publishHome(deps, { userId: body.user.id, userName: body.user.username ?? body.user.name });
}

/**
 * What names one delivery of a slash command: Slack's trigger_id, unique to
 * each time a user types it; for a payload without one, a hash of the
 * payload. A request captured and posted again within the five minutes its
 * signature holds carries the same.
 */
export function deliveryKey(command: SlashCommandPayload): string {
  const identity = command.trigger_id ? `trigger:${command.trigger_id}` : `payload:${JSON.stringify(command)}`;
  return `command:${createHash('sha256').update(identity).digest('hex')}`;
}

/** What identifies a click's target: the service acts at most once per key. */
export function actionKey(action: ButtonAction, body: Pick<BlockActionsPayload, 'container' | 'message' | 'actions'> & { user?: { id: string } }): string {
  switch (action.type) {
    case 'stop':
      return `stop:${action.runId}`;
    case 'force':
      return `force:${action.runId}`;
    case 'force_start': {
      const ts = body.container?.message_ts ?? body.message?.ts ?? body.actions[0]?.action_ts ?? 'unknown';
      return `force_start:${action.workflowId}:${ts}`;
    }
    // Per clicker: one admin's refused click leaves the buttons to the others; the decision itself is one UPDATE of a pending row.
    case 'force_approve':
    case 'force_reject':
      return `force_request:${action.requestId}:${body.user?.id ?? 'unknown'}`;
  }
}

/** The App Home tab: running runs (with Stop buttons) and the last ten runs. */
export async function publishHome(deps: SlackDeps, user: { userId: string; userName?: string }): Promise<void> {
  const actor = await deps.actors.resolve({ userId: user.userId, userName: user.userName });
  let running: RunView[] = [];
  let recent: RunView[] = [];
  // Opening a tab is not a request: without the viewer role, show nothing rather than audit a refusal.
  if (actor.roles?.has('viewer') !== false) {
    const list = await deps.service.execute({ verb: 'list' }, actor);
    const history = await deps.service.execute({ verb: 'history', limit: 10 }, actor);
    if (list.kind === 'runs') running = list.runs;
    if (history.kind === 'history') recent = history.runs;
  }
  await deps.client.views.publish({ user_id: user.userId, view: homeView(running, recent) });
}

/**
 * Answers the user: ephemeral for refusals, help, errors and read-only
 * results; a started run is announced in the channel by the notifier.
 * Where the bot cannot post (a channel it is not in), the response_url answers.
 */
export async function reply(
  deps: SlackDeps,
  where: { user: string; channel?: string; respond?: Respond },
  result: CommandResult,
  options: { ephemeral?: boolean } = {},
): Promise<void> {
  const rendered = resultMessage(result);
  const message = options.ephemeral ? { ...rendered, ephemeral: true } : rendered;
  if (result.kind === 'run_started' && where.channel) return;
  const blocks = message.blocks as unknown[];
  try {
    if (!where.channel) await deps.client.chat.postMessage({ channel: where.user, text: message.text, blocks });
    else if (message.ephemeral) await deps.client.chat.postEphemeral({ channel: where.channel, user: where.user, text: message.text, blocks });
    else await deps.client.chat.postMessage({ channel: where.channel, text: message.text, blocks });
  } catch (error) {
    if (!where.respond) throw error;
    deps.log.warn({ err: error, channel: where.channel }, 'could not post the reply; answering through the response_url');
    await where.respond({ text: message.text, blocks, response_type: message.ephemeral ? 'ephemeral' : 'in_channel', replace_original: false });
  }
}

function failure(error: unknown): CommandResult {
  const detail = error instanceof Error ? error.message : String(error);
  return { kind: 'done', message: `Sorry, that failed on our side (${detail.slice(0, 300)}). It has been logged; try again in a moment.` };
}

/** Wires the functions above to a Bolt app. Each listener acks first, with no work before it. */
export function registerListeners(app: App, deps: SlackDeps, command = '/workflow'): void {
  app.command(command, async ({ ack, command: payload, respond }) => {
    await ack();
    // `/workflow` alone or `/workflow run`: the run dialog (src/chat/slack/dialog.ts).
    const work =
      wantsDialog(payload.text) && payload.trigger_id
        ? openRunDialog(deps, payload, (result, channel) => reply(deps, { user: payload.user_id, channel, respond: respond as Respond }, result))
        : handleSlashCommand(deps, payload, respond as Respond);
    await work.catch((error: unknown) => deps.log.error({ err: error }, 'slash command reply failed'));
  });

  // The run dialog's submission: errors are answered in the ack (the dialog stays open); a command runs after it.
  app.view(DIALOG_CALLBACK_ID, async ({ ack, body }) => {
    const submitted = readSubmission(body as unknown as ViewSubmissionPayload);
    if ('errors' in submitted) {
      await ack({ response_action: 'errors', errors: submitted.errors });
      // Refused like a malformed typed command: shown in the dialog, and audited.
      const user = (body as unknown as ViewSubmissionPayload).user;
      await deps.service
        .reject(
          { id: actorId({ userId: user.id, userName: user.username ?? user.name }), source: 'slack', channel: submitted.channel },
          { action: 'dialog:run', outcome: 'invalid', reason: Object.values(submitted.errors).join(' '), details: { errors: submitted.errors } },
        )
        .catch((error: unknown) => deps.log.error({ err: error }, 'could not audit an invalid dialog submission'));
      return;
    }
    await ack();
    await handleSubmission(deps, body as unknown as ViewSubmissionPayload, submitted.text, submitted.channel, (result, channel) =>
      reply(deps, { user: body.user.id, channel }, result),
    ).catch((error: unknown) => deps.log.error({ err: error }, 'run dialog reply failed'));
  });

  // Every block action, ours or not: one this app did not write is answered and audited, not left unacknowledged.
  app.action({ type: 'block_actions' }, async ({ ack, body, respond }) => {
    await ack();
    await handleButton(deps, body as unknown as BlockActionsPayload, respond as Respond).catch((error: unknown) =>
      deps.log.error({ err: error }, 'button reply failed'),
    );
  });

  app.event('app_home_opened', async ({ event }) => {
    if (event.tab !== undefined && event.tab !== 'home') return;
    await publishHome(deps, { userId: event.user }).catch((error: unknown) => deps.log.error({ err: error }, 'App Home publish failed'));
  });
}
