// Chaos: three `serve` processes on one database, each the Slack app in HTTP
// mode (signed slash commands; one local stand-in for Slack's Web API), as
// they would run behind a load balancer. 100 concurrent `/workflow run 3001`
// spread over the three: exactly one run starts, the 99 others are refused
// and audited; a stop sent to an instance that does not own the run reaches
// the owner.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import { assertDomainMatchesInteractions, interactionStatuses, recordFigure, waitForRunProgress } from './helpers/chaos.ts';
import { eventually, startCli, type CliProcess } from './helpers/cli.ts';
import type { TestDatabase } from './helpers/database.ts';
import { migratedDatabase, type TestDb } from './helpers/engine.ts';
import { startOllamaStub, type OllamaStub } from './helpers/ollama-stub.ts';
import { FORM, postSigned, slashCommandBody } from './helpers/slack-sign.ts';
import { messageText, startSlackStub, type SlackStub } from './helpers/slack-stub.ts';

const SECRET = 'chaos-instances-secret';
const REQUESTS = 100;

describe('three serve processes, one database', () => {
  let database: TestDatabase;
  let db: TestDb;
  let ollama: OllamaStub;
  let slack: SlackStub;
  const servers: { process: CliProcess; url: string; pid: number }[] = [];

  before(async () => {
    ({ database, db } = await migratedDatabase('chaos_instances'));
    await replaceDemoPostings(db, 300);
    ollama = await startOllamaStub({ delayMs: 150 });
    slack = await startSlackStub();
    const env = {
      DATABASE_URL: database.url,
      OLLAMA_URL: ollama.url,
      WORKFLOW_HEARTBEAT_MS: '500',
      SLACK_SIGNING_SECRET: SECRET,
      SLACK_BOT_TOKEN: 'xoxb-chaos',
      SLACK_API_URL: slack.url,
      PORT: '0',
      WORKFLOW_SHUTDOWN_GRACE_MS: '500',
      WORKFLOW_ACCESS: JSON.stringify([{ role: 'operator', to: ['*'] }]),
    };
    const started = [0, 1, 2].map(() => startCli(['serve'], env));
    for (const process of started) {
      const [, port] = await process.waitFor(/HTTP on port (\d+)/, 60_000);
      servers.push({ process, url: `http://127.0.0.1:${port}/slack/events`, pid: process.child.pid! });
    }
  });

  after(async () => {
    for (const { process } of servers) if (process.child.exitCode === null) process.child.kill('SIGKILL');
    await Promise.all(servers.map((s) => s.process.exited));
    await ollama?.close();
    await slack?.close();
    await db?.destroy();
    await database?.drop();
  });

  test(`${REQUESTS} concurrent run requests over three instances: one run, ${REQUESTS - 1} audited refusals; a stop via any instance reaches the owner`, {
    timeout: 120_000,
  }, async () => {
    const sent = performance.now();
    const responses = await Promise.all(
      Array.from({ length: REQUESTS }, (_, i) =>
        postSigned(servers[i % 3]!.url, slashCommandBody({ text: 'run 3001', user_id: `U${String(i).padStart(3, '0')}`, channel_id: 'C0OPS' }), FORM, {
          secret: SECRET,
        }),
      ),
    );
    assert.ok(
      responses.every((r) => r.status === 200),
      'every request acknowledged',
    );
    const ackMax = Math.max(...responses.map((r) => r.ms));

    const audit = await eventually(
      async () => {
        const rows = await db.selectFrom('audit_log').select(['outcome', 'actor', 'run_id', 'reason', 'details']).where('action', '=', 'run').execute();
        return rows.length >= REQUESTS ? rows : undefined;
      },
      `${REQUESTS} audited run requests`,
      60_000,
    );
    const decidedMs = performance.now() - sent;
    const runs = await db.selectFrom('workflow_runs').select(['id', 'status', 'owner_instance', 'requested_by']).execute();
    assert.equal(runs.length, 1, 'exactly one run');
    const run = runs[0]!;
    assert.equal(audit.filter((a) => a.outcome === 'accepted').length, 1);
    const refused = audit.filter((a) => a.outcome === 'refused');
    assert.equal(refused.length, REQUESTS - 1, `${REQUESTS - 1} refusals`);
    const reasons: Record<string, number> = {};
    for (const r of refused) {
      const reason = (r.details as { refusal?: string }).refusal ?? '?';
      reasons[reason] = (reasons[reason] ?? 0) + 1;
    }
    assert.equal(reasons.duplicate, REQUESTS - 1, `all refused as duplicates of run #${run.id}: ${JSON.stringify(reasons)}`);
    assert.ok(
      refused.every((r) => r.run_id === run.id),
      'every refusal names the run',
    );
    // Every refused user was told, naming the run.
    await eventually(
      async () => slack.callsTo('chat.postEphemeral', (c) => new RegExp(`run #${run.id}`).test(messageText(c))).length >= REQUESTS - 1,
      'the refusals to be answered',
      30_000,
    );

    // Stop through an instance that does not own the run.
    await waitForRunProgress(db, 5);
    const owner = servers.find((s) => run.owner_instance?.startsWith(`${s.pid}-`));
    assert.ok(owner, `the owner ${run.owner_instance} is one of the three`);
    const other = servers.find((s) => s !== owner)!;
    const stopSent = performance.now();
    const stop = await postSigned(other.url, slashCommandBody({ text: `stop ${run.id}`, user_id: 'USTOPPER', channel_id: 'C0OPS' }), FORM, { secret: SECRET });
    assert.equal(stop.status, 200);
    const stopped = await eventually(
      async () => {
        const row = await db.selectFrom('workflow_runs').selectAll().where('id', '=', run.id).executeTakeFirstOrThrow();
        return row.status !== 'running' ? row : undefined;
      },
      'the run to stop',
      15_000,
    );
    const stopMs = performance.now() - stopSent;
    assert.equal(stopped.status, 'stopped');
    assert.match(stopped.stopped_by ?? '', /^USTOPPER/);
    assert.equal(stopped.ended_reason, 'stop_requested');
    assert.equal((await interactionStatuses(db)).running, undefined);
    await assertDomainMatchesInteractions(db);
    for (const s of servers) assert.equal(s.process.child.exitCode, null, 'every instance is still up');

    for (const s of servers) s.process.child.kill('SIGTERM');
    for (const s of servers) assert.equal((await s.process.exited).code, 0);
    await recordFigure('three-instances', {
      requests: REQUESTS,
      runs: 1,
      refused: refused.length,
      reasons,
      ackMaxMs: Math.round(ackMax),
      allDecidedMs: Math.round(decidedMs),
      stopViaOtherInstanceMs: Math.round(stopMs),
    });
  });
});
