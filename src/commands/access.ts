import { z } from 'zod';
import type { Command } from './grammar.ts';

// Access control (DESIGN.md §4): roles granted to Slack user ids, user
// groups or everyone ('*'), optionally only in some channels. Roles nest:
// an admin can do what an operator can, an operator what a viewer can.

export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

const grantSchema = z
  .object({
    role: z.enum(ROLES),
    /** Slack user ids (U…, W…), user group ids (S…), or '*' for everyone. */
    to: z.array(z.string().regex(/^(\*|[UWS][A-Z0-9]{2,})$/, 'a Slack user id (U…/W…), user group id (S…) or *')).min(1),
    /** Only in these channels (C…/G…/D…); everywhere when absent. */
    channels: z
      .array(z.string().regex(/^[CGD][A-Z0-9]{2,}$/, 'a Slack channel id (C…, G… or D…)'))
      .min(1)
      .optional(),
  })
  .strict();

export const accessSchema = z.array(grantSchema);
export type Grant = z.infer<typeof grantSchema>;

/** With no configuration: everyone may look and run; nobody may force until named an admin. */
export const DEFAULT_ACCESS: Grant[] = [{ role: 'operator', to: ['*'] }];

/** Who is asking, as far as access is concerned. */
export interface Principal {
  userId: string;
  /** The user groups the user belongs to (resolved by the surface). */
  groups: readonly string[];
  channel?: string;
}

export function rolesFor(grants: readonly Grant[], who: Principal): Set<Role> {
  const roles = new Set<Role>();
  for (const grant of grants) {
    const matches = grant.to.some((id) => id === '*' || id === who.userId || who.groups.includes(id));
    const inChannel = !grant.channels || (who.channel !== undefined && grant.channels.includes(who.channel));
    if (!matches || !inChannel) continue;
    for (const role of ROLES.slice(0, ROLES.indexOf(grant.role) + 1)) roles.add(role);
  }
  return roles;
}

/** The role a command needs. */
export function requiredRole(command: Command): Role {
  switch (command.verb) {
    case 'run':
      return command.force ? 'admin' : 'operator';
    case 'stop':
    case 'pause':
    case 'resume':
      return 'operator';
    default:
      return 'viewer';
  }
}

/** Whether any grant mentions a user group: only then does the surface need to look groups up. */
export function usesGroups(grants: readonly Grant[]): boolean {
  return grants.some((g) => g.to.some((id) => id.startsWith('S')));
}
