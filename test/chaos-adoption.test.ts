// Chaos: runs outlive their process (docs/architecture.md, Adoption). Real
// `workflow serve` processes on one database run the fixture workflow
// test/fixtures/adoption/workflow.ts, whose saves are counted in a table of
// their own:
// - SIGKILL of the owner while three instances serve: another instance adopts
//   the same run, it completes with one audit record holding the true totals,
//   every subject is saved exactly once per step, and the run's Slack message
//   (the Web API stand-in) is kept current to the end;
// - a rolling SIGTERM and restart of every instance during a run: the run is
//   handed from instance to instance and completes, nobody typing anything;
// - a handler that kills its process on one subject: a bounded number of
//   adoptions, then the run ends `abandoned` (crash_loop) naming the subject;
// - SIGKILL of a foreground run with no serving instance: `history` shows it
//   ended, a resume recovers it first and completes the work, and the dead
//   run's audit has its true totals, state after and delta.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { recordFigure } from './helpers/chaos.ts';
import {
  ADOPT_MODULE,
  WF,
  adoptedRun,
  assertSavedOnce,
  chaosProcesses,
  createItems,
  runRow,
  runningRun,
  savedAtLeast,
  waitForEnd,
  type RunRecord,
} from './helpers/chaos-runs.ts';
import { startCallsStub, type CallsStub } from './helpers/calls-stub.ts';
import { startTcpProxy } from './helpers/tcp-proxy.ts';
import { eventually, runCli, type CliProcess } from './helpers/cli.ts';
import type { TestDatabase } from './helpers/database.ts';
import { migratedDatabase, type TestDb } from './helpers/engine.ts';
import { messageText, startSlackStub, type SlackStub } from './helpers/slack-stub.ts';

let database: TestDatabase;
let db: TestDb;
let calls: CallsStub;
let env: NodeJS.ProcessEnv;
const { cli, serve, killAll } = chaosProcesses(() => env);

beforeEach(async () => {
  ({ database, db } = await migratedDatabase('chaos_adoption'));
  calls = await startCallsStub({ delayMs: 30 });
  env = {
    DATABASE_URL: database.url,
    WORKFLOW_MODULES: ADOPT_MODULE,
    ADOPT_CALLS_URL: calls.url,
    WORKFLOW_HEARTBEAT_MS: '300',
    WORKFLOW_SHUTDOWN_GRACE_MS: '2000',
  };
});

afterEach(async () => {
  await killAll();
  await calls.close();
  await db.destroy();
  await database.drop();
});

describe('adoption', () => {
  test('SIGKILL of the owner with three instances serving: adopted, completed, true totals, each subject saved once per step, the Slack message kept current', {
    timeout: 180_000,
  }, async () => {
    const ITEMS = 120;
    await createItems(db, ITEMS);
    const slack: SlackStub = await startSlackStub();
    try {
      const slackEnv = {
        SLACK_SIGNING_SECRET: 'adoption-secret',
        SLACK_BOT_TOKEN: 'xoxb-adoption',
        SLACK_API_URL: slack.url,
        SLACK_NOTIFY_CHANNEL: 'C0ADOPT',
        PORT: '0',
      };
      const servers = [await serve(slackEnv), await serve(slackEnv), await serve(slackEnv)];
      const detached = await runCli(['run', WF, '--detach'], env);
      assert.equal(detached.code, 0, detached.stderr);
      const runId = await runningRun(db);
      await savedAtLeast(db, 20);
      const before = await runRow(db, runId);
      const owner = servers.find((s) => before.owner_instance?.startsWith(`${s.child.pid}-`));
      assert.ok(owner, `the owner ${before.owner_instance} is one of the three`);
      const killedAt = performance.now();
      owner.child.kill('SIGKILL');

      const adopted = await adoptedRun(db, runId);
      const adoptedMs = performance.now() - killedAt;
      assert.equal(adopted.owners[1]!.reason, 'owner_lost');
      assert.equal(adopted.owners[0]!.ended, 'owner_lost');
      assert.notEqual(adopted.owner_instance, before.owner_instance);

      const ended = await waitForEnd(db, runId);
      assert.equal(ended.status, 'completed', ended.error ?? '');
      assert.equal(ended.ended_reason, 'finished');
      assert.equal(ended.interactions_completed, 2 * ITEMS, 'the true total across owners');
      assert.equal(ended.interactions_failed, 0);
      assert.deepEqual(ended.delta, { items: 0, items_first: ITEMS, items_second: ITEMS });
      assert.equal(ended.state_after?.items_second, ITEMS);
      await assertSavedOnce(db, 2 * ITEMS);
      const audit = await db.selectFrom('workflow_run_audit').selectAll().where('id', '=', runId).execute();
      assert.equal(audit.length, 1, 'one audit record');
      const output = audit[0]!.output as { interactions_completed: number; owners: unknown[]; status: string };
      assert.equal(output.interactions_completed, 2 * ITEMS);
      assert.equal(output.status, 'completed');
      assert.ok(output.owners.length >= 2, 'the owners are listed in the audit');
      const adoptedEvents = await db.selectFrom('audit_log').select('reason').where('run_id', '=', runId).where('action', '=', 'run_adopted').execute();
      assert.deepEqual(
        adoptedEvents.map((e) => e.reason),
        ['owner_lost'],
      );

      // One message for the run, kept current to its end by whichever instance is left.
      const mine = (c: { body: Record<string, unknown> }) => messageText(c as never).includes(`Run #${runId}`);
      const lastMessage = () => [...slack.callsTo('chat.update', mine), ...slack.callsTo('chat.postMessage', mine)].sort((a, b) => a.at - b.at).at(-1);
      await eventually(async () => {
        const last = lastMessage();
        return last && /completed/.test(messageText(last)) && /taken up by another instance .* after its owner was lost/i.test(messageText(last));
      }, 'the run message to show the completed run, taken up by another instance').catch((error: Error) => {
        throw new Error(`${error.message}; last: ${lastMessage() ? messageText(lastMessage()!) : 'none'}`);
      });
      const posts = slack.callsTo('chat.postMessage', (c) => mine(c) && !c.body.thread_ts);
      assert.equal(posts.length, 1, 'the run has one message');
      for (const s of servers) if (s !== owner) s.child.kill('SIGTERM');
      for (const s of servers) if (s !== owner) assert.equal((await s.exited).code, 0);
      await recordFigure('adoption-kill', { items: ITEMS, adoptedMs: Math.round(adoptedMs) });
    } finally {
      await slack.close();
    }
  });

  test('a rolling SIGTERM and restart of three instances during a run: handed off from one to the next, completed, no command typed', {
    timeout: 180_000,
  }, async () => {
    const ITEMS = 150;
    await createItems(db, ITEMS);
    calls.setDelay(150);
    const servers = [await serve(), await serve(), await serve()];
    const detached = await runCli(['run', WF, '--detach'], env);
    assert.equal(detached.code, 0, detached.stderr);
    const runId = await runningRun(db);
    for (let i = 0; i < 3; i++) {
      await savedAtLeast(db, 5 + i * 20);
      assert.equal((await runRow(db, runId)).status, 'running', `the run is still going at restart ${i + 1}`);
      const old = servers[i]!;
      old.child.kill('SIGTERM');
      const exit = await old.exited;
      assert.equal(exit.code, 0, exit.stderr);
      servers[i] = await serve();
    }
    calls.setDelay(0);
    const ended = await waitForEnd(db, runId);
    assert.equal(ended.status, 'completed', ended.error ?? '');
    assert.equal(ended.interactions_completed, 2 * ITEMS);
    await assertSavedOnce(db, 2 * ITEMS);
    const handoffs = ended.owners.filter((o) => o.reason === 'handoff');
    assert.ok(handoffs.length >= 1, `handed off at least once: ${JSON.stringify(ended.owners)}`);
    assert.ok(
      ended.owners.every((o) => o.reason !== 'owner_lost'),
      'no owner was lost: every change of hands was a handoff',
    );
    const commands = await db.selectFrom('audit_log').select('action').where('outcome', '=', 'accepted').execute();
    assert.deepEqual(
      commands.map((c) => c.action),
      ['run'],
      'the one command is the run itself',
    );
    await recordFigure('adoption-rolling-restart', { items: ITEMS, owners: ended.owners.length, handoffs: handoffs.length });
  });

  test('a handler that kills its process on one subject: bounded adoptions, then abandoned (crash_loop) naming the subject', { timeout: 240_000 }, async () => {
    const ITEMS = 12;
    const POISON = 3;
    await createItems(db, ITEMS);
    const poisonEnv = { ADOPT_POISON: String(POISON), ADOPT_CONCURRENCY: '2', ADOPT_BATCH: '5' };
    const servers = new Set<CliProcess>();
    let deaths = 0;
    let stopping = false;
    // A process manager: an instance that dies is started again.
    // (A restarted instance may adopt the run, and die, before it says it serves.)
    const keep = (): CliProcess => {
      const server = cli(['serve'], poisonEnv);
      servers.add(server);
      void server.exited.then((exit) => {
        servers.delete(server);
        if (exit.code !== 0) deaths++;
        if (!stopping) keep();
      });
      return server;
    };
    await Promise.all([keep(), keep(), keep()].map((s) => s.waitFor(/serving/, 60_000)));
    const detached = await runCli(['run', WF, '--detach'], env);
    assert.equal(detached.code, 0, detached.stderr);
    const runId = await runningRun(db);
    const ended = await waitForEnd(db, runId, 200_000);
    stopping = true;
    assert.equal(ended.status, 'abandoned');
    assert.equal(ended.ended_reason, 'crash_loop');
    assert.match(ended.error ?? '', new RegExp(`step first, subject ${POISON}\\b`));
    const lost = ended.owners.filter((o) => o.ended === 'owner_lost');
    assert.ok(deaths >= 3, `instances died: ${deaths}`);
    assert.ok(lost.length <= deaths, 'an adoption per lost owner at most');
    assert.equal(ended.owners.at(-1)!.no_progress, 2, 'ended at the third loss in a row without progress (WORKFLOW_MAX_ADOPTIONS 3)');
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM adopt_saves WHERE subject = ${POISON}`.execute(db);
    assert.equal(rows[0]!.n, 0, 'the poison subject was never saved');
    const { rows: twice } = await sql<{
      n: number;
    }>`SELECT count(*)::int AS n FROM (SELECT 1 FROM adopt_saves GROUP BY subject, step HAVING count(*) > 1) d`.execute(db);
    assert.equal(twice[0]!.n, 0, 'no subject saved twice in a step');
    assert.equal(ended.interactions_completed, (await sql<{ n: number }>`SELECT count(*)::int AS n FROM adopt_saves`.execute(db)).rows[0]!.n);
    for (const s of servers) s.child.kill('SIGTERM');
    await Promise.all([...servers].map((s) => s.exited));
    await recordFigure('adoption-crash-loop', { items: ITEMS, deaths, owners: ended.owners.length });
  });
});

describe('no serving instance', () => {
  test('kill -9 of a foreground run: history shows it ended, a resume recovers it first and completes; its audit has the true totals, state after and delta', {
    timeout: 120_000,
  }, async () => {
    const ITEMS = 80;
    await createItems(db, ITEMS);
    const owner = cli(['run', WF]);
    const runId = await runningRun(db);
    await savedAtLeast(db, 20);
    owner.child.kill('SIGKILL');
    await owner.exited;

    const history = await runCli(['history', '--json'], env);
    assert.equal(history.code, 0, history.stderr);
    const shown = (JSON.parse(history.stdout) as { runs: { id: number; status: string }[] }).runs.find((r) => r.id === runId);
    assert.equal(shown?.status, 'abandoned', 'history does not show a dead run as running');

    const dead = await runRow(db, runId);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM interactions WHERE run_id = ${runId} AND status = 'completed'`.execute(db);
    assert.ok(rows[0]!.n >= 20);
    assert.equal(dead.interactions_completed, rows[0]!.n, 'the dead run counts what it committed');
    assert.ok(dead.state_after && dead.delta, 'state after and delta are recorded');
    assert.equal((dead.delta!.items_first ?? 0) + (dead.delta!.items_second ?? 0), rows[0]!.n);

    // Killed again, and resumed at once: the resume recovers the dead run first.
    const second = cli(['run', WF, '--mode', 'single_run', '--run', String(runId)]);
    const secondId = await eventually(async () => {
      const row = await db.selectFrom('workflow_runs').select('id').where('resumes_run_id', '=', runId).where('status', '=', 'running').executeTakeFirst();
      return row?.id;
    }, 'the resume to start');
    await savedAtLeast(db, rows[0]!.n + 5);
    second.child.kill('SIGKILL');
    await second.exited;
    const resume = await runCli(['run', WF, '--mode', 'single_run', '--run', String(secondId)], env);
    assert.equal(resume.code, 0, resume.stderr);
    assert.equal((await runRow(db, secondId)).status, 'abandoned');
    await assertSavedOnce(db, 2 * ITEMS);
  });
});

describe('ownership in doubt', () => {
  const ITEMS = 200;
  const CONCURRENCY = 4;
  const HEARTBEAT = 300;

  interface FrozenOwner {
    /** The serving instance that is to adopt the run. */
    adopter: CliProcess;
    owner: CliProcess;
    runId: number;
    before: RunRecord;
    /** Handler calls the owner has started (its trace lines). */
    started(): number;
    /** The owner's calls that reached the stub. */
    received(): number;
    startedAtStop: number;
    stoppedAt: number;
  }

  /**
   * A serving instance, and a foreground run of the fixture over ITEMS items
   * frozen by SIGSTOP with its pool full of calls the stub holds, every call
   * it has started among them (none between its start and its request).
   */
  async function freezeOwner(extra: NodeJS.ProcessEnv = {}): Promise<FrozenOwner> {
    await createItems(db, ITEMS);
    const adopter = await serve();
    const owner = cli(['run', WF], { ADOPT_TRACE_CALLS: '1', ADOPT_CONCURRENCY: String(CONCURRENCY), WORKFLOW_HEARTBEAT_MS: String(HEARTBEAT), ...extra });
    const pid = owner.child.pid!;
    const started = (): number => owner.stderr.split('\n').filter((line) => line.startsWith(`adopt-call pid=${pid} `)).length;
    const received = (): number => calls.calls.filter((c) => c.pid === pid).length;
    const runId = await runningRun(db);
    await savedAtLeast(db, 10);
    const before = await runRow(db, runId);
    assert.ok(before.owner_instance?.startsWith(`${pid}-`), 'the foreground process owns the run');

    calls.hold();
    await eventually(() => Promise.resolve(calls.heldBy(pid) === CONCURRENCY && started() === received()), 'the owner to have its pool full of held calls');
    owner.child.kill('SIGSTOP');
    return { adopter, owner, runId, before, started, received, startedAtStop: started(), stoppedAt: Date.now() };
  }

  /** The serving instance adopts the run, and the freeze outlasts the two heartbeat intervals a runner trusts its ownership for. */
  async function adoptedWhileFrozen(frozen: FrozenOwner): Promise<RunRecord> {
    const adopted = await adoptedRun(db, frozen.runId);
    assert.ok(adopted.owner_instance?.startsWith(`${frozen.adopter.child.pid}-`), 'the serving instance adopted it');
    assert.equal(adopted.owners[0]!.ended, 'owner_lost');
    await eventually(() => Promise.resolve(Date.now() - frozen.stoppedAt > 3 * HEARTBEAT), 'the freeze to outlast the trust window');
    return adopted;
  }

  /** The woken owner has exited: it started and sent nothing more and said it was taken over; the adopter completes the run. */
  async function assertTakenOver(frozen: FrozenOwner, adopted: RunRecord): Promise<void> {
    const { owner, runId, started, received, startedAtStop } = frozen;
    const exit = await owner.exited;
    assert.equal(started(), startedAtStop, `the frozen owner started no handler call after SIGCONT (${started() - startedAtStop} started)`);
    assert.equal(received(), startedAtStop, 'no call of the frozen owner reached the model server after SIGCONT');
    assert.equal(exit.code, 4, `taken over: exit 4 (README, "Exit codes"): ${exit.stderr}`);
    assert.match(exit.stderr, new RegExp(`run #${runId} was taken over by instance ${adopted.owner_instance}`));
    assert.match(exit.stderr, /started no new handler calls and wrote nothing more/);
    assert.doesNotMatch(exit.stderr + exit.stdout, /abandoned|lost its lock connection/);

    calls.release();
    const ended = await waitForEnd(db, runId);
    assert.equal(ended.status, 'completed', ended.error ?? '');
    assert.equal(ended.interactions_completed, 2 * ITEMS);
    await assertSavedOnce(db, 2 * ITEMS);
    frozen.adopter.child.kill('SIGTERM');
    assert.equal((await frozen.adopter.exited).code, 0);
    await recordFigure('adoption-sigstop', { startedAtStop, startedAfterCont: started() - startedAtStop, frozenMs: Date.now() - frozen.stoppedAt });
  }

  // The owner is frozen (SIGSTOP) with its pool full of calls the stub holds,
  // and its lock connection is cut while it is frozen, as a network partition
  // or a force would: a serving instance adopts the run. On SIGCONT the held
  // calls are answered at once, so a runner that did not doubt its ownership
  // would fill its pool again with new handler calls (paid model calls).
  test('an owner frozen with SIGSTOP and taken over starts no new handler call after SIGCONT, and says it was taken over', { timeout: 120_000 }, async () => {
    const frozen = await freezeOwner();
    const { rows: cut } = await sql<{ ok: boolean }>`
      SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
       WHERE application_name = ${`workflow-lock:${frozen.before.owner_instance}`} AND datname = current_database()`.execute(db);
    assert.ok(cut.length > 0 && cut.every((r) => r.ok), "the frozen owner's lock connection was cut");
    const adopted = await adoptedWhileFrozen(frozen);

    calls.release();
    frozen.owner.child.kill('SIGCONT');
    await assertTakenOver(frozen, adopted);
  });

  // The owner is frozen (SIGSTOP) with its pool full of calls the stub holds;
  // the calls are answered, and its lock connection, which goes through a
  // proxy, is partitioned: the server ends its session (a serving instance
  // adopts the run), but no reset reaches the frozen process. On SIGCONT it
  // reads the answers and has free slots and items to start, with nothing
  // telling it the run is no longer its own: only its doubt about an
  // ownership unconfirmed for longer than two heartbeat intervals keeps it
  // from starting new handler calls (paid model calls).
  test('the same behind a network partition of its lock connection (no reset reaches it): starts no new handler call after SIGCONT, gives the run up, says it was taken over', {
    timeout: 180_000,
  }, async () => {
    const proxy = await startTcpProxy(database.url);
    try {
      const frozen = await freezeOwner({ DATABASE_LOCK_URL: proxy.url(database.url) });
      // Its answers wait in its sockets; the adopter's calls stay held, so the run is still going when it wakes.
      calls.answerHeld(frozen.owner.child.pid!);
      proxy.partition();
      const adopted = await adoptedWhileFrozen(frozen);

      frozen.owner.child.kill('SIGCONT');
      // Awake: its runner has acted on the run (a heartbeat on its terminated run pool failed, or it gave the run up).
      await frozen.owner.waitFor(/heartbeat failed|run given up without writing/, 60_000);
      assert.equal(
        frozen.started(),
        frozen.startedAtStop,
        `the frozen owner started no handler call after SIGCONT (${frozen.started() - frozen.startedAtStop} started)`,
      );
      // Its lock connection, silent past its deadline, counted as lost; healing the partition changes nothing for it.
      proxy.heal();
      await assertTakenOver(frozen, adopted);
    } finally {
      await proxy.close();
    }
  });
});
