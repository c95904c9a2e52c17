// The engine's safety rules across real OS processes: the CLI as users run
// it, against a real PostgreSQL, with Ollama played by a local HTTP server so
// that handlers take time and can be aborted.
import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import os from 'node:os';
import { sql } from 'kysely';
import pg from 'pg';
import { computeLockKey } from '../src/db/queries/locks.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import { eventually, runCli, startCli, type CliProcess } from './helpers/cli.ts';
import { assertDomainMatchesInteractions } from './helpers/chaos.ts';
import { migratedDatabase, type TestDb } from './helpers/engine.ts';
import type { TestDatabase } from './helpers/database.ts';
import { startOllamaStub, type OllamaStub } from './helpers/ollama-stub.ts';

const POSTINGS = 120;
const ME = `${os.userInfo().username}@${os.hostname()}`;

let database: TestDatabase;
let db: TestDb;
let ollama: OllamaStub;
let env: NodeJS.ProcessEnv;
const started: CliProcess[] = [];

function cli(args: string[], extra: NodeJS.ProcessEnv = {}): CliProcess {
  const child = startCli(args, { ...env, ...extra });
  started.push(child);
  return child;
}

async function run(id: number) {
  return db.selectFrom('workflow_runs').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

async function interactionStatuses(runId?: number): Promise<Record<string, number>> {
  let query = db
    .selectFrom('interactions')
    .select(['status', sql<number>`count(*)::int`.as('n')])
    .groupBy('status');
  if (runId !== undefined) query = query.where('run_id', '=', runId);
  return Object.fromEntries((await query.execute()).map((r) => [r.status, r.n]));
}

async function completedOf(runId: number): Promise<number> {
  return (await interactionStatuses(runId)).completed ?? 0;
}

async function waitForProgress(runId?: number): Promise<number> {
  return eventually(async () => {
    const row = await db
      .selectFrom('workflow_runs')
      .select('id')
      .where('status', '=', 'running')
      .$if(runId !== undefined, (q) => q.where('id', '=', runId!))
      .executeTakeFirst();
    if (!row) return undefined;
    return (await completedOf(row.id)) >= 10 ? row.id : undefined;
  }, 'a running run with some completed interactions');
}

beforeEach(async () => {
  ({ database, db } = await migratedDatabase('cli'));
  await replaceDemoPostings(db, POSTINGS);
  ollama = await startOllamaStub({ delayMs: 40 });
  env = {
    DATABASE_URL: database.url,
    OLLAMA_URL: ollama.url,
    WORKFLOW_HEARTBEAT_MS: '200',
    WORKFLOW_FORCE_GRACE_MS: '1000',
  };
});

afterEach(async () => {
  for (const child of started.splice(0)) {
    if (child.child.exitCode === null && child.child.signalCode === null) {
      child.child.kill('SIGCONT');
      child.child.kill('SIGKILL');
    }
    await child.exited;
  }
  await ollama.close();
  await db.destroy();
  await database.drop();
});

describe('two processes', () => {
  test('asking for the same global_batch at once: exactly one runs, the other is refused naming it, both are audited', async () => {
    ollama.setDelay(400); // the winner cannot finish before the loser asks
    const a = cli(['run', '3001']);
    const b = cli(['run', '3001']);
    const first = await Promise.race([a.exited, b.exited]);
    assert.equal(first.code, 3, first.stderr);
    const runningRun = await db.selectFrom('workflow_runs').select('id').where('status', '=', 'running').executeTakeFirstOrThrow();
    assert.match(first.stderr, new RegExp(`already running as run #${runningRun.id}, started by ${ME.replace('.', '\\.')}`));
    ollama.setDelay(0);
    const [ra, rb] = await Promise.all([a.exited, b.exited]);
    const winner = ra === first ? rb : ra;
    assert.equal(winner.code, 0, winner.stderr);
    assert.match(winner.stdout, new RegExp(`run #${runningRun.id} completed`));
    const runs = await db.selectFrom('workflow_runs').select(['id', 'status']).execute();
    assert.deepEqual(runs, [{ id: runningRun.id, status: 'completed' }]);
    const audit = await db
      .selectFrom('audit_log')
      .select(['action', 'outcome', 'run_id', 'source'])
      .where('outcome', '!=', 'event')
      .orderBy('outcome')
      .execute();
    assert.deepEqual(audit, [
      { action: 'run', outcome: 'accepted', run_id: runningRun.id, source: 'cli' },
      { action: 'run', outcome: 'refused', run_id: runningRun.id, source: 'cli' },
    ]);
  });
});

describe('stop from another process', () => {
  test('ends the run with in-flight handlers aborted and work back to pending; single_run finishes the rest; the deltas add up', async () => {
    ollama.setDelay(150);
    const owner = cli(['run', '3001']);
    const runId = await waitForProgress();
    // From here on the model never answers in time: the run cannot finish
    // before the stop arrives, however slowly the stop process starts.
    ollama.setDelay(120_000);
    const stop = await runCli(['stop', String(runId)], env);
    assert.equal(stop.code, 0, stop.stderr);
    assert.match(stop.stdout, new RegExp(`run ${runId} stopped`));
    const ownerResult = await owner.exited;
    // Stopped by someone else: its own exit code, not the 0 of a completed run.
    assert.equal(ownerResult.code, 4, ownerResult.stderr);
    assert.ok(ownerResult.stdout.includes(`run #${runId} stopped by ${ME} in`), ownerResult.stdout);

    const stopped = await run(runId);
    assert.equal(stopped.status, 'stopped');
    assert.equal(stopped.stopped_by, ME);
    assert.ok(ollama.aborted > 0, 'in-flight model calls were aborted');
    const statuses = await interactionStatuses();
    assert.equal(statuses.running, undefined, 'nothing left running');
    assert.ok((statuses.pending ?? 0) > 0, 'unfinished interactions went back to pending');

    ollama.setDelay(0);
    const resume = await runCli(['run', '3001', '--mode', 'single_run', '--run', String(runId), '--json'], env);
    assert.equal(resume.code, 0, resume.stderr);
    const resumed = JSON.parse(resume.stdout) as { run: { id: number; status: string; resumesRunId: number } };
    assert.equal(resumed.run.status, 'completed');
    assert.equal(resumed.run.resumesRunId, runId);

    const second = await run(resumed.run.id);
    const total: Record<string, number> = {};
    for (const d of [stopped.delta!, second.delta!]) for (const [k, v] of Object.entries(d as Record<string, number>)) total[k] = (total[k] ?? 0) + v;
    // One uninterrupted run over fresh demo data takes every posting through every step.
    assert.deepEqual(total, { postings_total: 0, postings_with_summary: POSTINGS, postings_with_skills: POSTINGS, postings_with_ihl: POSTINGS });
    assert.equal((await interactionStatuses()).pending, undefined);
    await assertDomainMatchesInteractions(db);
  });
});

describe('force', () => {
  test('against a frozen owner: terminates its backend, takes over, completes; the resumed owner writes nothing', async () => {
    ollama.setDelay(100);
    const owner = cli(['run', '3001']);
    const oldRunId = await waitForProgress();
    owner.child.kill('SIGSTOP');

    const force = await runCli(['force', '3001', '--json'], { ...env });
    assert.equal(force.code, 0, force.stderr);
    const forced = JSON.parse(force.stdout) as { run: { id: number; status: string; forcedRunId: number; forcedBy: string } };
    assert.equal(forced.run.status, 'completed');
    assert.equal(forced.run.forcedRunId, oldRunId);
    assert.equal(forced.run.forcedBy, ME);

    const old = await run(oldRunId);
    assert.equal(old.status, 'stopped');
    assert.equal(old.stopped_by, ME);
    assert.equal(old.ended_reason, 'forced');
    assert.equal(old.taken_over_by_run_id, forced.run.id);
    const oldInteractions = await interactionStatuses(oldRunId);
    await assertDomainMatchesInteractions(db);

    owner.child.kill('SIGCONT');
    const resumed = await owner.exited;
    // Its lock connection was terminated: it finds its lock lost (1) or its run taken over (4), whichever it sees first.
    assert.ok(resumed.code === 1 || resumed.code === 4, `exit ${resumed.code}: ${resumed.stderr}`);
    assert.match(resumed.stderr, /wrote nothing more/);
    // Fencing: nothing the old owner did after resuming reached the database.
    assert.deepEqual(await run(oldRunId), old);
    assert.deepEqual(await interactionStatuses(oldRunId), oldInteractions);
    await assertDomainMatchesInteractions(db);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM postings WHERE ihl_score IS NULL`.execute(db);
    assert.equal(rows[0]!.n, 0);
  });
});

describe('crash', () => {
  test('SIGKILL mid-run: the lock is free at once; the next check marks the run abandoned; resume completes the work', async () => {
    ollama.setDelay(60);
    const owner = cli(['run', '3001']);
    const runId = await waitForProgress();
    owner.child.kill('SIGKILL');
    await owner.exited;

    const key = await computeLockKey(db, 3001, null);
    const probe = new pg.Client({ connectionString: database.url });
    await probe.connect();
    try {
      await eventually(async () => (await probe.query('SELECT pg_try_advisory_lock($1::bigint) AS ok', [key])).rows[0].ok, 'the lock to be free', 5_000);
      await probe.query('SELECT pg_advisory_unlock($1::bigint)', [key]);
    } finally {
      await probe.end();
    }

    const status = await runCli(['status', String(runId)], env);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`run #${runId} abandoned`));
    assert.equal((await interactionStatuses()).running, undefined, 'no interaction left running');
    await assertDomainMatchesInteractions(db);

    ollama.setDelay(0);
    const resume = await runCli(['run', '3001', '--mode', 'single_run', '--run', String(runId)], env);
    assert.equal(resume.code, 0, resume.stderr);
    assert.match(resume.stdout, /completed/);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM postings WHERE ihl_score IS NULL`.execute(db);
    assert.equal(rows[0]!.n, 0);
    await assertDomainMatchesInteractions(db);
  });
});

describe('bad input', () => {
  const counts = async () => {
    const { rows } = await sql<{ runs: number; interactions: number; audit: number }>`
      SELECT (SELECT count(*) FROM workflow_runs)::int AS runs, (SELECT count(*) FROM interactions)::int AS interactions,
             (SELECT count(*) FROM audit_log)::int AS audit`.execute(db);
    return rows[0]!;
  };

  for (const [args, code, pattern] of [
    [['run', '4242'], 2, /unknown workflow "4242"/],
    [['status', '999'], 2, /run 999 does not exist/],
    [['stop', '999'], 2, /run 999 does not exist/],
    [['frobnicate'], 2, /unknown command "frobnicate"/],
    [['run'], 2, /workflow/],
    [['stop', 'abc'], 2, /abc/],
    [['run', '3001', '--posting-id'], 2, /--posting-id/],
    [['run', '3001', '--bogus'], 2, /--bogus/],
  ] as const) {
    test(`workflow ${args.join(' ')} → exit ${code}, one-line reason and usage, only an audit entry written`, async () => {
      const before = await counts();
      const result = await runCli([...args], env);
      assert.equal(result.code, code, result.stderr);
      const [first] = result.stderr.split('\n');
      assert.match(first!, /^error: /);
      assert.match(first!, pattern);
      assert.equal(result.stdout, '');
      const afterCounts = await counts();
      assert.deepEqual(afterCounts, { ...before, audit: before.audit + 1 });
    });
  }

  for (const [variable, value] of [
    ['PORT', 'abc'],
    ['LOG_LEVEL', 'loud'],
    ['DATABASE_URL', 'mysql://nope'],
    ['OLLAMA_URL', 'not a url'],
  ] as const) {
    test(`invalid ${variable}: exit 2 naming the variable, nothing written`, async () => {
      const before = await counts();
      const result = await runCli(['run', '3001'], { ...env, [variable]: value });
      assert.equal(result.code, 2);
      assert.match(result.stderr, new RegExp(`^error: invalid environment: ${variable}: expected`));
      assert.deepEqual(await counts(), before);
    });
  }
});

describe('run --detach', () => {
  test('is refused when no instance serves, and handed to a serving instance otherwise', async () => {
    const refused = await runCli(['run', '3001', '--detach'], env);
    assert.equal(refused.code, 3);
    assert.match(refused.stderr, /no instance is serving/);
    assert.equal((await db.selectFrom('workflow_runs').select('id').execute()).length, 0);

    const server = cli(['serve']);
    await server.waitFor(/serving/);
    const detached = await runCli(['run', '3001', '--detach', '--json'], env);
    assert.equal(detached.code, 0, detached.stderr);
    const { view } = JSON.parse(detached.stdout) as { view: { id: number; status: string } };
    // It waited for the serving instance's answer: started, not merely queued.
    assert.notEqual(view.status, 'queued');
    const done = await eventually(async () => {
      const row = await run(view.id);
      return row.status === 'completed' ? row : undefined;
    }, 'the detached run to complete');
    assert.equal(done.interactions_completed, POSTINGS * 3);
    assert.equal(done.requested_by, ME);
    server.child.kill('SIGTERM');
    assert.equal((await server.exited).code, 0);
  });
});

before(() => {});
after(() => {});
