import os from 'node:os';
import type { App } from './app.ts';
import type { Config } from './config.ts';
import type { Command } from './commands/grammar.ts';
import { exitCode, toRunView, type CommandResult, type RunFinished } from './commands/results.ts';
import type { Actor } from './commands/service.ts';
import { plainHelp } from './commands/verbs.ts';
import type { ActiveRun, RunSummary } from './engine/engine.ts';
import type { PostingsTables } from './workflows/postings/schema.ts';

// Modules load at the command that needs them (import() below), not here: a
// process loads what its command uses and nothing more, so `help` starts as
// fast as Node itself, and only `serve` loads Slack and the metrics.

/** CLI entry: argv → command → service → render. Returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const help = plainHelp(argv, 'cli');
  if (help !== undefined) return print(help);
  const [{ parseCommand, usage }, { ConfigError, loadConfig }, { createLogger }] = await Promise.all([
    import('./commands/grammar.ts'),
    import('./config.ts'),
    import('./log.ts'),
  ]);
  const parsed = parseCommand(argv, { surface: 'cli' });
  if (parsed.ok && parsed.command.verb === 'help') return print(usage(parsed.command.topic, 'cli'));

  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) return fail(error.message, 2);
    throw error;
  }
  const log = createLogger(config.LOG_LEVEL, process.stderr, config.LOG_FORMAT);
  const actor: Actor = { id: `${os.userInfo().username}@${os.hostname()}`, source: 'cli' };

  if (parsed.ok && parsed.command.verb === 'db-stop') return stopDatabase(config);

  const [{ openApp }, { DATABASE_UNAVAILABLE, isConnectionError }] = await Promise.all([import('./app.ts'), import('./db/errors.ts')]);
  let app: App;
  try {
    app = await openApp(config, log);
  } catch (error) {
    if (!parsed.ok) return invalid(parsed.error, parsed.usage);
    if (isConnectionError(error)) return fail(`${DATABASE_UNAVAILABLE} (${(error as Error).message})`, 1);
    return fail((error as Error).message, 2);
  }
  try {
    if (!parsed.ok) {
      // Through the service, so the invalid request is audited.
      const { result } = await app.service.handle(argv, actor, 'cli');
      return await output(result, false);
    }
    return await runCommand(app, parsed.command, parsed.json, actor, argv);
  } catch (error) {
    log.error({ err: error }, 'command failed');
    return fail((error as Error).message, 1);
  } finally {
    await app.close();
  }
}

/** The engine's migrations and each workflow module's that this process applied, or that there were none. */
function migrationsApplied(app: App): string {
  const lines: string[] = [];
  if (app.applied.engine.length > 0) lines.push(`applied: ${app.applied.engine.join(', ')}`);
  for (const [id, names] of app.applied.workflows) {
    if (names.length === 0) continue;
    const name = app.registry.find(id)?.name;
    lines.push(`applied for workflow ${id}${name ? ` (${name})` : ''}: ${names.join(', ')}`);
  }
  return lines.length > 0 ? lines.join('\n') : 'schema is up to date (the engine and every workflow module)';
}

async function runCommand(app: App, command: Command, json: boolean, actor: Actor, argv: string[]): Promise<number> {
  switch (command.verb) {
    case 'migrate':
      // Opening the app (openApp) migrated, as the schema's owner: say what it applied.
      return print(migrationsApplied(app));
    case 'db-grants':
      return dbGrants(app, command.role, command.apply);
    case 'demo':
      return demo(app, command.postings);
    case 'serve': {
      const { serve } = await import('./cli/serve.ts');
      return serve(app);
    }
    default: {
      const { result } = await app.service.handle(argv, actor, 'cli');
      if (result.kind === 'run_started') return foreground(app, result.run, json);
      return output(result, json);
    }
  }
}

/** A run in the foreground: progress while it runs, then the audit summary. Ctrl-C stops it. */
async function foreground(app: App, run: ActiveRun, json: boolean): Promise<number> {
  const [{ renderFailures, renderResult }, { showProgress }] = await Promise.all([import('./cli/render.ts'), import('./cli/progress.ts')]);
  const steps = run.workflow.steps.map((s) => s.name);
  if (!json) process.stderr.write(`${renderResult({ kind: 'run_started', run, view: toRunView(run.row, run.workflow.name, steps) })}\n`);
  const stopProgress = json ? () => {} : showProgress(run, process.stderr, await app.views.pace(run.workflow.id).catch(() => null));
  // Stopped here (exit 130 or 143) rather than by someone else (exit 4).
  let interrupted: RunFinished['interrupted'];
  const onSignal = () => {
    interrupted = 'SIGINT';
    process.stderr.write(`\nstopping run #${run.id}…\n`);
    run.stop({ kind: 'stop', by: `${os.userInfo().username} (Ctrl-C)` });
  };
  // SIGTERM (a process manager, a deploy): graceful shutdown, as in `serve`.
  const onTerminate = () => {
    const grace = app.config.WORKFLOW_SHUTDOWN_GRACE_MS;
    interrupted = 'SIGTERM';
    process.stderr.write(`\nshutting down: run #${run.id} gets up to ${grace} ms to finish in-flight work…\n`);
    // Handed off when a serving instance would adopt it (docs/architecture.md, Adoption); stopped otherwise.
    const handoff = run.workflow.adopt ? app.engine.adopterPresent(run.workflow.id).catch(() => false) : Promise.resolve(false);
    let timer: NodeJS.Timeout | undefined;
    void Promise.all([handoff, Promise.race([run.quiesce(), new Promise<void>((resolve) => (timer = setTimeout(resolve, grace)))])]).then(([release]) => {
      clearTimeout(timer);
      run.stop(release ? { kind: 'handoff' } : { kind: 'shutdown' });
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onTerminate);
  try {
    const summary = await run.done;
    stopProgress();
    const finished: RunFinished = { kind: 'run_finished', summary, view: toRunView(summary.run, run.workflow.name, steps), interrupted };
    const lost = ownershipMessage(summary, app.engine.instanceId);
    if (lost) process.stderr.write(`${lost}\n`);
    if (json) {
      const audit = await app.views.auditRecord(run.id);
      return output({ kind: 'done', message: '' }, true, { run: finished.view, audit: audit ?? null }, exitCode(finished));
    }
    process.stdout.write(`${renderResult(finished)}\n`);
    if (finished.view.interactionsFailed > 0) process.stdout.write(`${renderFailures(finished.view, await app.views.failures(run.id))}\n`);
    return exitCode(finished);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onTerminate);
  }
}

/** What happened to a foreground run this process no longer owns, as the run's row says now. */
function ownershipMessage(summary: RunSummary, instance: string): string | undefined {
  const { run } = summary;
  if (summary.outcome === 'handed_off') return `run #${run.id} handed off: a serving instance takes it over and finishes it (same run id)`;
  if (summary.outcome !== 'taken_over' && summary.outcome !== 'lock_lost') return undefined;
  const owner = run.owners?.at(-1);
  if (run.status === 'running' && owner && owner.instance !== instance)
    return `run #${run.id} was taken over by instance ${owner.instance} at ${owner.since} after this process lost its ownership; this process started no new handler calls and wrote nothing more`;
  if (run.taken_over_by_run_id) return `run #${run.id} was taken over by run #${run.taken_over_by_run_id} (force); this process wrote nothing more`;
  if (run.status !== 'running')
    return `run #${run.id} was ended by another process (${run.status}, ${run.ended_reason}) after this process lost its ownership; this process wrote nothing more`;
  return `run #${run.id} lost its lock connection; this process wrote nothing more: a serving instance takes it over, or the next check marks it abandoned`;
}

async function demo(app: App, postings: number): Promise<number> {
  const [{ replaceDemoPostings }, { POSTINGS_WORKFLOW_ID }] = await Promise.all([
    import('./workflows/postings/demo.ts'),
    import('./workflows/postings/index.ts'),
  ]);
  const active = (await app.views.inProgress()).filter((r) => r.workflowId === POSTINGS_WORKFLOW_ID);
  if (active.length > 0) return fail(`workflow ${POSTINGS_WORKFLOW_ID} has run #${active[0]!.id} in progress; stop it before replacing the demo data`, 3);
  const started = Date.now();
  const count = await replaceDemoPostings(app.db.withTables<PostingsTables>(), postings);
  return print(`loaded ${count} demo postings in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/**
 * `db grants [--role <name>] [--apply]`: the statements that give the app's
 * role (DATABASE_URL's, or --role) its privileges, printed, or applied as the
 * owner (DATABASE_MIGRATION_URL's role). Refused for a role that could act as
 * the owner anyway.
 */
async function dbGrants(app: App, role: string | undefined, apply: boolean): Promise<number> {
  const [{ createKysely, createPool }, grants, { roleOf }] = await Promise.all([import('./db/connect.ts'), import('./db/grants.ts'), import('./app.ts')]);
  const owner = createKysely(createPool({ connectionString: app.migrationConnectionString, applicationName: 'workflow-setup', max: 1 }));
  try {
    const target = role ?? (await roleOf(app.connectionString));
    const me = await grants.currentRole(owner);
    if (target === me.role) {
      return fail(
        `role ${target} is the schema's owner (DATABASE_MIGRATION_URL's role): give DATABASE_URL a role of its own (CREATE ROLE … LOGIN), then run db grants --role <it>`,
        2,
      );
    }
    const check = await grants.checkAppRole(owner, target);
    if (check.problem) return fail(check.problem, 2);
    if (!apply) return print(`${grants.grantStatements(target, me.schema).join(';\n')};`);
    await grants.applyGrants(owner, target);
    return print(`granted ${target} the app's privileges in schema ${me.schema} (as ${me.role}); it may only append to audit_log`);
  } finally {
    await owner.destroy();
  }
}

async function stopDatabase(config: Config): Promise<number> {
  if (config.DATABASE_URL) return fail('DATABASE_URL is set: there is no embedded server to stop', 2);
  const [{ embeddedDataDir }, { stopEmbeddedServer }] = await Promise.all([import('./app.ts'), import('./db/embedded.ts')]);
  const outcome = await stopEmbeddedServer(embeddedDataDir(config));
  return print(outcome === 'stopped' ? 'embedded PostgreSQL stopped' : 'embedded PostgreSQL was not running');
}

async function output(result: CommandResult, json: boolean, payload?: unknown, code = exitCode(result)): Promise<number> {
  if (json) {
    process.stdout.write(`${JSON.stringify(payload ?? toJson(result), null, 2)}\n`);
    return code;
  }
  const { renderResult } = await import('./cli/render.ts');
  const text = renderResult(result);
  (code >= 2 ? process.stderr : process.stdout).write(`${text}\n`);
  return code;
}

function toJson(result: CommandResult): unknown {
  if (result.kind === 'run_started') return { kind: result.kind, run: result.view };
  return result;
}

function print(text: string): number {
  process.stdout.write(`${text}\n`);
  return 0;
}

function invalid(message: string, usageText: string): number {
  process.stderr.write(`error: ${message}\n\n${usageText}\n`);
  return 2;
}

function fail(message: string, code: number): number {
  process.stderr.write(`error: ${message}\n`);
  return code;
}
