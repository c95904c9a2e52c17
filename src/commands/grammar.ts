import { z } from 'zod';
import type { RunMode } from '../db/schema.ts';
import { oneLine } from '../lib/one-line.ts';
import { asciiLower, thousands, HISTORY_LIMIT, DEMO_POSTINGS, own, usage, verbWord, VERBS, type Surface, type VerbInfo, type VerbWord } from './verbs.ts';

// The one parser for the command grammar. Slack, the console
// chat and the CLI all parse here, so a command means the same thing wherever
// it is typed. Parsing is two steps:
//   1. a generic walker turns tokens into a raw record: positionals and options
//      under their canonical names, values still text, nothing interpreted;
//   2. the verb's zod schema validates that record and builds the Command.
// To follow one verb end to end, read its entry in VERBS (verbs.ts: its
// words and help) and in SCHEMAS here.

export type { RunMode, Surface };
export { DEMO_POSTINGS, HISTORY_LIMIT, usage };

export type Command =
  | { verb: 'run'; workflow: string | undefined; mode: RunMode; subjectId?: number; runId?: number; force: boolean; detach: boolean }
  /** `force --approve N` / `force --reject N`: a second admin decides a force request (two-person approval). */
  | { verb: 'force-decision'; requestId: number; decision: 'approve' | 'reject' }
  | { verb: 'list' }
  | { verb: 'stop'; runId: number }
  | { verb: 'status'; runId: number }
  | { verb: 'history'; workflow?: string; limit: number }
  | { verb: 'workflows' }
  | { verb: 'health' }
  | { verb: 'pause'; workflow: string }
  | { verb: 'resume'; workflow: string }
  | { verb: 'plan'; workflow: string }
  | { verb: 'schedules' }
  | { verb: 'whoami' }
  | { verb: 'help'; topic?: string }
  | { verb: 'serve' }
  | { verb: 'migrate' }
  | { verb: 'demo'; postings: number }
  | { verb: 'db-stop' }
  | { verb: 'db-grants'; role?: string; apply: boolean }
  /** olderThanDays undefined: WORKFLOW_RETENTION_DAYS. */
  | { verb: 'prune'; olderThanDays?: number; dryRun: boolean };

export type Verb = Command['verb'];

export type ParseResult =
  | { ok: true; command: Command; json: boolean }
  /** error: one line saying what is wrong; usage: the usage of the verb concerned, or the overview. */
  | { ok: false; error: string; usage: string };

/** Longer input is refused before tokenising: nobody types this much, and a bound keeps parsing cheap. */
export const MAX_INPUT_LENGTH = 1_000;

// ─── Values ──────────────────────────────────────────────────────────────────
// Messages here are fragments: the parser prefixes the option as the user
// spelled it and appends what was given ("--posting-id must be …, got "x"").

// Only plain decimal digits: Number() would happily read "1e3", "0x10", "7.0"
// or " 7" as some other number than the one a person meant to type.
const DIGITS = /^[1-9][0-9]*$/;

const positiveInt = z
  .string()
  .regex(DIGITS, { error: 'must be a positive integer', abort: true })
  .refine((s) => Number.isSafeInteger(Number(s)), `must be at most ${Number.MAX_SAFE_INTEGER}`)
  .transform(Number);

const boundedInt = (max: number) => positiveInt.pipe(z.number().max(max, `must be at most ${thousands(max)}`));

// Checked before lowercasing: toLowerCase() maps a few non-ASCII letters
// (the Kelvin sign K) onto ASCII ones, and a name must not arrive by accident.
const workflowRef = z
  .string()
  .refine(
    (s) => (DIGITS.test(s) && Number.isSafeInteger(Number(s))) || /^[a-zA-Z][a-zA-Z0-9-]*$/.test(s),
    'must be a number or a name (letters, digits and dashes, starting with a letter)',
  )
  .transform(asciiLower);

const runMode = z
  .string()
  .transform(asciiLower)
  .pipe(z.enum(['global_batch', 'single_subject', 'single_run', 'single_posting'], { error: 'must be global_batch, single_subject or single_run' }))
  .transform((mode): RunMode => (mode === 'single_posting' ? 'single_subject' : mode));

const flag = z.boolean().default(false);

// ─── Verbs ───────────────────────────────────────────────────────────────────

type Raw = Record<string, string | true>;

/** Reports a whole-command problem (already a full sentence) from inside a transform. */
function reject(ctx: z.core.$RefinementCtx, message: string): never {
  ctx.addIssue({ code: 'custom', message });
  return z.NEVER;
}

/** Picks the run mode, or says which options contradict each other. */
function resolveMode(o: { mode?: RunMode | undefined; subject?: number | undefined; run?: number | undefined }): RunMode | { error: string } {
  if (o.subject !== undefined && o.run !== undefined) {
    return { error: '--subject and --run cannot be combined: a run covers one subject or resumes one run' };
  }
  const mode = o.mode ?? (o.subject !== undefined ? 'single_subject' : o.run !== undefined ? 'single_run' : 'global_batch');
  if (mode !== 'single_subject' && o.subject !== undefined) return { error: `--subject does not go with --mode ${mode}` };
  if (mode !== 'single_run' && o.run !== undefined) return { error: `--run does not go with --mode ${mode}` };
  if (mode === 'single_subject' && o.subject === undefined) return { error: '--mode single_subject needs --subject <id>' };
  if (mode === 'single_run' && o.run === undefined) return { error: '--mode single_run needs --run <run-id>' };
  return mode;
}

// `run` and `force` share everything but the default of --force.
function runSchema(word: 'run' | 'force'): z.ZodType<Command> {
  return z
    .object({
      workflow: workflowRef.optional(),
      mode: runMode.optional(),
      subject: positiveInt.optional(),
      run: positiveInt.optional(),
      force: flag,
      detach: flag,
      approve: positiveInt.optional(),
      reject: positiveInt.optional(),
    })
    .transform((o, ctx): Command => {
      if (o.approve !== undefined || o.reject !== undefined) {
        if (o.approve !== undefined && o.reject !== undefined) return reject(ctx, 'give --approve or --reject, not both');
        if (o.workflow !== undefined || o.mode !== undefined || o.subject !== undefined || o.run !== undefined || o.detach) {
          return reject(ctx, `${o.approve !== undefined ? '--approve' : '--reject'} <request> decides a force request filed earlier: give it alone`);
        }
        return o.approve !== undefined
          ? { verb: 'force-decision', requestId: o.approve, decision: 'approve' }
          : { verb: 'force-decision', requestId: o.reject!, decision: 'reject' };
      }
      const mode = resolveMode(o);
      if (typeof mode !== 'string') return reject(ctx, mode.error);
      // A resumed run already knows its workflow; the service takes it from the run.
      if (o.workflow === undefined && mode !== 'single_run') return reject(ctx, `${word} needs a <workflow> (its number or name)`);
      return {
        verb: 'run',
        workflow: o.workflow,
        mode,
        ...(o.subject !== undefined && { subjectId: o.subject }),
        ...(o.run !== undefined && { runId: o.run }),
        force: word === 'force' || o.force,
        detach: o.detach,
      };
    });
}

/**
 * Each verb's schema: validates the raw record readArguments made (keys as in
 * the verb's VERBS entry) and builds the Command. Built on first use
 * (schemaOf): a CLI process parses one command, and building every schema at
 * load costs it more than the parse.
 */
const SCHEMAS: Readonly<Record<VerbWord, () => z.ZodType<Command>>> = {
  run: () => runSchema('run'),
  force: () => runSchema('force'),

  list: () => z.object({}).transform((): Command => ({ verb: 'list' })),

  stop: () =>
    z.object({ runId: positiveInt.optional(), run: positiveInt.optional() }).transform((o, ctx): Command => {
      if (o.runId !== undefined && o.run !== undefined) return reject(ctx, 'give the run id once: stop <run-id>');
      const runId = o.runId ?? o.run;
      if (runId === undefined) return reject(ctx, 'stop needs a <run-id>');
      return { verb: 'stop', runId };
    }),

  status: () => z.object({ runId: positiveInt }).transform((o): Command => ({ verb: 'status', runId: o.runId })),

  history: () =>
    z
      .object({ workflow: workflowRef.optional(), limit: boundedInt(HISTORY_LIMIT.max).default(HISTORY_LIMIT.default) })
      .transform((o): Command => ({ verb: 'history', ...(o.workflow !== undefined && { workflow: o.workflow }), limit: o.limit })),

  workflows: () => z.object({}).transform((): Command => ({ verb: 'workflows' })),

  health: () => z.object({}).transform((): Command => ({ verb: 'health' })),

  pause: () => z.object({ workflow: workflowRef }).transform((o): Command => ({ verb: 'pause', workflow: o.workflow })),

  resume: () => z.object({ workflow: workflowRef }).transform((o): Command => ({ verb: 'resume', workflow: o.workflow })),

  plan: () => z.object({ workflow: workflowRef }).transform((o): Command => ({ verb: 'plan', workflow: o.workflow })),

  schedules: () => z.object({}).transform((): Command => ({ verb: 'schedules' })),

  whoami: () => z.object({}).transform((): Command => ({ verb: 'whoami' })),

  help: () =>
    z.object({ topic: z.string().optional() }).transform((o, ctx): Command => {
      if (o.topic === undefined) return { verb: 'help' };
      const topic = verbWord(o.topic);
      if (topic === undefined) return reject(ctx, `no help for ${show(o.topic)}: not a command`);
      return { verb: 'help', topic };
    }),

  serve: () => z.object({}).transform((): Command => ({ verb: 'serve' })),

  migrate: () => z.object({}).transform((): Command => ({ verb: 'migrate' })),

  demo: () =>
    z.object({ postings: boundedInt(DEMO_POSTINGS.max).default(DEMO_POSTINGS.default) }).transform((o): Command => ({ verb: 'demo', postings: o.postings })),

  prune: () =>
    z
      .object({
        'older-than': z
          .string()
          .regex(/^[1-9][0-9]{0,4}d$/, 'must be a number of days, like 30d (at most 99999d)')
          .transform((s) => Number(s.slice(0, -1)))
          .optional(),
        'dry-run': flag,
      })
      .transform((o): Command => ({ verb: 'prune', ...(o['older-than'] !== undefined && { olderThanDays: o['older-than'] }), dryRun: o['dry-run'] })),

  db: () =>
    z
      .object({
        action: z.string().optional(),
        role: z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/, 'must be a role name (letters, digits, _ and -, at most 63)')
          .optional(),
        apply: flag,
      })
      .transform((o, ctx): Command => {
        const action = o.action === undefined ? undefined : asciiLower(o.action);
        if (action === undefined) return reject(ctx, 'db needs an action: db stop, or db grants');
        if (action === 'grants') return { verb: 'db-grants', ...(o.role !== undefined && { role: o.role }), apply: o.apply };
        if (action !== 'stop') return reject(ctx, `unknown db action ${show(o.action!)}: db stop, or db grants`);
        if (o.role !== undefined || o.apply) return reject(ctx, '--role and --apply go with db grants, not db stop');
        return { verb: 'db-stop' };
      }),
};

const built = new Map<VerbWord, z.ZodType<Command>>();

function schemaOf(word: VerbWord): z.ZodType<Command> {
  let schema = built.get(word);
  if (!schema) {
    schema = SCHEMAS[word]();
    built.set(word, schema);
  }
  return schema;
}

/** Options every verb accepts. */
const GLOBAL_OPTIONS = { json: 'switch' } as const;
const GLOBAL_CLI_OPTIONS = ['json'];

// ─── Parsing ─────────────────────────────────────────────────────────────────

export function parseCommand(input: string | string[], options: { surface: Surface }): ParseResult {
  try {
    return parse(input, options.surface);
  } catch (error) {
    // Unreachable by design (the property test hunts for it); a user still gets an answer, not a crash.
    return { ok: false, error: `internal parser error: ${oneLine(error, { max: 200 })}`, usage: usage(undefined, options.surface) };
  }
}

function parse(input: string | string[], surface: Surface): ParseResult {
  const overview = (error: string): ParseResult => ({ ok: false, error, usage: usage(undefined, surface) });

  const length = typeof input === 'string' ? input.length : input.reduce((sum, token) => sum + token.length + 1, -1);
  if (length > MAX_INPUT_LENGTH) return overview(`command too long (${length} characters, at most ${MAX_INPUT_LENGTH})`);

  let tokens: string[];
  if (typeof input === 'string') {
    const tokenised = tokenise(input);
    if (typeof tokenised === 'string') return overview(tokenised);
    tokens = tokenised;
    // Slack sends the text after the command, the console gets it all; people
    // also paste CLI lines. Either way the command name is not a verb.
    const first = tokens[0];
    if (first !== undefined && ['/workflow', 'workflow'].includes(asciiLower(first))) tokens.shift();
  } else {
    tokens = [...input];
  }

  // `workflow --json run 3` is how CLI flags are often written: move it after the verb.
  if (tokens[0] !== undefined && asciiLower(tokens[0]) === '--json') {
    if (tokens.length === 1) return overview('--json needs a command');
    tokens = [tokens[1]!, tokens[0], ...tokens.slice(2)];
  }

  const [first, ...rest] = tokens;
  if (first === undefined) return overview('empty command: nothing to do');
  const word = verbWord(first);
  if (word === undefined) return overview(`unknown command ${show(first)}`);
  const spec = VERBS[word];
  const fail = (error: string): ParseResult => ({ ok: false, error, usage: usage(word, surface) });
  if (spec.cliOnly && surface === 'chat') return overview(`${word} is only available in the CLI`);

  const read = readArguments(word, spec, rest, surface);
  if (typeof read === 'string') return fail(read);

  const result = schemaOf(word).safeParse(read.raw);
  if (!result.success) return fail(explain(result.error.issues[0], word, spec, read));
  return { ok: true, command: result.data, json: read.raw.json === true };
}

/**
 * Splits on whitespace; "double" and 'single' quotes group, and join with
 * adjacent text as in a shell (--subject="12" is --subject=12). No backslash
 * escapes: nothing in the grammar needs them. Returns an error message on an
 * unclosed quote.
 */
function tokenise(text: string): string[] | string {
  const tokens: string[] = [];
  let current = '';
  let inToken = false; // "" is a token, so emptiness alone cannot say
  let quote: string | undefined;
  let quoteStart = 0;
  let index = 0;
  for (const ch of text) {
    const q = own(QUOTES, ch);
    if (quote !== undefined) {
      if (q === quote) quote = undefined;
      else current += ch;
    } else if (q !== undefined) {
      quote = q;
      quoteStart = index;
      inToken = true;
    } else if (/\s/u.test(ch)) {
      if (inToken) tokens.push(current);
      current = '';
      inToken = false;
    } else {
      current += ch;
      inToken = true;
    }
    index += ch.length;
  }
  if (quote !== undefined) return `unclosed ${quote} quote at ${show(text.slice(quoteStart))}`;
  if (inToken) tokens.push(current);
  // Slack and macOS turn a typed "--" into a dash: —force means --force.
  return tokens.map((token) => token.replace(/^[\u2013\u2014]/, '--'));
}

// Slack clients "smarten" quotes as they are typed; a curly quote opens or closes like a straight one.
const QUOTES: Readonly<Record<string, string>> = { '"': '"', "'": "'", '\u201c': '"', '\u201d': '"', '\u2018': "'", '\u2019': "'" };

interface ReadArguments {
  raw: Raw;
  /** How the user spelled each option, for messages (--posting-id rather than --subject). */
  spelled: Map<string, string>;
}

/** Sorts tokens into positionals and options; knows nothing of what values mean. */
function readArguments(word: VerbWord, spec: VerbInfo, tokens: readonly string[], surface: Surface): ReadArguments | string {
  const options: Readonly<Record<string, 'value' | 'switch'>> = { ...spec.options, ...GLOBAL_OPTIONS };
  const cliOptions = [...(spec.cliOptions ?? []), ...GLOBAL_CLI_OPTIONS];
  const raw: Raw = {};
  const spelled = new Map<string, string>();
  let positional = 0;

  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (!isOption(token)) {
      const slot = spec.positionals[positional++];
      if (slot === undefined) return `unexpected argument ${show(token)}`;
      raw[slot.key] = token;
      continue;
    }

    const eq = token.indexOf('=');
    const name = eq === -1 ? token : token.slice(0, eq);
    const inline = eq === -1 ? undefined : token.slice(eq + 1);
    const lowered = asciiLower(name).replace(/^--/, '');
    const key = name.startsWith('--') ? (own(spec.aliases ?? {}, lowered) ?? lowered) : '';
    const kind = own(options, key);
    if (kind === undefined) return `unknown option ${show(name)} for ${word}`;
    if (surface === 'chat' && cliOptions.includes(key)) return `${name} is only available in the CLI`;
    const earlier = spelled.get(key);
    if (earlier !== undefined) return earlier === name ? `${name} is given twice` : `${name} repeats ${earlier}`;
    spelled.set(key, name);

    if (kind === 'switch') {
      if (inline !== undefined) return `${name} takes no value`;
      raw[key] = true;
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = tokens[i + 1];
      if (next !== undefined && !next.startsWith('--')) {
        value = next;
        i++;
      }
    }
    if (value === undefined || value === '') return `${name} needs a value`;
    raw[key] = value;
  }
  return { raw, spelled };
}

/** `--x`, or `-x` for a non-digit x (so -5 stays a value, to be refused as not positive). */
function isOption(token: string): boolean {
  return token.startsWith('--') || /^-[^0-9]/.test(token);
}

/** One line for the first problem zod found. */
function explain(issue: z.core.$ZodIssue | undefined, word: VerbWord, spec: VerbInfo, read: ReadArguments): string {
  if (issue === undefined) return `invalid ${word} command`;
  const key = issue.path[0];
  if (typeof key !== 'string') return issue.message; // whole-command problems are full sentences
  const label = read.spelled.get(key) ?? spec.positionals.find((p) => p.key === key)?.label ?? `--${key}`;
  const given = read.raw[key];
  if (given === undefined) return `${word} needs a ${label}`;
  return `${label} ${issue.message}, got ${show(String(given))}`;
}

// ─── Small helpers ───────────────────────────────────────────────────────────

/**
 * Quotes user text for a message: shortened, and with anything that could
 * break the line or hide itself (controls, line separators, invisible
 * formatting, lone surrogates) shown as an escape.
 */
function show(text: string): string {
  const chars = [...text];
  const shown = chars.slice(0, 40).map((ch) => (/[\p{C}\u2028\u2029"\\]/u.test(ch) ? escapeChar(ch) : ch));
  return `"${shown.join('')}${chars.length > 40 ? '…' : ''}"`;
}

function escapeChar(ch: string): string {
  if (ch === '"' || ch === '\\') return `\\${ch}`;
  return `\\u{${ch.codePointAt(0)!.toString(16)}}`;
}
