// What the CLI says and how it exits, across real processes (bin/workflow.js
// against a real PostgreSQL, the model played by a local server): exit codes
// for a run stopped by someone else (4) and for Ctrl-C (130); `run --detach`
// waiting for the serving instance's answer (0 with the run id, 3 with the
// reason; test/slack-operator.test.ts shows the refusal announced where runs are);
// `plan` (text and --json, nothing written but its audit entry); `whoami`;
// usage that says `workflow run`.
import assert from 'node:assert/strict';
import os from 'node:os';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { sql } from 'kysely';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import { eventually, runCli, startCli, type CliProcess } from './helpers/cli.ts';
import type { TestDatabase } from './helpers/database.ts';
import { migratedDatabase, type TestDb } from './helpers/engine.ts';
import { startOllamaStub, type OllamaStub } from './helpers/ollama-stub.ts';

const POSTINGS = 60;
const ME = `${os.userInfo().username}@${os.hostname()}`;

let database: TestDatabase;
let db: TestDb;
let ollama: OllamaStub;
let env: NodeJS.ProcessEnv;
const started: CliProcess[] = [];

function cli(args: string[]): CliProcess {
  const child = startCli(args, env);
  started.push(child);
  return child;
}

const runCount = async () => Number((await sql<{ n: number }>`SELECT count(*)::int AS n FROM workflow_runs`.execute(db)).rows[0]!.n);

async function runningWithProgress(): Promise<number> {
  return eventually(async () => {
    const row = await db.selectFrom('workflow_runs').select(['id', 'progress']).where('status', '=', 'running').executeTakeFirst();
    const done = row?.progress ? Object.values(row.progress).reduce((n, p) => n + p.done, 0) : 0;
    return row && done >= 5 ? row.id : undefined;
  }, 'a running run with some progress');
}

beforeEach(async () => {
  ({ database, db } = await migratedDatabase('cli_operator'));
  await replaceDemoPostings(db, POSTINGS);
  ollama = await startOllamaStub({ delayMs: 20 });
  env = { DATABASE_URL: database.url, OLLAMA_URL: ollama.url, WORKFLOW_HEARTBEAT_MS: '200', WORKFLOW_FORCE_GRACE_MS: '1000' };
});

afterEach(async () => {
  for (const child of started.splice(0)) {
    if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
    await child.exited;
  }
  await ollama.close();
  await db.destroy();
  await database.drop();
});

describe('exit codes of a foreground run', () => {
  test('stopped by someone else: 4, and the summary says who', async () => {
    ollama.setDelay(150);
    const owner = cli(['run', '3001']);
    const runId = await runningWithProgress();
    ollama.setDelay(120_000);
    const stop = await runCli(['stop', String(runId)], env);
    assert.equal(stop.code, 0, stop.stderr);
    const result = await owner.exited;
    assert.equal(result.code, 4, result.stderr);
    assert.ok(result.stdout.includes(`run #${runId} stopped by ${ME} in`), result.stdout);
  });

  test('Ctrl-C: 130, as a shell expects of an interrupted command', async () => {
    ollama.setDelay(150);
    const owner = cli(['run', '3001']);
    const runId = await runningWithProgress();
    ollama.setDelay(120_000);
    owner.child.kill('SIGINT');
    const result = await owner.exited;
    assert.equal(result.code, 130, result.stderr);
    assert.match(result.stdout, new RegExp(`^run #${runId} stopped in `, 'm'));
  });

  test('completed: 0, with progress as a share and the summary in words, changed metrics first', async () => {
    const result = await runCli(['run', '3001'], env);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /expected work: summary 60, skills 60, ihl 60 \(pending now: summary 60, skills 0, ihl 0\)/);
    assert.match(
      result.stdout,
      new RegExp(`^run #\\d+ completed in [\\d.]+ s — workflow 3001 \\(postings-enrichment\\), global_batch, requested by ${ME.replace(/[.]/g, '\\.')}$`, 'm'),
    );
    assert.match(
      result.stdout,
      /metric\s+before\s+after\s+delta\npostings_with_summary\s+0\s+60\s+\+60\npostings_with_skills\s+0\s+60\s+\+60\npostings_with_ihl\s+0\s+60\s+\+60\nunchanged: postings_total 60$/m,
    );
  });
});

describe('plan, whoami and usage', () => {
  test('plan: the forecast, the estimate once there is history, whether a run would start; writes only its audit entry', async () => {
    const first = await runCli(['plan', '3001', '--json'], env);
    assert.equal(first.code, 0, first.stderr);
    const plan = JSON.parse(first.stdout).plan;
    assert.deepEqual(plan.pending, { summary: 60, skills: 0, ihl: 0 });
    assert.deepEqual(plan.forecast, { summary: 60, skills: 60, ihl: 60 });
    assert.equal(plan.interactions, 180);
    assert.equal(plan.estimate, null);
    assert.deepEqual(plan.verdict, { start: true });
    assert.equal(await runCount(), 0, 'a dry run starts nothing');
    const audit = await db.selectFrom('audit_log').selectAll().where('action', '=', 'plan').execute();
    assert.equal(audit.length, 1);
    assert.equal(audit[0]!.actor, ME);

    const text = await runCli(['plan', 'postings-enrichment'], env);
    assert.match(text.stdout, /^summary\s+60\s+60\nskills\s+0\s+60\nihl\s+0\s+60$/m);
    assert.match(text.stdout, /no history yet/);
    assert.match(text.stdout, /a run would start now/);

    assert.equal((await runCli(['run', '3001'], env)).code, 0);
    await sql`UPDATE postings SET summary = NULL, skills = NULL, ihl_score = NULL WHERE id <= 30`.execute(db);
    const after = JSON.parse((await runCli(['plan', '3001', '--json'], env)).stdout).plan;
    assert.deepEqual(after.forecast, { summary: 30, skills: 30, ihl: 30 });
    assert.equal(after.estimate.fromRuns, 1);
    assert.ok(after.estimate.seconds > 0);
    assert.equal(after.verdict.reason, 'rate_limited');
    const words = await runCli(['plan', '3001'], env);
    assert.match(words.stdout, /90 interactions; about \d+ s \(at the per-step pace of the last run\)/);
    assert.match(words.stdout, /refused by the rate limit until .* UTC \(in (59 s|\d\d s)\); the last batch started \d+ s ago/);
  });

  test('whoami in a terminal; usage says workflow, not /workflow', async () => {
    const who = await runCli(['whoami'], env);
    assert.equal(who.code, 0, who.stderr);
    assert.match(who.stdout, new RegExp(`you are ${ME.replace(/[.]/g, '\\.')} on the cli: unrestricted`));
    const unknown = await runCli(['run', 'nosuch'], env);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^Usage: workflow run /m);
    assert.doesNotMatch(unknown.stderr, /\/workflow/);
    const help = await runCli(['help', 'run'], env);
    assert.match(help.stdout, /Compatibility flags of run_workflow\.py: --mode single_posting/);
    assert.doesNotMatch(help.stdout, /[Ss]eed/);
  });
});

describe('schedules from the environment', () => {
  test('schedules lists the next start in the time zone asked; a bad schedule stops the CLI with the variable named', async () => {
    const scheduled = { ...env, WORKFLOW_SCHEDULES: JSON.stringify({ 3001: { cron: '30 6 * * 1-5', timezone: 'America/New_York' } }) };
    const listed = await runCli(['schedules'], scheduled);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^3001 postings-enrichment: "30 6 \* \* 1-5" in America\/New_York; next start \d{4}-\d\d-\d\d 1[01]:30:00 UTC \(in .*\)$/m);
    const json = JSON.parse((await runCli(['schedules', '--json'], scheduled)).stdout);
    assert.equal(json.schedules[0].workflowId, 3001);
    // pause now applies to the scheduled workflow.
    const paused = await runCli(['pause', '3001'], scheduled);
    assert.equal(paused.code, 0, paused.stderr);
    assert.match(
      (await runCli(['schedules'], scheduled)).stdout,
      new RegExp(`paused by ${ME.replace(/[.]/g, '\\.')}: its ticks start nothing until \`resume 3001\``),
    );

    for (const bad of [
      '{"3001": {"cron": "61 * * * *"}}',
      '{"3001": {"cron": "0 3 * * *", "timezone": "Mars/Olympus"}}',
      '{"x": {"cron": "0 3 * * *"}}',
      'not json',
    ]) {
      const refused = await runCli(['schedules'], { ...env, WORKFLOW_SCHEDULES: bad });
      assert.equal(refused.code, 2, bad);
      assert.match(refused.stderr, /WORKFLOW_SCHEDULES/, bad);
    }
    assert.equal((await runCli(['schedules'], env)).stdout.trim(), "no workflow is scheduled (a module's `schedule`, or WORKFLOW_SCHEDULES)");
  });
});

describe('run --detach waits for the serving instance', () => {
  test('accepted: 0 with the run id; refused by the rate limit: 3 with the reason', async () => {
    const server = cli(['serve']);
    await server.waitFor(/console chat/);
    await eventually(
      async () =>
        Number(
          (await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'workflow-serve:%'`.execute(db)).rows[0]!.n,
        ) > 0,
      'serve listening',
    );
    const accepted = await runCli(['run', '3001', '--detach'], env);
    assert.equal(accepted.code, 0, accepted.stderr);
    const [, id] = accepted.stdout.match(/^run #(\d+) (started|completed) on a serving instance/m) ?? [];
    assert.ok(id, accepted.stdout);
    await eventually(
      async () => (await db.selectFrom('workflow_runs').select('status').where('id', '=', Number(id)).executeTakeFirst())?.status === 'completed',
      'the run to complete',
    );

    const refused = await runCli(['run', '3001', '--detach'], env);
    assert.equal(refused.code, 3, refused.stdout);
    const [, refusedId] = refused.stderr.match(/refused: run #(\d+) was refused by the serving instance: workflow 3001 last started a batch at .* \(in /) ?? [];
    assert.ok(refusedId, refused.stderr);
    const audit = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('run_id', '=', Number(refusedId))
      .where('outcome', '=', 'refused')
      .executeTakeFirstOrThrow();
    assert.equal((audit.details as { refusal: string }).refusal, 'rate_limited');
    server.child.kill('SIGTERM');
    assert.equal((await server.exited).code, 0);
    // One start-up banner.
    assert.equal(server.stdout.split('workflow-chatops serving').length + server.stderr.split('workflow-chatops serving').length - 2, 1);
    assert.doesNotMatch(server.stdout, /workflow console: type/);
  });
});
