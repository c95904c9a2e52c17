import { grantsFor, rolesFor, usesGroups, type Grant } from '../../commands/access.ts';
import type { Actor } from '../../commands/service.ts';
import type { Logger } from '../../log.ts';

// Who a Slack request comes from, as the command service sees it: the Slack
// user (not the bot) with the roles WORKFLOW_ACCESS grants them in that
// channel, and over runs requested elsewhere. User-group membership is asked
// of Slack only when a grant names a group, and cached for 30 s at most, so
// someone removed from a group loses its roles (admin included) within 30 s:
// Slack sends no event for it that the app could act on.

/** The part of the Web API client this needs (so tests can hand in a fake). */
export interface UserGroupsClient {
  usergroups: { users: { list(args: { usergroup: string }): Promise<{ users?: string[] }> } };
}

export interface SlackUser {
  userId: string;
  /** The user's name when the payload carries it (slash commands, block_actions). */
  userName?: string;
  channel?: string;
}

export interface ActorResolver {
  resolve(user: SlackUser): Promise<Actor>;
  /** Forgets cached group memberships. */
  clear(): void;
}

export const GROUP_CACHE_MS = 30_000;
/** A failed lookup is retried sooner than a good one expires. */
const FAILED_LOOKUP_CACHE_MS = 10_000;

/** `U123 (ana)`: the id keeps it unique, the name makes the audit log readable. */
export function actorId(user: SlackUser): string {
  const name = user.userName
    ?.replace(/[\u0000-\u001f]/g, '')
    .trim()
    .slice(0, 80);
  return name ? `${user.userId} (${name})` : user.userId;
}

export function createActorResolver(options: {
  grants: readonly Grant[];
  client: UserGroupsClient;
  log: Logger;
  cacheMs?: number;
  now?: () => number;
}): ActorResolver {
  const { grants, client, log } = options;
  const cacheMs = options.cacheMs ?? GROUP_CACHE_MS;
  const now = options.now ?? Date.now;
  const groupIds = [...new Set(grants.flatMap((g) => g.to.filter((id) => id.startsWith('S'))))];
  const lookUpGroups = usesGroups(grants);
  const cache = new Map<string, { members: Promise<ReadonlySet<string>>; expires: number }>();

  function members(group: string): Promise<ReadonlySet<string>> {
    const cached = cache.get(group);
    if (cached && cached.expires > now()) return cached.members;
    const entry = { expires: now() + cacheMs, members: Promise.resolve(new Set<string>() as ReadonlySet<string>) };
    entry.members = client.usergroups.users.list({ usergroup: group }).then(
      (answer) => new Set(answer.users ?? []),
      (error: unknown) => {
        log.warn({ err: error, usergroup: group }, 'usergroups.users.list failed; treating the user as outside the group');
        entry.expires = Math.min(entry.expires, now() + FAILED_LOOKUP_CACHE_MS);
        return new Set<string>();
      },
    );
    cache.set(group, entry);
    return entry.members;
  }

  return {
    async resolve(user) {
      let groups: string[] = [];
      if (lookUpGroups) {
        const sets = await Promise.all(groupIds.map(members));
        groups = groupIds.filter((_, i) => sets[i]!.has(user.userId));
      }
      const principal = { userId: user.userId, groups, channel: user.channel };
      return {
        id: actorId(user),
        userId: user.userId,
        source: 'slack',
        channel: user.channel,
        roles: rolesFor(grants, principal),
        grants: grantsFor(grants, principal),
        rolesOver: (runChannel) => rolesFor(grants, principal, { channel: runChannel }),
      };
    },
    clear: () => cache.clear(),
  };
}
