// The `health` command makes a monitor pass (queries, a probe of every
// service), and any chat user may ask for it, while every CLI call is a
// process of its own: one pass starts per HEALTH_CHECK_INTERVAL_MS on a
// database, whichever process is asked (one UPDATE of health_checks decides).
// A request refused a pass says when the next is allowed, shows the latest
// findings on the database (another process's included), and is audited.
// Across real processes: `workflow health` from the CLI and from a serving
// instance's console chat.
import assert from 'node:assert/strict';
import os from 'node:os';
import { afterEach, describe, test } from 'node:test';
import { sql } from 'kysely';
import { HEALTH_CHECK_INTERVAL_MS } from '../src/commands/health.ts';
import { HealthMonitor } from '../src/engine/monitor.ts';
import { utcText } from '../src/lib/relative-time.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import { resolveDefaults } from '../src/workflows/define.ts';
import { ollamaService } from '../src/workflows/postings/index.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { eventually, runCli, startCli, type CliProcess } from './helpers/cli.ts';
import type { TestDatabase } from './helpers/database.ts';
import { migratedDatabase, quietLog, testEngine, type TestDb } from './helpers/engine.ts';
import { startOllamaStub, type OllamaStub } from './helpers/ollama-stub.ts';

const ME = `${os.userInfo().username}@${os.hostname()}`;

interface Row {
  started_at: Date | null;
  started_by: string | null;
  findings_at: Date | null;
  findings_by: string | null;
}

const row = async (db: TestDb) => (await sql<Row>`SELECT started_at, started_by, findings_at, findings_by FROM health_checks`.execute(db)).rows[0]!;

/** Moves the last pass back by the interval, as if that long had passed (the limit reads the database's clock). */
const intervalLater = (db: TestDb) =>
  sql`UPDATE health_checks SET started_at = started_at - make_interval(secs => ${HEALTH_CHECK_INTERVAL_MS / 1000})`.execute(db);

const refusals = async (db: TestDb) =>
  (
    await sql<{ actor: string; source: string; reason: string; details: Record<string, unknown> }>`
      SELECT actor, source, reason, details FROM audit_log WHERE action = 'health' AND outcome = 'refused' ORDER BY id`.execute(db)
  ).rows;

test('health: the interval is seconds, not minutes', () => {
  assert.ok(HEALTH_CHECK_INTERVAL_MS >= 5_000 && HEALTH_CHECK_INTERVAL_MS <= 60_000, `${HEALTH_CHECK_INTERVAL_MS} ms`);
});

describe('health in one process and between monitors', () => {
  test('twenty requests at once share one pass; the next is refused with the findings and audited; after the interval, a pass again', async () => {
    const stub = await startOllamaStub();
    const t = await testEngine('health_limit', [itemsWorkflow({ id: 9500, handle: async () => 'x' })], (db) => createItems(db, 1));
    const workflow = resolveDefaults({ ...itemsWorkflow({ id: 9500, handle: async () => 'x' }), services: [ollamaService(stub.url)] });
    const monitor = new HealthMonitor({
      db: t.engine.db,
      lockConnectionString: t.database.url,
      instanceId: 'in-process',
      workflows: [workflow],
      log: quietLog,
      intervalMs: 60_000,
      heartbeatMs: 200,
    });
    t.health.setMonitor(monitor);
    const actor = { id: 'U0HEALTH', source: 'slack' };
    try {
      const answers = await Promise.all(Array.from({ length: 20 }, () => t.service.handle('health', actor, 'chat')));
      assert.equal(stub.probes, 1, 'one pass');
      for (const { result } of answers) {
        assert.equal(result.kind, 'health');
        assert.equal(result.kind === 'health' && result.limited, undefined, 'the pass in flight is shared, not refused');
      }
      const first = await row(t.db);
      assert.equal(first.started_by, 'in-process');
      assert.ok(first.findings_at, 'its findings recorded for other processes');
      assert.deepEqual(await refusals(t.db), []);

      const { result } = await t.service.handle('health', actor, 'chat');
      assert.equal(result.kind, 'health');
      if (result.kind !== 'health') return;
      assert.equal(stub.probes, 1, 'refused: no pass, no probe');
      const next = new Date(first.started_at!.getTime() + HEALTH_CHECK_INTERVAL_MS);
      assert.ok(result.limited, 'refused a pass of its own');
      assert.equal(result.limited.nextAllowedAt, next.toISOString());
      assert.match(
        result.limited.message,
        new RegExp(`started at ${utcText(first.started_at!)} .*on instance in-process.*the next is allowed at ${utcText(next)}`),
      );
      assert.equal(result.report.lastPassAt, first.findings_at.toISOString(), 'the latest findings, with their time');
      assert.equal(result.report.services[0]!.up, true);
      const audited = await refusals(t.db);
      assert.equal(audited.length, 1);
      assert.equal(audited[0]!.actor, 'U0HEALTH');
      assert.equal(audited[0]!.reason, result.limited.message);
      assert.equal(audited[0]!.details.refusal, 'rate_limited');
      assert.equal(audited[0]!.details.next_allowed_at, next.toISOString());

      await intervalLater(t.db);
      const later = await t.service.handle('health', actor, 'chat');
      assert.equal(later.result.kind === 'health' && later.result.limited, undefined);
      assert.equal(stub.probes, 2, 'a pass once the interval is over');
    } finally {
      await monitor.close();
      await t.close();
      await stub.close();
    }
  });

  test('monitors of different instances asking at once: one pass between them', async () => {
    const t = await testEngine('health_race', [itemsWorkflow({ id: 9501, handle: async () => 'x' })]);
    const monitors = ['a', 'b', 'c'].map(
      (id) =>
        new HealthMonitor({
          db: t.engine.db,
          lockConnectionString: t.database.url,
          instanceId: id,
          workflows: t.workflows,
          log: quietLog,
          intervalMs: 60_000,
          heartbeatMs: 200,
        }),
    );
    try {
      const answers = await Promise.all(monitors.flatMap((m) => Array.from({ length: 5 }, () => m.checkAtMostEvery(HEALTH_CHECK_INTERVAL_MS))));
      assert.equal(answers.filter((a) => !a.limited).length, 1, 'one pass in fifteen requests from three instances');
      assert.equal(
        monitors.reduce((n, m) => n + m.report().totals.passes, 0),
        1,
      );
    } finally {
      for (const m of monitors) await m.close();
      await t.close();
    }
  });
});

describe('health across processes', () => {
  const databases: { database: TestDatabase; db: TestDb }[] = [];
  const started: CliProcess[] = [];
  let ollama: OllamaStub | undefined;

  afterEach(async () => {
    for (const child of started.splice(0)) {
      if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
      await child.exited;
    }
    await ollama?.close();
    ollama = undefined;
    for (const { database, db } of databases.splice(0)) {
      await db.destroy();
      await database.drop();
    }
  });

  async function database(): Promise<{ db: TestDb; env: NodeJS.ProcessEnv }> {
    const made = await migratedDatabase('health_cli');
    databases.push(made);
    ollama ??= await startOllamaStub();
    return { db: made.db, env: { DATABASE_URL: made.database.url, OLLAMA_URL: ollama.url } };
  }

  test("two `workflow health` calls in a row: the second is refused (exit 3), says when the next pass is allowed and shows the first one's findings", async () => {
    const { db, env } = await database();
    const first = await runCli(['health'], env);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /this pass ran here/);
    assert.match(first.stdout, /service ollama: up/);
    const lastPass = /last pass: (\S+)/.exec(first.stdout)![1]!;
    const passed = await row(db);
    assert.equal(ollama!.probes, 1);

    const second = await runCli(['health'], env);
    assert.equal(second.code, 3, `${second.stdout}\n${second.stderr}`);
    const next = new Date(passed.started_at!.getTime() + HEALTH_CHECK_INTERVAL_MS);
    assert.match(
      second.stderr,
      new RegExp(
        `^refused: the last health pass on this database started at ${utcText(passed.started_at!)} \\(.*, on instance ${passed.started_by}\\); the next is allowed at ${utcText(next)} `,
      ),
    );
    assert.match(second.stderr, /no pass now; the latest findings:/);
    assert.ok(second.stderr.includes(`last pass: ${lastPass} on instance ${passed.started_by}`), second.stderr);
    assert.match(second.stderr, /service ollama: up/, 'the first process\'s probe, not "not probed"');
    assert.equal(ollama!.probes, 1, 'no pass: no probe');
    assert.deepEqual(await row(db), passed);
    const audited = await refusals(db);
    assert.equal(audited.length, 1);
    assert.equal(audited[0]!.actor, ME);
    assert.equal(audited[0]!.source, 'cli');
    assert.equal(audited[0]!.details.next_allowed_at, next.toISOString());

    const json = await runCli(['health', '--json'], env);
    assert.equal(json.code, 3);
    const answer = JSON.parse(json.stdout) as { kind: string; limited: { nextAllowedAt: string }; report: { lastPassAt: string } };
    assert.equal(answer.kind, 'health');
    assert.equal(answer.limited.nextAllowedAt, next.toISOString());
    assert.equal(answer.report.lastPassAt, lastPass);

    await intervalLater(db);
    const third = await runCli(['health'], env);
    assert.equal(third.code, 0, third.stderr);
    assert.equal(ollama!.probes, 2, 'a pass once the interval is over');
  });

  test("a serving instance's pass and a CLI call share the limit, both ways", async () => {
    const { db, env } = await database();
    await replaceDemoPostings(db, 5);
    const server = startCli(['serve'], env, { stdin: true });
    started.push(server);
    await server.waitFor(/console chat/);
    // The serving instance's own ticks are the monitor's, not requests: they record findings but take no turn.
    await eventually(async () => (await row(db)).findings_at, "the serving monitor's first pass");
    assert.equal((await row(db)).started_at, null);

    server.child.stdin!.write('health\n');
    await server.waitFor(/Health monitor active on this instance/);
    const served = await row(db);
    assert.ok(served.started_at && served.started_by);
    const cli = await runCli(['health'], env);
    assert.equal(cli.code, 3, cli.stderr);
    assert.match(cli.stderr, new RegExp(`on instance ${served.started_by}\\); the next is allowed at`));
    assert.match(cli.stderr, new RegExp(`health monitor: standby; active on ${served.started_by}`));

    await intervalLater(db);
    const cliFirst = await runCli(['health'], env);
    assert.equal(cliFirst.code, 0, cliFirst.stderr);
    const byCli = await row(db);
    assert.notEqual(byCli.started_by, served.started_by);
    const shown = server.stdout.length;
    server.child.stdin!.write('health\n');
    await server.waitFor(/Rate limited\./);
    const answer = server.stdout.slice(shown);
    assert.match(answer, new RegExp(`on instance ${byCli.started_by}\\); the next is allowed at`));
    assert.match(answer, /The latest findings:/);
    assert.deepEqual(await row(db).then((r) => [r.started_at, r.started_by]), [byCli.started_at, byCli.started_by]);
    assert.equal((await refusals(db)).length, 2, 'each refusal audited, the CLI one and the console one');
  });

  test('the limit is per database: a pass on one does not hold back another', async () => {
    const one = await database();
    const two = await database();
    assert.equal((await runCli(['health'], one.env)).code, 0);
    const other = await runCli(['health'], two.env);
    assert.equal(other.code, 0, other.stderr);
    assert.match(other.stdout, /this pass ran here/);
    assert.equal((await runCli(['health'], one.env)).code, 3, 'the first database still limited');
  });
});
