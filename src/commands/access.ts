import { ROLES, type Grant, type Role } from '../access-grants.ts';
import type { Command } from './grammar.ts';

// Access control (docs/security.md, Access roles): which roles a principal
// holds under the grants of WORKFLOW_ACCESS (src/access-grants.ts, parsed by
// config), and which role a command needs. Roles nest: an admin can do what
// an operator can, an operator what a viewer can.

export type { Grant, Role };

/** Who is asking, as far as access is concerned. */
export interface Principal {
  userId: string;
  /** The user groups the user belongs to (resolved by the surface). */
  groups: readonly string[];
  channel?: string;
}

/**
 * The roles `who` holds where they are asking. With `run`, the roles they
 * hold over that run: a grant limited to channels counts only for runs
 * requested in one of its channels (a run started outside Slack, with no
 * channel, is outside every channel-limited grant).
 */
export function rolesFor(grants: readonly Grant[], who: Principal, run?: { channel: string | null }): Set<Role> {
  const roles = new Set<Role>();
  for (const grant of grants) {
    const matches = grant.to.some((id) => id === '*' || id === who.userId || who.groups.includes(id));
    const inChannel =
      !grant.channels ||
      (who.channel !== undefined &&
        grant.channels.includes(who.channel) &&
        (run === undefined || (run.channel !== null && grant.channels.includes(run.channel))));
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
    case 'prune':
    case 'force-decision':
      return 'admin';
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

/** The grants that give `who` a role where they are asking: what `whoami` shows. */
export function grantsFor(grants: readonly Grant[], who: Principal): Grant[] {
  return grants.filter(
    (grant) =>
      grant.to.some((id) => id === '*' || id === who.userId || who.groups.includes(id)) &&
      (!grant.channels || (who.channel !== undefined && grant.channels.includes(who.channel))),
  );
}

/** The highest of a set of roles; null for none. */
export function highestRole(roles: ReadonlySet<Role>): Role | null {
  return [...ROLES].reverse().find((role) => roles.has(role)) ?? null;
}
