import type { Middleware, AnyMiddlewareArgs } from '@slack/bolt';
import { actorId } from './actor.ts';
import type { SlackDeps } from './listeners.ts';

// SLACK_TEAM_ID (docs/security.md, "Slack requests"): the workspaces (T…) and
// Enterprise Grid organisations (E…) the app serves. A Slack app can be
// installed in more workspaces than intended, and a shared (Slack Connect)
// channel brings in people from other organisations; their requests are
// signed by Slack like any other. A request is served only when every
// workspace and organisation id it names (its own, its user's) is listed:
// one naming an id not listed, or none at all, is refused and audited.

/** Every T…/E… id a command, interaction or event payload names, as Slack sends them. */
export function teamIdsOf(body: Record<string, unknown>): string[] {
  const ids = new Set<string>();
  const add = (value: unknown) => {
    if (typeof value === 'string' && value !== '') ids.add(value);
  };
  const field = (value: unknown, key: string): unknown => (value && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined);
  // Slash commands and events: flat fields. Interactions: team, user.team_id, enterprise objects.
  add(body.team_id);
  add(body.user_team);
  add(body.enterprise_id);
  add(field(body.team, 'id'));
  add(field(body.enterprise, 'id'));
  add(field(body.user, 'team_id'));
  add(field(body.user, 'enterprise_id'));
  add(field(body.event, 'user_team'));
  return [...ids];
}

/** Bolt global middleware: requests from elsewhere stop here, acknowledged, answered and audited. */
export function teamGuard(allowed: readonly string[], deps: Pick<SlackDeps, 'service' | 'log'>): Middleware<AnyMiddlewareArgs> {
  const served = new Set(allowed);
  return async (args) => {
    const body = args.body as unknown as Record<string, unknown>;
    const named = teamIdsOf(body);
    if (named.length > 0 && named.every((id) => served.has(id))) return args.next();

    const user = (body.user ?? {}) as { id?: string; username?: string; name?: string };
    const event = (body.event ?? {}) as { type?: string; user?: string };
    const userId = String(body.user_id ?? user.id ?? event.user ?? 'unknown');
    const userName = (body.user_name ?? user.username ?? user.name) as string | undefined;
    const action = body.command ? 'command' : body.type === 'block_actions' ? 'button' : `event:${event.type ?? body.type ?? 'unknown'}`;
    const reason = `request from a workspace or organisation this app does not serve (${named.join(', ') || 'none named'}); SLACK_TEAM_ID lists ${allowed.join(', ')}`;
    deps.log.warn({ teams: named, user: userId, action }, 'slack request refused: not from SLACK_TEAM_ID');
    const ack = (args as { ack?: (response?: unknown) => Promise<void> }).ack;
    if (ack) await ack(body.command ? { response_type: 'ephemeral', text: '🚫 This app serves its own workspace only.' } : undefined);
    await deps.service
      .reject(
        { id: actorId({ userId, userName }), source: 'slack' },
        {
          action,
          outcome: 'refused',
          reason,
          details: { refusal: 'team', teams: named, text: typeof body.text === 'string' ? body.text.slice(0, 200) : undefined },
        },
      )
      .catch((error: unknown) => deps.log.error({ err: error }, 'could not audit a refused request'));
  };
}
