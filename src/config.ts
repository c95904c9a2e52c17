import { z } from 'zod';
import { accessSchema } from './access-grants.ts';
import { redactCredentials } from './lib/redact.ts';
import { scheduleProblem } from './lib/cron.ts';

// Every setting comes from the environment through this one schema, so a bad
// value stops start-up with the variable's name instead of failing later.
const optionalString = z
  .string()
  .trim()
  .transform((s) => (s === '' ? undefined : s))
  .optional();

const postgresUrl = z
  .string()
  .trim()
  .refine((s) => /^postgres(ql)?:\/\//.test(s), 'a postgres:// or postgresql:// URL')
  .optional();

// Parsed here, so that a URL that passes cannot fail later in `new URL`,
// whose error carries the whole URL, credentials included, as `input`.
const httpUrl = z
  .string()
  .trim()
  .refine((s) => /^https?:\/\/[^/\s]+/.test(s) && URL.canParse(s), 'an http:// or https:// URL')
  .optional();

/** One or more Slack workspace (T…) or Enterprise Grid organisation (E…) ids, comma-separated. */
const teamIds = z
  .string()
  .trim()
  .optional()
  .refine(
    (text) => !text || text.split(',').every((id) => /^\s*[TE][A-Z0-9]{2,}\s*$/.test(id)),
    'comma-separated Slack workspace (T…) or organisation (E…) ids, e.g. T0123ABCD',
  )
  .transform((text) => (text ? [...new Set(text.split(',').map((id) => id.trim()))] : undefined));

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const configSchema = z
  .object({
    DATABASE_URL: postgresUrl,
    DATABASE_LOCK_URL: postgresUrl,
    /**
     * The owner's connection, for migrations and grants only (docs/security.md,
     * The database): DATABASE_URL may then be a role that cannot alter the
     * schema or rewrite the audit log. Default DATABASE_URL.
     */
    DATABASE_MIGRATION_URL: postgresUrl,
    /** Limits on the command path's statements; a command past them answers "database busy, try again". */
    DATABASE_STATEMENT_TIMEOUT_MS: positiveInt(15_000),
    DATABASE_LOCK_TIMEOUT_MS: positiveInt(3_000),
    /** How long opening a connection (or waiting for a pool's free one) may take. */
    DATABASE_CONNECT_TIMEOUT_MS: positiveInt(5_000),
    /** Interactions, button clicks and run messages of runs ended longer ago are pruned by the health monitor's leader; 0 = never. */
    WORKFLOW_RETENTION_DAYS: z.coerce.number().int().min(0).max(36_500).default(30),
    WORKFLOW_DATA_DIR: z.string().trim().min(1).default('.data'),
    WORKFLOW_MODULES: optionalString,
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** pretty (time, level, message, fields) or json (one object a line); unset: pretty when stderr is a terminal, json otherwise. */
    LOG_FORMAT: z.enum(['json', 'pretty']).optional(),
    PORT: z.coerce.number().int().min(0).max(65535).default(3000),
    SLACK_BOT_TOKEN: optionalString.refine((t) => t === undefined || t.startsWith('xoxb-'), 'a bot token (xoxb-…)'),
    SLACK_APP_TOKEN: optionalString.refine((t) => t === undefined || t.startsWith('xapp-'), 'an app-level token (xapp-…)'),
    SLACK_SIGNING_SECRET: optionalString,
    SLACK_API_URL: httpUrl,
    SLACK_NOTIFY_CHANNEL: optionalString,
    /** Requests from any other workspace or organisation are refused (docs/security.md). */
    SLACK_TEAM_ID: teamIds,
    /** When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`. */
    METRICS_TOKEN: optionalString.refine((t) => t === undefined || t.length >= 16, 'a bearer token of at least 16 characters'),
    OLLAMA_URL: httpUrl,
    OLLAMA_MODEL: z.string().trim().min(1).default('llama3.2'),
    OLLAMA_TIMEOUT_MS: positiveInt(60_000),
    /**
     * Roles for chat users, as JSON: [{"role":"admin","to":["U123","S456"],"channels":["C789"]}, …].
     * Undefined when unset: the Slack app then falls back to DEFAULT_ACCESS and says so.
     */
    WORKFLOW_ACCESS: z
      .string()
      .trim()
      .optional()
      .transform((text, ctx) => {
        if (!text) return undefined;
        try {
          return JSON.parse(text) as unknown;
        } catch {
          ctx.addIssue({ code: 'custom', message: 'JSON: a list of {"role": "viewer|operator|admin", "to": [ids], "channels"?: [ids]}' });
          return z.NEVER;
        }
      })
      .pipe(accessSchema.optional()),
    /** How often a running run proves it is alive. */
    WORKFLOW_HEARTBEAT_MS: positiveInt(2_000),
    /** How long `force` lets the current owner stop on its own before terminating it. */
    WORKFLOW_FORCE_GRACE_MS: positiveInt(5_000),
    /** Adoptions of one run in a row without progress before it ends `abandoned` (crash_loop); a workflow's maxAdoptions overrides it. */
    WORKFLOW_MAX_ADOPTIONS: positiveInt(3),
    /**
     * Workflow ids to run continuously (comma-separated), for workflows whose
     * module reads it: the built-in example 3001 becomes continuous on the
     * postings table only when listed (a `demo` load would otherwise start runs).
     */
    WORKFLOW_CONTINUOUS: z
      .string()
      .trim()
      .optional()
      .refine((text) => !text || text.split(',').every((id) => /^\s*[1-9]\d*\s*$/.test(id)), 'a comma-separated list of workflow ids, e.g. 3001')
      .transform((text) => (text ? [...new Set(text.split(',').map((id) => Number(id.trim())))] : [])),
    /**
     * Schedules by workflow id, as JSON: {"3001": {"cron": "0 3 * * *", "timezone": "Europe/Paris"}}.
     * Each replaces the schedule the workflow's module declares (docs/workflows.md, "Schedules").
     */
    WORKFLOW_SCHEDULES: z
      .string()
      .trim()
      .optional()
      .transform((text, ctx) => {
        if (!text) return {};
        try {
          return JSON.parse(text) as unknown;
        } catch {
          ctx.addIssue({ code: 'custom', message: 'JSON: {"<workflow id>": {"cron": "0 3 * * *", "timezone": "Europe/Paris"}, …}' });
          return z.NEVER;
        }
      })
      .pipe(
        z.record(
          z.string().regex(/^[1-9]\d*$/, 'a workflow id'),
          z.strictObject({ cron: z.string().trim().min(1), timezone: z.string().trim().min(1).optional() }).superRefine((schedule, ctx) => {
            const problem = scheduleProblem(schedule);
            if (problem) ctx.addIssue({ code: 'custom', message: problem });
          }),
        ),
      ),
    /** How often the health monitor recovers dead runs' work and probes external services. */
    HEALTH_INTERVAL_MS: positiveInt(60_000),
    /** On SIGTERM/SIGINT, how long in-flight handlers may finish before they are aborted (the run ends `stopped`, reason `shutdown`). */
    WORKFLOW_SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).default(10_000),
  })
  .superRefine((config, ctx) => {
    if (config.DATABASE_LOCK_TIMEOUT_MS > config.DATABASE_STATEMENT_TIMEOUT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['DATABASE_LOCK_TIMEOUT_MS'],
        message: `at most DATABASE_STATEMENT_TIMEOUT_MS (${config.DATABASE_STATEMENT_TIMEOUT_MS}): a statement is cancelled before its lock wait could end`,
      });
    }
    if ((config.SLACK_APP_TOKEN || config.SLACK_SIGNING_SECRET) && !config.SLACK_BOT_TOKEN) {
      ctx.addIssue({
        code: 'custom',
        path: ['SLACK_BOT_TOKEN'],
        message: 'a bot token (xoxb-…): required when SLACK_APP_TOKEN or SLACK_SIGNING_SECRET is set',
      });
    }
  });

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const result = configSchema.safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const variable = String(issue.path[0] ?? '');
    const where = issue.path.length > 1 ? ` at ${issue.path.slice(1).join('.')}` : '';
    return `${variable}: expected ${describeIssue(issue)}${where} (got ${shown(variable, env[variable])})`;
  });
  throw new ConfigError(`invalid environment: ${problems.join('; ')}`);
}

// Secrets never reach logs or terminals, not even in an error about them:
// a variable whose name says it holds a secret is never shown, and any other
// value is shown with whatever could be a credential removed (a URL's user
// information, a password= parameter), however malformed the value is.
const SECRET_NAME = /TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|(^|_)KEY($|_)/i;

export function shown(variable: string, value: string | undefined): string {
  if (value === undefined || value === '') return 'nothing';
  if (SECRET_NAME.test(variable)) return `a value of ${value.length} characters, not shown`;
  return JSON.stringify(redactCredentials(value).slice(0, 200));
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_value':
      return `one of ${issue.values.join(', ')}`;
    case 'too_small':
      return `a number ${issue.inclusive ? '>=' : '>'} ${issue.minimum}`;
    case 'too_big':
      return `a number ${issue.inclusive ? '<=' : '<'} ${issue.maximum}`;
    case 'invalid_type':
      return issue.expected === 'number' ? 'a number' : issue.expected;
    default:
      return issue.message;
  }
}
