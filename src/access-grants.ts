import { z } from 'zod';

// What WORKFLOW_ACCESS may say (docs/security.md, Access roles): roles granted
// to Slack user ids, user groups or everyone ('*'), optionally only in some
// channels. Beside the config that parses it rather than in commands/, so
// that config, read at the bottom of the stack, depends on nothing above it;
// what a role allows is src/commands/access.ts.

/** In order: each role can do what the ones before it can. */
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

/**
 * Slack without WORKFLOW_ACCESS: everyone may look, nobody may change
 * anything. A workspace holds guests and, in shared channels, people from
 * other organisations, so running and stopping must be granted by name.
 */
export const DEFAULT_ACCESS: Grant[] = [{ role: 'viewer', to: ['*'] }];

/** The start-up warning when WORKFLOW_ACCESS is unset: what it means and how to grant roles. */
export const DEFAULT_ACCESS_WARNING =
  'WORKFLOW_ACCESS is not set: every Slack user is a viewer (list, status, history, workflows, health, help) and nobody may run, stop, pause, resume or force. ' +
  'Grant roles with WORKFLOW_ACCESS, e.g. [{"role":"admin","to":["U012ABCDEF"]},{"role":"operator","to":["S0DATAENG"]},{"role":"viewer","to":["*"]}] (docs/security.md, "Access roles").';
