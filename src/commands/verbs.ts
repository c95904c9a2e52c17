// What the commands are, and their help: the words, arguments and texts of
// the grammar, without the schemas that validate values (grammar.ts). Kept
// apart so that `workflow help` prints its text without loading a validator.

export type Surface = 'cli' | 'chat';

export const HISTORY_LIMIT = { default: 10, max: 100 } as const;
export const DEMO_POSTINGS = { default: 1_000, max: 10_000_000 } as const;

export type VerbWord =
  | 'run'
  | 'force'
  | 'list'
  | 'stop'
  | 'status'
  | 'history'
  | 'workflows'
  | 'health'
  | 'pause'
  | 'resume'
  | 'plan'
  | 'schedules'
  | 'whoami'
  | 'help'
  | 'serve'
  | 'migrate'
  | 'demo'
  | 'prune'
  | 'db';

export interface VerbInfo {
  /** Positional arguments in order: the key the schema reads, the name messages and help show. */
  positionals: readonly { key: string; label: string }[];
  /** Options by canonical name (no dashes): whether each takes a value. */
  options: Readonly<Record<string, 'value' | 'switch'>>;
  /** Spellings from the seed scripts, mapped to canonical option names. */
  aliases?: Readonly<Record<string, string>>;
  /** Options that need a local process (so they mean nothing in chat). */
  cliOptions?: readonly string[];
  /** Verbs that manage this machine rather than runs: never from chat. */
  cliOnly?: boolean;
  synopsis: string;
  /** Shorter synopsis for the overview, when the full one is long. */
  brief?: string;
  summary: string;
  notes?: readonly string[];
  cliNotes?: readonly string[];
}

// `run` and `force` share everything but the default of --force.
function runVerb(word: 'run' | 'force'): VerbInfo {
  return {
    positionals: [{ key: 'workflow', label: '<workflow>' }],
    options: {
      mode: 'value',
      subject: 'value',
      run: 'value',
      force: 'switch',
      detach: 'switch',
      ...(word === 'force' ? { approve: 'value', reject: 'value' } : {}),
    },
    aliases: { 'posting-id': 'subject', 'workflow-run-id': 'run' },
    cliOptions: ['detach'],
    synopsis:
      word === 'run'
        ? 'run <workflow> [--mode global_batch|single_subject|single_run] [--subject <id>] [--run <run-id>] [--force]'
        : 'force <workflow> [--mode global_batch|single_subject|single_run] [--subject <id>] [--run <run-id>] | force --approve <request> | force --reject <request>',
    brief: `${word} <workflow> [options]`,
    summary: word === 'run' ? 'start a run of a workflow, by its number or name' : 'run --force: take over from a run already in progress',
    notes: [
      'Without --mode: --subject <id> means single_subject, --run <run-id> means single_run (resume that run; <workflow> may then be left out), neither means global_batch.',
      'Compatibility flags of run_workflow.py: --mode single_posting, --posting-id <id>, --workflow-run-id <id>.',
      ...(word === 'force'
        ? [
            "A workflow with force approval turns a force into a request: another admin approves it (Slack's Approve button, or force --approve <request>) before it expires, or rejects it (--reject <request>; the requester may withdraw their own).",
          ]
        : []),
    ],
    cliNotes: ['--detach hands the run to a serving instance instead of running it here.'],
  };
}

export const VERBS: Readonly<Record<VerbWord, VerbInfo>> = {
  run: runVerb('run'),
  force: runVerb('force'),
  list: { positionals: [], options: {}, synopsis: 'list', summary: 'runs in progress', notes: ['Compatibility flag of run_workflow.py: --list-running.'] },
  stop: {
    // The run id may come as the seed spelled it: --stop --workflow-run-id <id>.
    positionals: [{ key: 'runId', label: '<run-id>' }],
    options: { run: 'value' },
    aliases: { 'workflow-run-id': 'run' },
    synopsis: 'stop <run-id>',
    summary: 'stop a run in progress',
    notes: ['Compatibility flags of run_workflow.py: --stop --workflow-run-id <run-id>.'],
  },
  status: { positionals: [{ key: 'runId', label: '<run-id>' }], options: {}, synopsis: 'status <run-id>', summary: 'one run with its audit record' },
  history: {
    positionals: [{ key: 'workflow', label: '<workflow>' }],
    options: { limit: 'value' },
    synopsis: 'history [<workflow>] [--limit N]',
    summary: `recent runs with their deltas (--limit: default ${HISTORY_LIMIT.default}, at most ${HISTORY_LIMIT.max})`,
  },
  workflows: { positionals: [], options: {}, synopsis: 'workflows', summary: 'defined workflows and their pending work' },
  health: { positionals: [], options: {}, synopsis: 'health', summary: "the health monitor's findings: stuck runs, overdue work, external services" },
  pause: {
    positionals: [{ key: 'workflow', label: '<workflow>' }],
    options: {},
    synopsis: 'pause <workflow>',
    summary: 'stop starting a continuous or scheduled workflow by itself',
  },
  resume: {
    positionals: [{ key: 'workflow', label: '<workflow>' }],
    options: {},
    synopsis: 'resume <workflow>',
    summary: 'let a paused continuous or scheduled workflow start by itself again',
  },
  plan: {
    positionals: [{ key: 'workflow', label: '<workflow>' }],
    options: {},
    synopsis: 'plan <workflow>',
    summary: 'what a run would do now: expected work per step, how long it should take, whether it would start',
    notes: ['A dry run: nothing is started or changed (the request is audited).'],
  },
  schedules: {
    positionals: [],
    options: {},
    synopsis: 'schedules',
    summary: 'scheduled workflows: their cron, time zone and next start',
  },
  whoami: {
    positionals: [],
    options: {},
    synopsis: 'whoami',
    summary: 'your role here and the grants of WORKFLOW_ACCESS that give it',
  },
  help: {
    positionals: [{ key: 'topic', label: '<command>' }],
    options: {},
    synopsis: 'help [<command>]',
    summary: 'this overview, or one command in detail',
  },
  serve: {
    cliOnly: true,
    positionals: [],
    options: {},
    synopsis: 'serve',
    summary: 'start serving: Slack or console chat, health and metrics over HTTP',
  },
  migrate: { cliOnly: true, positionals: [], options: {}, synopsis: 'migrate', summary: 'apply database migrations' },
  demo: {
    cliOnly: true,
    positionals: [],
    options: { postings: 'value' },
    synopsis: 'demo [--postings N]',
    summary: `set up the demo with N postings (default ${thousands(DEMO_POSTINGS.default)}, at most ${thousands(DEMO_POSTINGS.max)})`,
  },
  prune: {
    positionals: [],
    options: { 'older-than': 'value', 'dry-run': 'switch' },
    synopsis: 'prune [--older-than <days>d] [--dry-run]',
    summary: 'delete what runs ended long ago left behind (admin): their interactions, button clicks, run messages',
    notes: ['Default --older-than: WORKFLOW_RETENTION_DAYS (30). Runs and the audit log are kept; pending work is never deleted. --dry-run only counts.'],
  },
  db: {
    cliOnly: true,
    positionals: [{ key: 'action', label: '<action>' }],
    options: { role: 'value', apply: 'switch' },
    synopsis: 'db stop | db grants [--role <name>] [--apply]',
    summary: "stop the embedded PostgreSQL, or print (--apply: apply) the app role's grants",
    notes: [
      "db grants: the statements that let the app's role (DATABASE_URL's, or --role) read and write its tables but only append to audit_log; --apply runs them as DATABASE_MIGRATION_URL's role.",
    ],
  },
};

/** Verb spellings that are not verb names: the seed's flags and the usual help flags. */
const VERB_ALIASES: Readonly<Record<string, VerbWord>> = {
  '--list-running': 'list',
  '--stop': 'stop',
  '--help': 'help',
  '-h': 'help',
  'db-stop': 'db',
};

/** The overview (every verb, one line each), or one verb in detail; unknown verbs get the overview. */
export function usage(verb?: string, surface: Surface = 'chat'): string {
  const prefix = surface === 'chat' ? '/workflow' : 'workflow';
  const word = verb === undefined ? undefined : verbWord(verb);

  if (word === undefined) {
    const shown = (Object.keys(VERBS) as VerbWord[]).filter((w) => surface === 'cli' || !VERBS[w].cliOnly);
    const left = (w: VerbWord) => VERBS[w].brief ?? VERBS[w].synopsis;
    const width = Math.max(...shown.map((w) => left(w).length));
    return [
      `Usage: ${prefix} <command>`,
      ...shown.map((w) => `  ${left(w).padEnd(width)}  ${VERBS[w].summary}`),
      ...(surface === 'cli' ? ['Add --json to any command for machine-readable output.'] : []),
      `More on one command: ${prefix} help <command>`,
    ].join('\n');
  }

  const spec = VERBS[word];
  const cliSuffix = surface === 'cli' && spec.cliOptions?.includes('detach') ? ' [--detach]' : '';
  return [
    `Usage: ${prefix} ${spec.synopsis}${cliSuffix}`,
    `${capitalise(spec.summary)}.${spec.cliOnly ? ' (CLI only)' : ''}`,
    ...(spec.notes ?? []),
    ...(surface === 'cli' ? (spec.cliNotes ?? []) : []),
  ].join('\n');
}

/**
 * The help text when the words are only a request for help (`help`,
 * `--help` or `-h`, alone or with a command's name), else undefined and the
 * grammar decides. What it answers, parseCommand answers the same way.
 */
export function plainHelp(tokens: readonly string[], surface: Surface): string | undefined {
  const [first, topic, ...rest] = tokens;
  if (first === undefined || rest.length > 0 || verbWord(first) !== 'help') return undefined;
  if (topic === undefined) return usage(undefined, surface);
  if (topic.startsWith('-') || verbWord(topic) === undefined) return undefined;
  return usage(topic, surface);
}

/** The verb a token names, if any (case does not matter: phones capitalise the first word). */
export function verbWord(token: string): VerbWord | undefined {
  const lowered = asciiLower(token);
  return own(VERB_ALIASES, lowered) ?? (Object.hasOwn(VERBS, lowered) ? (lowered as VerbWord) : undefined);
}

/** Table lookup that cannot land on Object.prototype ("constructor", "__proto__"). */
export function own<T>(table: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

/** 10000000 as 10,000,000. Not toLocaleString: its first call loads ICU's locale data, ~20 ms of a CLI call. */
export function thousands(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Lowercases ASCII letters only, so no other character can turn into one. */
export function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
