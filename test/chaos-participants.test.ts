// Chaos: one run, many instances (docs/architecture.md, Participants). Real
// `workflow serve` processes on one database run the adoption fixture
// (test/fixtures/adoption/workflow.ts) with `distributed: true`; its saves are
// counted per (subject, step) and per process in a table of its own:
// - three instances on one run: every instance processes a real share
//   (more than 20 % each), every subject saved once per step, true totals;
// - a stop during a distributed run: every participant stops, and nothing
//   of the run is written after its end;
// - force against a SIGSTOPped participant that is not the owner: once it
//   wakes up, its writes are fenced (nothing saved by it after it froze), and
//   the forced run still saves every subject once per step;
// - SIGKILL of the owner of a run with participants at work: the same run is
//   adopted and completed with its true totals, the lost owner's
//   participants fenced, the instance not adopting it joins it again, and
//   every subject is saved once per step;
// - runConcurrency 8 over instances of concurrency 4: of three instances,
//   the owner and one participant work on the run, never more than 8 handler
//   calls at once; without the cap both others join;
// - live progress: while the owner's calls are held and a participant's are
//   answered, the run's progress (its row, `workflow status`) counts what
//   the participant finished, before the run ends;
// - a subject that fails under one instance is not tried again by another:
//   one handler call for it in the whole run, one failed interaction.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import type { RunProgress } from '../src/db/schema.ts';
import { afterEach, beforeEach, describe, test } from 'node:test';
import {
  ADOPT_MODULE,
  WF,
  adoptedRun,
  assertSavedOnce,
  chaosProcesses,
  createItems,
  runRow,
  runningRun,
  savesByPid,
  waitForEnd,
} from './helpers/chaos-runs.ts';
import { startCallsStub, type CallsStub } from './helpers/calls-stub.ts';
import { eventually, runCli, type CliProcess } from './helpers/cli.ts';
import type { TestDatabase } from './helpers/database.ts';
import { migratedDatabase, type TestDb } from './helpers/engine.ts';

let database: TestDatabase;
let db: TestDb;
let calls: CallsStub;
let env: NodeJS.ProcessEnv;
const { cli, serve, killAll } = chaosProcesses(() => env);

/** Participants of the run that are neither gone nor fenced. */
async function activeParticipants(runId: number): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM run_participants WHERE run_id = ${runId} AND left_at IS NULL AND fenced_at IS NULL`.execute(db);
  return rows[0]!.n;
}

interface ParticipantRecord {
  token: string;
  instance: string;
  joined_at: Date;
  left_at: Date | null;
  fenced_at: Date | null;
}

/** The run's rows in run_participants, past and present, in the order they joined. */
async function participantRows(runId: number): Promise<ParticipantRecord[]> {
  const { rows } = await sql<ParticipantRecord>`
    SELECT token::text AS token, instance, joined_at, left_at, fenced_at FROM run_participants WHERE run_id = ${runId} ORDER BY joined_at`.execute(db);
  return rows;
}

/** Whether `instance` (an engine's instance id, `<pid>-<hex>`) is that of `pid`. */
function instanceOf(pid: number | undefined, instance: string | null | undefined): boolean {
  return pid !== undefined && instance?.startsWith(`${pid}-`) === true;
}

/** Three serving instances and a run of the fixture started with `run --detach`, once it is running. */
async function threeInstancesRunning(): Promise<{ servers: CliProcess[]; runId: number }> {
  const servers = [await serve(), await serve(), await serve()];
  const detached = await runCli(['run', WF, '--detach'], env);
  assert.equal(detached.code, 0, detached.stderr);
  return { servers, runId: await runningRun(db) };
}

/** Until each instance has saved a few items of the run: every one is working on it. */
async function everyInstanceSaving(servers: CliProcess[]): Promise<void> {
  await eventually(async () => {
    const byPid = await savesByPid(db);
    return servers.every((s) => (byPid.get(s.child.pid!) ?? 0) >= 5);
  }, 'every instance to save');
}

beforeEach(async () => {
  ({ database, db } = await migratedDatabase('chaos_participants'));
  calls = await startCallsStub({ delayMs: 20 });
  env = {
    DATABASE_URL: database.url,
    WORKFLOW_MODULES: ADOPT_MODULE,
    ADOPT_CALLS_URL: calls.url,
    ADOPT_DISTRIBUTED: '1',
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

describe('participants', () => {
  test('three instances on one run: each processes more than 20 %, every subject saved once per step, true totals', { timeout: 180_000 }, async () => {
    const ITEMS = 600;
    await createItems(db, ITEMS);
    const { servers, runId } = await threeInstancesRunning();
    const ended = await waitForEnd(db, runId);
    assert.equal(ended.status, 'completed', ended.error ?? '');
    assert.equal(ended.interactions_completed, 2 * ITEMS, 'the run counts every instance');
    await assertSavedOnce(db, 2 * ITEMS);
    const byPid = await savesByPid(db);
    for (const server of servers) {
      const share = (byPid.get(server.child.pid!) ?? 0) / (2 * ITEMS);
      assert.ok(share > 0.2, `instance ${server.child.pid} processed ${(share * 100).toFixed(1)} % (${[...byPid.entries()].join('; ')})`);
    }
    const { rows } = await sql<{ n: number }>`SELECT count(DISTINCT instance)::int AS n FROM run_participants WHERE run_id = ${runId}`.execute(db);
    assert.ok(rows[0]!.n >= 2, 'the two other instances joined as participants');
    assert.equal(await activeParticipants(runId), 0, 'no participant is left once the run has ended');
  });

  test('a subject that fails under one instance is not tried again by another: one call, one failed interaction', { timeout: 180_000 }, async () => {
    const ITEMS = 900;
    const FAILING = 7;
    env.ADOPT_FAIL = String(FAILING);
    await createItems(db, ITEMS);
    const { runId } = await threeInstancesRunning();
    const ended = await waitForEnd(db, runId);
    assert.equal(ended.status, 'completed', ended.error ?? '');
    const { rows } = await sql<{ n: number }>`SELECT count(DISTINCT instance)::int AS n FROM run_participants WHERE run_id = ${runId}`.execute(db);
    assert.ok(rows[0]!.n >= 1, 'another instance took part');
    const tries = calls.calls.filter((c) => c.subject === FAILING && c.step === 'first');
    assert.equal(tries.length, 1, `handler calls for the failing subject: ${tries.map((c) => c.pid).join(', ')}`);
    assert.equal(ended.interactions_failed, 1);
    const { rows: failed } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM interactions WHERE status = 'failed'`.execute(db);
    assert.equal(failed[0]!.n, 1, 'one failed interaction');
    await assertSavedOnce(db, 2 * ITEMS - 2);
  });

  test('stop during a distributed run: every participant stops, nothing written after the end', { timeout: 180_000 }, async () => {
    const ITEMS = 3000;
    calls.setDelay(50);
    await createItems(db, ITEMS);
    const { servers, runId } = await threeInstancesRunning();
    await everyInstanceSaving(servers);
    const stop = await runCli(['stop', String(runId)], env);
    assert.equal(stop.code, 0, stop.stderr);
    const ended = await waitForEnd(db, runId);
    assert.equal(ended.status, 'stopped');
    assert.equal(ended.ended_reason, 'stop_requested');
    await eventually(async () => (await activeParticipants(runId)) === 0, 'every participant to stop');
    const { rows: late } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM adopt_saves WHERE at > ${ended.ended_at}`.execute(db);
    assert.equal(late[0]!.n, 0, 'no save after the run ended');
    const { rows: lateInteractions } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM interactions WHERE run_id = ${runId} AND status <> 'pending' AND finished_at > ${ended.ended_at}`.execute(db);
    assert.equal(lateInteractions[0]!.n, 0, 'no interaction finished after the run ended');
    const { rows: claims } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM interaction_claims`.execute(db);
    assert.equal(claims[0]!.n, 0, 'no claim is left');
    // The audit's counters are the run's true totals, whoever committed them.
    const { rows: done } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM interactions WHERE run_id = ${runId} AND status = 'completed'`.execute(db);
    assert.equal(ended.interactions_completed, done[0]!.n);
    assert.ok(done[0]!.n < 2 * ITEMS, 'the stop came before the end of the work');
  });

  test('force against a SIGSTOPped participant that is not the owner: its writes are fenced', { timeout: 180_000 }, async () => {
    const ITEMS = 400;
    calls.setDelay(300);
    await createItems(db, ITEMS);
    const { servers, runId } = await threeInstancesRunning();
    const owner = (await runRow(db, runId)).owner_instance!;
    const participants = servers.filter((s) => !owner.startsWith(`${s.child.pid}-`));
    assert.equal(participants.length, 2);
    // Freeze a participant with handler calls in flight: their answers come while it sleeps.
    const frozen = await eventually(async () => participants.find((s) => calls.calls.some((c) => c.pid === s.child.pid)), 'a participant to call a handler');
    frozen.child.kill('SIGSTOP');
    const { rows: frozenAt } = await sql<{ now: Date }>`SELECT clock_timestamp() AS now`.execute(db);

    const forcing = cli(['force', WF], { WORKFLOW_FORCE_GRACE_MS: '3000' });
    // Calls are answered fast only once the force has ended the run: sooner, the run could complete before the force came.
    const old = await waitForEnd(db, runId);
    assert.equal(old.status, 'stopped');
    calls.setDelay(10);
    const force = await forcing.exited;
    assert.equal(force.code, 0, force.stderr);

    frozen.child.kill('SIGCONT');
    await frozen.waitFor(/participation ended: fenced/, 30_000);
    const { rows: late } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM adopt_saves WHERE pid = ${frozen.child.pid!} AND at > ${frozenAt[0]!.now}`.execute(db);
    assert.equal(late[0]!.n, 0, 'nothing saved by the frozen participant after it froze');
    await assertSavedOnce(db, 2 * ITEMS);
    // It had work in flight when it froze, which the forced run did instead: the fence is what kept it from saving it twice.
    const called = calls.calls.filter((c) => c.pid === frozen.child.pid);
    const { rows: redone } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM adopt_saves s
        JOIN unnest(${called.map((c) => c.subject)}::bigint[], ${called.map((c) => c.step)}::text[]) AS c(subject, step)
          ON s.subject = c.subject AND s.step = c.step
       WHERE s.pid <> ${frozen.child.pid!}`.execute(db);
    assert.ok(redone[0]!.n > 0, 'subjects the frozen participant had called for were saved by another instance');
  });

  test("SIGKILL of the owner of a run with participants at work: the same run adopted and completed, true totals, the lost owner's participants fenced, the other instance joins again, every subject saved once per step", {
    timeout: 180_000,
  }, async () => {
    const ITEMS = 600;
    await createItems(db, ITEMS);
    const { servers, runId } = await threeInstancesRunning();
    await everyInstanceSaving(servers);
    // Every instance has handler calls in flight when the owner dies; held, the run cannot end before the checks below.
    calls.hold();
    await eventually(() => Promise.resolve(servers.every((s) => calls.heldBy(s.child.pid!) > 0)), 'every instance to have calls in flight');
    const before = await runRow(db, runId);
    const owner = servers.find((s) => instanceOf(s.child.pid, before.owner_instance));
    assert.ok(owner, `the owner ${before.owner_instance} is one of the three`);
    const survivors = servers.filter((s) => s !== owner);
    const lost = (await participantRows(runId)).filter((p) => p.left_at === null && p.fenced_at === null);
    assert.deepEqual(
      survivors.map((s) => lost.filter((p) => instanceOf(s.child.pid, p.instance)).length),
      [1, 1],
      'the two other instances are participants of the run',
    );

    owner.child.kill('SIGKILL');
    await owner.exited;
    // The participants' answers come after their owner died: they commit them, or are fenced first.
    for (const s of survivors) calls.answerHeld(s.child.pid!);

    const adopted = await adoptedRun(db, runId);
    assert.equal(adopted.id, runId);
    assert.equal(adopted.owners[0]!.ended, 'owner_lost');
    assert.equal(adopted.owners[1]!.reason, 'owner_lost');
    const adopter = survivors.find((s) => instanceOf(s.child.pid, adopted.owner_instance));
    assert.ok(adopter, `the run was adopted by one of the two left (${adopted.owner_instance})`);
    const other = survivors.find((s) => s !== adopter)!;
    const afterAdoption = await participantRows(runId);
    for (const p of lost) {
      assert.ok(afterAdoption.find((r) => r.token === p.token)?.fenced_at, `the lost owner's participant ${p.instance} was fenced with it`);
    }
    // The other instance goes on: it joins the adopted run with a new token (what it saves there is checked at the end).
    // Calls are still held, so the run cannot end before it has joined.
    const rejoined = await eventually(async () => {
      const rows = await participantRows(runId);
      return rows.find((r) => instanceOf(other.child.pid, r.instance) && r.fenced_at === null && !lost.some((p) => p.token === r.token));
    }, 'the other instance to join the adopted run');

    calls.release();
    const ended = await waitForEnd(db, runId);
    assert.equal(ended.status, 'completed', ended.error ?? '');
    assert.equal(ended.ended_reason, 'finished');
    assert.equal(ended.owners.length, 2, 'one adoption');
    assert.equal(ended.interactions_completed, 2 * ITEMS, 'the true total across owners and participants');
    assert.equal(ended.interactions_failed, 0);
    assert.deepEqual(ended.delta, { items: 0, items_first: ITEMS, items_second: ITEMS });
    await assertSavedOnce(db, 2 * ITEMS);
    const { rows: late } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM adopt_saves WHERE pid = ${other.child.pid!} AND at > ${rejoined.joined_at}`.execute(db);
    assert.ok(late[0]!.n > 0, 'the other instance saved items of the adopted run');
    assert.equal(await activeParticipants(runId), 0, 'no participant is left once the run has ended');
  });

  describe('runConcurrency', () => {
    const ITEMS = 300;
    const CONCURRENCY = 4;

    /**
     * Three instances with concurrency 4 on a run whose calls the stub holds
     * from its start: what is in flight is what each instance took on.
     * Debug logs, where an instance says it was refused a join.
     */
    async function heldRun(extra: NodeJS.ProcessEnv): Promise<{ runId: number; servers: CliProcess[]; held: () => number }> {
      await createItems(db, ITEMS);
      calls.hold();
      const serverEnv = { ADOPT_CONCURRENCY: String(CONCURRENCY), LOG_LEVEL: 'debug', ...extra };
      const servers = [await serve(serverEnv), await serve(serverEnv), await serve(serverEnv)];
      const detached = await runCli(['run', WF, '--detach'], env);
      assert.equal(detached.code, 0, detached.stderr);
      const runId = await runningRun(db);
      return { runId, servers, held: () => servers.reduce((n, s) => n + calls.heldBy(s.child.pid!), 0) };
    }

    /** Releases the calls: the run completes, every subject saved once per step. */
    async function completes(runId: number): Promise<void> {
      calls.release();
      const ended = await waitForEnd(db, runId);
      assert.equal(ended.status, 'completed', ended.error ?? '');
      assert.equal(ended.interactions_completed, 2 * ITEMS);
      await assertSavedOnce(db, 2 * ITEMS);
    }

    test('runConcurrency 8, concurrency 4, three instances: one participant joins, the third is refused, never more than 8 handler calls in flight at once', {
      timeout: 180_000,
    }, async () => {
      const { runId, servers, held } = await heldRun({ ADOPT_RUN_CONCURRENCY: '8' });
      const owner = (await runRow(db, runId)).owner_instance;
      const [joined] = await eventually(async () => {
        const rows = await participantRows(runId);
        return rows.length > 0 ? rows : undefined;
      }, 'a participant to join');
      const third = servers.find((s) => !instanceOf(s.child.pid, owner) && !instanceOf(s.child.pid, joined!.instance));
      assert.ok(third, 'an instance is neither owner nor participant');
      await third.waitFor(new RegExp(`"runId":${runId},[^\\n]*not joined: the run is at its runConcurrency`), 30_000);
      await eventually(() => Promise.resolve(held() === 2 * CONCURRENCY), 'the owner and the participant to have their pools full of held calls');
      // Refused again at a look while the owner and the participant are at work, their calls held.
      const refusals = (): number => third.stderr.split('\n').filter((line) => line.includes(`"runId":${runId},`) && line.includes('not joined')).length;
      const seen = refusals();
      await eventually(() => Promise.resolve(refusals() > seen), 'the third instance to be refused again');
      assert.equal(held(), 2 * CONCURRENCY, 'the owner and one participant have calls in flight');
      assert.equal(calls.heldBy(third.child.pid!), 0, 'the third instance calls no handler');
      assert.equal((await participantRows(runId)).length, 1, 'one participant joined');

      await completes(runId);
      assert.ok(calls.maxInFlight() <= 8, `at most 8 handler calls in flight at once (${calls.maxInFlight()})`);
    });

    test('no runConcurrency, concurrency 4, three instances: both others join, 12 handler calls in flight at once', { timeout: 180_000 }, async () => {
      const { runId, servers, held } = await heldRun({});
      await eventually(async () => new Set((await participantRows(runId)).map((r) => r.instance)).size === 2, 'both other instances to join');
      await eventually(() => Promise.resolve(held() === servers.length * CONCURRENCY), 'every instance to have its pool full of held calls');
      assert.equal(calls.maxInFlight(), 12);
      await completes(runId);
    });
  });

  test("live progress: while the owner's calls are held and a participant's answered, the run's progress (its row, `workflow status`) counts the participant's finished items", {
    timeout: 180_000,
  }, async () => {
    const ITEMS = 200;
    await createItems(db, ITEMS);
    // Held from the run's start: whatever the run finishes until release is the participant's.
    calls.hold();
    const servers = [await serve(), await serve()];
    const detached = await runCli(['run', WF, '--detach'], env);
    assert.equal(detached.code, 0, detached.stderr);
    const runId = await runningRun(db);
    const ownerInstance = (await runRow(db, runId)).owner_instance;
    const owner = servers.find((s) => instanceOf(s.child.pid, ownerInstance));
    assert.ok(owner, `the owner ${ownerInstance} is one of the two`);
    const participant = servers.find((s) => s !== owner)!;
    const pid = participant.child.pid!;
    const done = (progress: RunProgress | null): number => Object.values(progress ?? {}).reduce((n, p) => n + p.done, 0);

    // Each look answers the participant's calls held so far; the owner's stay held.
    const saved = await eventually(async () => {
      calls.answerHeld(pid);
      const n = (await savesByPid(db)).get(pid) ?? 0;
      return n >= 20 ? n : undefined;
    }, 'the participant to save 20 items');
    const row = await eventually(async () => {
      calls.answerHeld(pid);
      const r = await runRow(db, runId);
      return done(r.progress) >= saved ? r : undefined;
    }, "the run's progress to count the participant's items");
    assert.equal(row.status, 'running', 'the run is still going');
    assert.equal((await savesByPid(db)).get(owner.child.pid!) ?? 0, 0, 'the owner has finished nothing');
    assert.ok(calls.heldBy(owner.child.pid!) > 0, "the owner's calls are held");

    const status = await runCli(['status', String(runId), '--json'], env);
    assert.equal(status.code, 0, status.stderr);
    const shown = (JSON.parse(status.stdout) as { run: { status: string; progress: RunProgress | null } }).run;
    assert.equal(shown.status, 'running');
    assert.ok(done(shown.progress) >= saved, `workflow status counts the participant's ${saved} items: ${JSON.stringify(shown.progress)}`);
    const text = await runCli(['status', String(runId)], env);
    assert.equal(text.code, 0, text.stderr);
    const so = text.stdout.match(/^interactions so far: (\d+) done, 0 failed \(first \d+ done; second \d+ done\)$/m);
    assert.ok(so && Number(so[1]) >= saved, `workflow status says what the run has done so far, the participant's ${saved} items counted:\n${text.stdout}`);

    calls.release();
    const ended = await waitForEnd(db, runId);
    assert.equal(ended.status, 'completed', ended.error ?? '');
    assert.equal(ended.interactions_completed, 2 * ITEMS);
    await assertSavedOnce(db, 2 * ITEMS);
  });
});
