import { type Kysely, type RawBuilder, sql, type Transaction } from 'kysely';
import { oneLine } from '../lib/one-line.ts';
import type { ResolvedWorkflow } from './define.ts';
import { WorkflowModuleError, type WorkflowRegistry } from './registry.ts';

// A workflow's queries are TypeScript that builds SQL, so nothing proves they
// run until the database sees them. A step whose `pending` selects no
// `subject_id` would otherwise be registered, start a run and fail mid-run
// with "column p.subject_id does not exist", naming neither file nor step.
// Each query is planned and executed with LIMIT 0 inside a read-only
// transaction that is rolled back: it touches no row and writes nothing,
// whatever functions the query calls. The columns the engine reads by name
// are selected by name, so PostgreSQL says which one is missing, and
// `subject_id` is compared with a bigint as the engine's claims do
// (src/db/queries/claim-interactions.ts), so an id that is no integer
// (text, uuid) is refused here rather than paged in the wrong order.

/** One query of a workflow that does not run, named as a person would look for it. */
export interface QueryProblem<DB> {
  workflow: ResolvedWorkflow<DB>;
  /** `step "summary": pending` or `metrics`. */
  where: string;
  problem: string;
}

interface Check<DB> {
  workflow: ResolvedWorkflow<DB>;
  where: string;
  /** The statement that runs the workflow's query with LIMIT 0; throws if the query cannot even be built. */
  statement: (db: Kysely<DB>) => RawBuilder<unknown>;
}

/** Every query of every workflow that fails against this database; empty when all of them run. */
export async function queryProblems<DB>(db: Kysely<DB>, workflows: readonly ResolvedWorkflow<DB>[]): Promise<QueryProblem<DB>[]> {
  const checks = workflows.flatMap((workflow) => checksOf(workflow));
  // The common case, every query fine, costs one transaction; only a failure
  // pays for finding every query that fails, one transaction each.
  if ((await runRolledBack(db, checks)) === undefined) return [];
  const problems: QueryProblem<DB>[] = [];
  for (const check of checks) {
    const problem = await runRolledBack(db, [check]);
    if (problem !== undefined) problems.push({ workflow: check.workflow, where: check.where, problem });
  }
  return problems;
}

/**
 * Refuses a registry whose queries do not run against this database, naming
 * the module's file, the workflow and each failing query: a WorkflowModuleError
 * for the first module that has any. Run after the workflows' own migrations
 * (their tables must exist) and before they are registered, so a broken
 * module leaves no trace.
 */
export async function checkWorkflowQueries<DB>(db: Kysely<DB>, registry: WorkflowRegistry): Promise<void> {
  const modules = registry.modules();
  const problems = await queryProblems(
    db,
    modules.map((m) => m.workflow as ResolvedWorkflow<DB>),
  );
  const first = problems[0];
  if (!first) return;
  const { file } = modules.find((m) => m.workflow.id === first.workflow.id)!;
  const ofModule = problems.filter((p) => modules.find((m) => m.workflow.id === p.workflow.id)?.file === file);
  const described = ofModule.map((p, i) => {
    const sameWorkflow = i > 0 && ofModule[i - 1]!.workflow === p.workflow;
    return `${sameWorkflow ? '' : `workflow ${p.workflow.id} (${p.workflow.name}): `}${p.where}: ${p.problem}`;
  });
  throw new WorkflowModuleError(file, `a query fails against the database: ${described.join('; ')}`);
}

/**
 * The SQL and parameters of every statement queryProblems would run, in
 * order: what a check depends on in the code, for the setup fingerprint
 * (src/workflows/setup-fingerprint.ts). Undefined when a query cannot even be
 * built, so that the check runs and says why.
 */
export function checkedStatements<DB>(db: Kysely<DB>, workflows: readonly ResolvedWorkflow<DB>[]): string[] | undefined {
  try {
    return workflows
      .flatMap((workflow) => checksOf(workflow))
      .map((check) => {
        const { sql: text, parameters } = check.statement(db).compile(db);
        return `${check.workflow.id} ${check.where}: ${text} ${JSON.stringify(parameters, (_key, value: unknown) => (typeof value === 'bigint' ? `${value}n` : value))}`;
      });
  } catch {
    return undefined;
  }
}

function checksOf<DB>(workflow: ResolvedWorkflow<DB>): Check<DB>[] {
  const checks: Check<DB>[] = [{ workflow, where: 'metrics', statement: (db) => sql`SELECT * FROM (${workflow.metrics(db)}) AS q LIMIT 0` }];
  for (const step of workflow.steps) {
    checks.push({
      workflow,
      where: `step "${step.name}": pending`,
      statement: (db) => sql`SELECT q.subject_id::bigint FROM (${step.pending(db)}) AS q WHERE q.subject_id > 0::bigint LIMIT 0`,
    });
    const pendingCount = step.pendingCount;
    if (pendingCount) {
      checks.push({ workflow, where: `step "${step.name}": pendingCount`, statement: (db) => sql`SELECT q.pending FROM (${pendingCount(db)}) AS q LIMIT 0` });
    }
  }
  return checks;
}

/** Runs the checks in one read-only transaction that is rolled back; the first failure's description, or undefined. */
async function runRolledBack<DB>(db: Kysely<DB>, checks: Check<DB>[]): Promise<string | undefined> {
  let problem: string | undefined;
  try {
    await db
      .transaction()
      .setAccessMode('read only')
      .execute(async (tx: Transaction<DB>) => {
        const statements: RawBuilder<unknown>[] = [];
        for (const check of checks) {
          try {
            statements.push(sql`SELECT NULL FROM (${check.statement(tx)}) AS c`);
          } catch (error) {
            problem = `building the query threw: ${oneLine(error, { max: 300 })}`;
            throw ROLLBACK;
          }
        }
        // One statement for them all: one round trip for every start of the
        // CLI, whatever the number of workflows and steps.
        if (statements.length > 0) await sql`${sql.join(statements, sql` UNION ALL `)}`.execute(tx);
        // Rolled back, not committed: the check must leave nothing behind.
        throw ROLLBACK;
      });
  } catch (error) {
    if (error !== ROLLBACK) return describe(error);
  }
  return problem;
}

function describe(error: unknown): string {
  const message = oneLine(error instanceof Error ? error.message : error, { max: 300 });
  const notInteger = /^operator does not exist: (.+) > bigint$/.exec(message);
  if (notInteger) return `subject_id is ${notInteger[1]}, not an integer (the engine pages subjects by a bigint id)`;
  // `q` is the check's alias, not a name in the module.
  const missing = /^column q\.(\w+) does not exist$/.exec(message);
  return missing ? `selects no ${missing[1]} column` : message;
}

const ROLLBACK = Symbol('rollback');
