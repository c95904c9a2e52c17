// Requests signed exactly as Slack signs them
// (https://api.slack.com/authentication/verifying-requests-from-slack):
// `v0=` + hex HMAC-SHA256 of `v0:<timestamp>:<raw body>` with the signing
// secret, in `x-slack-signature`, the Unix timestamp in
// `x-slack-request-timestamp`. Slash commands are form-encoded fields;
// interactivity is one form field, `payload`, holding JSON; events are JSON.
import { createHmac, randomBytes } from 'node:crypto';

let triggers = 0;
/** Unique per request, as Slack's are (the app acts once per trigger_id). */
function triggerId(): string {
  return `${Date.now()}.${++triggers}.${randomBytes(8).toString('hex')}`;
}

export function slackSignature(secret: string, timestamp: number, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}

export interface SignedRequest {
  body: string;
  headers: Record<string, string>;
}

export function signed(
  secret: string,
  body: string,
  contentType: string,
  options: { timestamp?: number; headers?: Record<string, string> } = {},
): SignedRequest {
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  return {
    body,
    headers: {
      'content-type': contentType,
      'x-slack-request-timestamp': String(timestamp),
      'x-slack-signature': slackSignature(secret, timestamp, body),
      ...options.headers,
    },
  };
}

export interface SlashCommand {
  text: string;
  user_id: string;
  user_name?: string;
  channel_id?: string;
  command?: string;
  response_url?: string;
  /** The workspace it comes from (T0TEST unless said), and its organisation. */
  team_id?: string;
  enterprise_id?: string;
}

/** The form body Slack posts for a slash command. */
export function slashCommandBody(command: SlashCommand): string {
  return new URLSearchParams({
    token: 'verification-token-unused',
    team_id: command.team_id ?? 'T0TEST',
    team_domain: 'test',
    ...(command.enterprise_id ? { enterprise_id: command.enterprise_id } : {}),
    channel_id: command.channel_id ?? 'C0GENERAL',
    channel_name: 'general',
    user_id: command.user_id,
    user_name: command.user_name ?? command.user_id.toLowerCase(),
    command: command.command ?? '/workflow',
    text: command.text,
    api_app_id: 'A0TEST',
    is_enterprise_install: 'false',
    response_url: command.response_url ?? 'https://hooks.slack.com/commands/T0TEST/1/unused',
    trigger_id: triggerId(),
  }).toString();
}

export interface ButtonClick {
  user_id: string;
  user_name?: string;
  channel_id?: string;
  /** ts of the message the button is on. */
  message_ts: string;
  action_id: string;
  value: string;
  ephemeral?: boolean;
  /** A click on the App Home tab (no channel). */
  home?: boolean;
  response_url?: string;
  /** The clicking user's workspace (T0TEST unless said). */
  team_id?: string;
}

/** The block_actions payload Slack posts for a button click. */
export function blockActionsPayload(click: ButtonClick): Record<string, unknown> {
  const actionTs = `${(Date.now() / 1000).toFixed(6)}`;
  const container = click.home
    ? { type: 'view', view_id: 'V0HOME' }
    : { type: 'message', message_ts: click.message_ts, channel_id: click.channel_id ?? 'C0GENERAL', is_ephemeral: click.ephemeral ?? false };
  return {
    type: 'block_actions',
    user: {
      id: click.user_id,
      username: click.user_name ?? click.user_id.toLowerCase(),
      name: click.user_name ?? click.user_id.toLowerCase(),
      team_id: click.team_id ?? 'T0TEST',
    },
    api_app_id: 'A0TEST',
    token: 'verification-token-unused',
    container,
    trigger_id: triggerId(),
    team: { id: 'T0TEST', domain: 'test' },
    enterprise: null,
    is_enterprise_install: false,
    ...(click.home
      ? { view: { id: 'V0HOME', type: 'home' } }
      : {
          channel: { id: click.channel_id ?? 'C0GENERAL', name: 'general' },
          message: click.ephemeral ? undefined : { type: 'message', ts: click.message_ts },
        }),
    response_url: click.response_url ?? 'https://hooks.slack.com/actions/T0TEST/1/unused',
    actions: [
      {
        type: 'button',
        action_id: click.action_id,
        block_id: 'actions',
        text: { type: 'plain_text', text: 'button' },
        value: click.value,
        action_ts: actionTs,
      },
    ],
  };
}

export function blockActionsBody(click: ButtonClick): string {
  return new URLSearchParams({ payload: JSON.stringify(blockActionsPayload(click)) }).toString();
}

/** An Events API callback (JSON body), e.g. app_home_opened. */
export function eventBody(event: Record<string, unknown>): string {
  return JSON.stringify({
    token: 'verification-token-unused',
    team_id: 'T0TEST',
    api_app_id: 'A0TEST',
    event,
    type: 'event_callback',
    event_id: `Ev${Date.now()}${Math.floor(Math.random() * 1000)}`,
    event_time: Math.floor(Date.now() / 1000),
    authorizations: [{ team_id: 'T0TEST', user_id: 'U0BOT', is_bot: true, is_enterprise_install: false }],
  });
}

export interface PostOptions {
  secret: string;
  timestamp?: number;
  headers?: Record<string, string>;
  /** Sign with this secret instead (a forged request). */
  signWith?: string;
}

/** Posts a signed body to the app; resolves with the status, body and how long the app took to answer. */
export async function postSigned(url: string, body: string, contentType: string, options: PostOptions): Promise<{ status: number; text: string; ms: number }> {
  const request = signed(options.signWith ?? options.secret, body, contentType, { timestamp: options.timestamp, headers: options.headers });
  const started = performance.now();
  const response = await fetch(url, { method: 'POST', headers: request.headers, body: request.body });
  const text = await response.text();
  return { status: response.status, text, ms: performance.now() - started };
}

export const FORM = 'application/x-www-form-urlencoded';
export const JSON_TYPE = 'application/json';
