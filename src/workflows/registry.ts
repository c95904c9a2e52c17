import { promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { sql, type Kysely, type Migration } from 'kysely';
import { z } from 'zod';
import type { EngineTables } from '../db/schema.ts';
import { oneLine } from '../lib/one-line.ts';
import { resolveDefaults, type ResolvedWorkflow, type WorkflowDefinition, type WorkflowEnvironment } from './define.ts';
import { registerWorkflowModuleHooks } from './module-hooks.ts';
import postingsWorkflow from './postings/index.ts';
import { scheduleProblem } from '../lib/cron.ts';

// Where workflows come from (WORKFLOW_MODULES, else the built-in example), the
// check each must pass before the engine sees it, and their registration in
// the `workflows` table that runs reference.

/** A workflow module that cannot be used. The message names the file and the problem, on one line. */
export class WorkflowModuleError extends Error {
  override name = 'WorkflowModuleError';
  readonly problem: string;
  /** The module as given (relative to the working directory), or "(built-in)" / "(inline)". */
  readonly file: string;

  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super(`workflow module ${file}: ${problem}`, options);
    this.file = file;
    this.problem = problem;
  }
}

/** The `workflows` table disagrees with the code: an id or a name belongs to another workflow. */
export class WorkflowSyncError extends Error {
  override name = 'WorkflowSyncError';
}

/** Where a workflow's own migrations are: a folder of files, or the migrations themselves. */
export type MigrationSource = { folder: string } | { migrations: Record<string, Migration> };

/** A workflow with the module that defined it, for errors that must name the file. */
export interface RegisteredWorkflow {
  workflow: ResolvedWorkflow;
  /** As given in WORKFLOW_MODULES, or "(built-in)" / "(inline)". */
  file: string;
  migrations: MigrationSource | undefined;
}

export interface WorkflowRegistry {
  /** Every workflow, defaults filled in, by id. */
  all(): ResolvedWorkflow[];
  /** Every workflow with its module, by id. */
  modules(): RegisteredWorkflow[];
  /** By id (a number, or digits as typed) or by name. */
  find(idOrName: string | number): ResolvedWorkflow | undefined;
}

const BUILT_IN = '(built-in)';
const INLINE = '(inline)';

/**
 * Loads the workflows of `modules` (WORKFLOW_MODULES: comma-separated paths to
 * .ts, .mts or .js files, relative to the working directory), or the built-in
 * example when it is undefined or empty. Each module's default export is a
 * definition or a factory `(env) => definition`.
 */
export async function loadWorkflows(modules: string | undefined, env: WorkflowEnvironment): Promise<WorkflowRegistry> {
  const files = (modules ?? '')
    .split(',')
    .map((f) => f.trim())
    .filter((f) => f !== '');
  if (files.length === 0) return buildRegistry([loadedFrom(BUILT_IN, undefined, validated(BUILT_IN, instantiate(BUILT_IN, postingsWorkflow, env)))]);

  registerWorkflowModuleHooks();
  const loaded: Loaded[] = [];
  for (const file of files) {
    const absolute = path.resolve(process.cwd(), file);
    loaded.push(loadedFrom(file, absolute, validated(file, instantiate(file, await importDefault(file, absolute), env))));
  }
  return buildRegistry(loaded);
}

/** A registry of definitions built in code (tests, embedding): checked like modules. */
export function createRegistry(definitions: WorkflowDefinition[]): WorkflowRegistry {
  return buildRegistry(definitions.map((d) => loadedFrom(INLINE, undefined, validated(INLINE, d))));
}

type Loaded = { file: string; definition: WorkflowDefinition; migrations: MigrationSource | undefined };

function loadedFrom(file: string, absolute: string | undefined, definition: WorkflowDefinition): Loaded {
  return { file, definition, migrations: migrationSource(file, absolute, definition.migrations) };
}

/** A folder given as a path is relative to the module's file; checked here, so a wrong path is a load error naming the module. */
function migrationSource(file: string, absolute: string | undefined, given: WorkflowDefinition['migrations']): MigrationSource | undefined {
  if (given === undefined) return undefined;
  if (typeof given !== 'string' && !(given instanceof URL)) return { migrations: given };
  let folder: string;
  if (given instanceof URL) {
    if (given.protocol !== 'file:') throw new WorkflowModuleError(file, `migrations: ${given.href} is not a file: URL`);
    folder = fileURLToPath(given);
  } else if (path.isAbsolute(given)) {
    folder = given;
  } else if (absolute !== undefined) {
    folder = path.resolve(path.dirname(absolute), given);
  } else {
    throw new WorkflowModuleError(file, `migrations: "${given}" is relative, but there is no module file to resolve it from; give an absolute path or a URL`);
  }
  if (!statSync(folder, { throwIfNoEntry: false })?.isDirectory()) throw new WorkflowModuleError(file, `migrations: folder not found (looked for ${folder})`);
  return { folder };
}

async function importDefault(file: string, absolute: string): Promise<unknown> {
  // Checked first because an import's "cannot find module" would not say
  // which of several paths was wrong in a way users recognise.
  const stat = await fs.stat(absolute).catch(() => undefined);
  if (!stat) throw new WorkflowModuleError(file, `file not found (looked for ${absolute})`);
  if (!stat.isFile()) throw new WorkflowModuleError(file, `not a file (${absolute})`);
  if (!/\.(ts|mts|cts|js|mjs|cjs)$/.test(absolute)) throw new WorkflowModuleError(file, 'not a .ts, .mts, .cts, .js, .mjs or .cjs module');

  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(absolute).href)) as Record<string, unknown>;
  } catch (error) {
    const kind = isSyntaxError(error) ? 'does not compile' : 'threw on import';
    // Node's own message does not say why a module's ES syntax is refused: it is in a CommonJS package.
    const hint = isSyntaxError(error) && ES_SYNTAX_IN_COMMONJS.test((error as Error).message) ? COMMONJS_HINT : '';
    throw new WorkflowModuleError(file, `${kind}: ${oneLine(error, { max: 300 })}${hint}`, { cause: error });
  }
  if (!('default' in module) || module.default === undefined) {
    const named = Object.keys(module);
    throw new WorkflowModuleError(
      file,
      `has no default export${named.length ? ` (it exports ${named.join(', ')})` : ''}; export the definition or a factory as default`,
    );
  }
  return module.default;
}

function instantiate(file: string, exported: unknown, env: WorkflowEnvironment): unknown {
  if (typeof exported !== 'function') return exported;
  try {
    return (exported as (env: WorkflowEnvironment) => unknown)(env);
  } catch (error) {
    throw new WorkflowModuleError(file, `factory threw: ${oneLine(error, { max: 300 })}`, { cause: error });
  }
}

function validated(file: string, value: unknown): WorkflowDefinition {
  if (value instanceof Promise) throw new WorkflowModuleError(file, 'factory returned a Promise; it must return the definition itself');
  const problems = definitionProblems(value);
  if (problems.length > 0) throw new WorkflowModuleError(file, `invalid definition: ${problems.join('; ')}`);
  return value as WorkflowDefinition;
}

function buildRegistry(loaded: Loaded[]): WorkflowRegistry {
  const byId = new Map<number, Loaded>();
  const byName = new Map<string, Loaded>();
  for (const entry of loaded) {
    const { id, name } = entry.definition;
    const sameId = byId.get(id);
    if (sameId) throw new WorkflowModuleError(entry.file, `workflow id ${id} is already defined by ${sameId.file} (${sameId.definition.name})`);
    const sameName = byName.get(name);
    if (sameName) throw new WorkflowModuleError(entry.file, `workflow name "${name}" is already defined by ${sameName.file} (id ${sameName.definition.id})`);
    byId.set(id, entry);
    byName.set(name, entry);
  }
  const registered = [...byId.values()]
    .map((e): RegisteredWorkflow => ({ workflow: resolveDefaults(e.definition), file: e.file, migrations: e.migrations }))
    .sort((a, b) => a.workflow.id - b.workflow.id);
  const resolved = registered.map((r) => r.workflow);
  const ids = new Map(resolved.map((w) => [w.id, w]));
  const names = new Map(resolved.map((w) => [w.name, w]));
  return {
    all: () => [...resolved],
    modules: () => [...registered],
    find(idOrName) {
      if (typeof idOrName === 'number') return ids.get(idOrName);
      const key = idOrName.trim().toLowerCase();
      return /^\d+$/.test(key) ? ids.get(Number(key)) : names.get(key);
    },
  };
}

// ---- validation ------------------------------------------------------------
// TypeScript checks modules written against define.ts; this catches the ones
// that were not (plain .js, `as any`, values computed from the environment)
// and names the wrong field at start-up instead of failing mid-run.

const fn = (what: string) => z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', `${what} must be a function`);
const positiveInt = z.number().int().positive();

const stepSchema = z.strictObject({
  name: z.string().regex(/^[a-z][a-z0-9_]*$/, 'must be lowercase letters, digits and _, starting with a letter'),
  pending: fn('pending'),
  pendingCount: fn('pendingCount').optional(),
  handle: fn('handle'),
  save: fn('save'),
  output: z
    .custom<object>((v) => typeof v === 'object' && v !== null && typeof (v as { safeParse?: unknown }).safeParse === 'function', 'output must be a zod schema')
    .optional(),
});

const workflowSchema = z.strictObject({
  id: positiveInt,
  name: z.string().regex(/^[a-z][a-z0-9-]*$/, 'must be lowercase letters, digits and -, starting with a letter'),
  description: z.string().optional(),
  subject: z.string().trim().min(1),
  steps: z.array(stepSchema).min(1),
  metrics: fn('metrics'),
  concurrency: z.custom<number | 'auto'>((v) => v === 'auto' || (Number.isInteger(v) && (v as number) > 0), "must be a positive integer or 'auto'").optional(),
  maxConcurrency: positiveInt.optional(),
  rateLimitSeconds: positiveInt.optional(),
  timeoutMs: positiveInt.optional(),
  // 0 is a meaningful choice here: try once, never again.
  retries: z.number().int().min(0).optional(),
  retryBackoffMs: positiveInt.optional(),
  batchSize: positiveInt.optional(),
  continuous: z
    .strictObject({
      table: z.string().regex(/^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/, 'must be a plain table name (optionally schema.table)'),
      debounceMs: positiveInt.optional(),
      checkIntervalMs: positiveInt.optional(),
    })
    .optional(),
  schedule: z
    .strictObject({ cron: z.string().trim().min(1), timezone: z.string().trim().min(1).optional() })
    .superRefine((schedule, ctx) => {
      const problem = scheduleProblem(schedule);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  services: z.array(z.strictObject({ name: z.string().trim().min(1), probe: fn('probe') })).optional(),
  migrations: z
    .union(
      [
        z.string().trim().min(1),
        z.instanceof(URL),
        z.record(z.string().regex(/^[^/\\]+$/, 'a migration name'), z.strictObject({ up: fn('up'), down: fn('down').optional() })),
      ],
      'must be a folder (a path or a file: URL) or an object of migrations ({ name: { up, down? } })',
    )
    .optional(),
  adopt: z.boolean().optional(),
  maxAdoptions: positiveInt.optional(),
  distributed: z.boolean().optional(),
  runConcurrency: positiveInt.optional(),
  forceApproval: z
    .union([z.boolean(), z.strictObject({ expiresAfterSeconds: positiveInt.max(7 * 24 * 3600, 'must be at most 604800 (a week)') })], {
      error: 'must be true, false or { expiresAfterSeconds: <seconds> }',
    })
    .optional(),
});

/** Every problem with a value as a workflow definition, one per field; empty when valid. */
export function definitionProblems(value: unknown): string[] {
  const result = workflowSchema.safeParse(value);
  const problems = result.success
    ? []
    : result.error.issues.map((issue) => {
        const where = issue.path.map(String).join('.');
        const message = issue.code === 'unrecognized_keys' ? `unknown field(s) ${issue.keys.join(', ')}` : issue.message;
        return where ? `${where}: ${message}` : message;
      });
  return [...problems, ...duplicateStepNames(value), ...concurrencyProblems(value)];
}

// maxConcurrency bounds the adaptive limit only: beside a fixed number it would be ignored, so say so.
function concurrencyProblems(value: unknown): string[] {
  const { concurrency, maxConcurrency } = (value ?? {}) as { concurrency?: unknown; maxConcurrency?: unknown };
  if (maxConcurrency === undefined || concurrency === 'auto') return [];
  return ["maxConcurrency: applies only with concurrency: 'auto'"];
}

// Outside the schema because zod skips refinements once any step has an
// issue, and a duplicate is worth reporting alongside the other problems.
function duplicateStepNames(value: unknown): string[] {
  const steps = (value as { steps?: unknown } | null)?.steps;
  if (!Array.isArray(steps)) return [];
  const seen = new Set<unknown>();
  const problems: string[] = [];
  for (const [index, step] of steps.entries()) {
    const name = (step as { name?: unknown } | null)?.name;
    if (typeof name !== 'string') continue;
    if (seen.has(name)) problems.push(`steps.${index}.name: duplicate step name "${name}"`);
    seen.add(name);
  }
  return problems;
}

// ---- registration ----------------------------------------------------------

/** The serialisable part of a definition, as stored in workflows.definition. */
export interface StoredDefinition {
  subject: string;
  steps: string[];
  concurrency: number | 'auto';
  rate_limit_seconds: number;
  timeout_ms: number;
  retries: number;
  retry_backoff_ms: number;
  batch_size: number;
}

export function storedDefinition(workflow: ResolvedWorkflow): StoredDefinition {
  return {
    subject: workflow.subject,
    steps: workflow.steps.map((s) => s.name),
    concurrency: workflow.concurrency,
    rate_limit_seconds: workflow.rateLimitSeconds,
    timeout_ms: workflow.timeoutMs,
    retries: workflow.retries,
    retry_backoff_ms: workflow.retryBackoffMs,
    batch_size: workflow.batchSize,
  };
}

/**
 * Registers every workflow in the `workflows` table (runs reference it), in
 * one transaction. Refuses, changing nothing, when an id is registered under
 * another name or a name under another id: past runs and audit entries of
 * the old workflow would otherwise be shown as the new one's.
 */
export async function syncWorkflows(db: Kysely<EngineTables>, registry: WorkflowRegistry): Promise<void> {
  const workflows = registry.all();
  if (workflows.length === 0) return;
  await db.transaction().execute(async (tx) => {
    // Serialises concurrent syncs (several instances starting at once), so the
    // check below still holds when the upserts run.
    await sql`LOCK TABLE workflows IN SHARE ROW EXCLUSIVE MODE`.execute(tx);
    const existing = await tx
      .selectFrom('workflows')
      .select(['id', 'name'])
      .where((eb) =>
        eb.or([
          eb(
            'id',
            'in',
            workflows.map((w) => w.id),
          ),
          eb(
            'name',
            'in',
            workflows.map((w) => w.name),
          ),
        ]),
      )
      .execute();
    const clashes: string[] = [];
    for (const row of existing) {
      const sameId = workflows.find((w) => w.id === row.id);
      if (sameId && sameId.name !== row.name) clashes.push(`workflow ${row.id} is registered as "${row.name}", not "${sameId.name}"`);
      const sameName = workflows.find((w) => w.name === row.name);
      if (sameName && sameName.id !== row.id) clashes.push(`workflow name "${row.name}" is registered to id ${row.id}, not ${sameName.id}`);
    }
    if (clashes.length > 0) {
      throw new WorkflowSyncError(`${clashes.join('; ')}: rename or renumber the definition, or change the workflows table deliberately`);
    }
    await tx
      .insertInto('workflows')
      .values(workflows.map((w) => ({ id: w.id, name: w.name, description: w.description, definition: JSON.stringify(storedDefinition(w)) })))
      .onConflict((oc) =>
        oc.column('id').doUpdateSet((eb) => ({
          description: eb.ref('excluded.description'),
          definition: eb.ref('excluded.definition'),
          synced_at: sql<Date>`now()`,
        })),
      )
      .execute();
  });
}

const ES_SYNTAX_IN_COMMONJS = /Cannot use import statement outside a module|Unexpected token 'export'/;
const COMMONJS_HINT =
  ' (Node loads a .ts or .js file of a package whose package.json says "type": "commonjs" as CommonJS: name the module .mts or .mjs, or write it with require and module.exports)';

function isSyntaxError(error: unknown): boolean {
  // Node's type stripping reports TypeScript it cannot run (bad syntax, and
  // syntax it does not strip: enums, parameter properties) as a SyntaxError too.
  return error instanceof SyntaxError;
}
