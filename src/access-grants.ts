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

/** With no configuration: everyone may look and run; nobody may force until named an admin. */
export const DEFAULT_ACCESS: Grant[] = [{ role: 'operator', to: ['*'] }];
