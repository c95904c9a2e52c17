// Chaos: PostgreSQL restarted under a serving process in the middle of a run.
// A dedicated embedded server (its own temporary directory) is stopped fast
// and started again while `serve` runs in Slack HTTP mode (signed slash
// commands, a local stand-in for Slack's Web API). The process survives;
// while the database is down a command is answered at once with the outage
// message; afterwards commands work again; the run, whose owner lost its lock
// with the database, is adopted by the serving instance and completed (nothing
// running, domain rows = completed interactions), with no command typed.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createKysely, createPool, type Db } from '../src/db/connect.ts';
import { ensureEmbeddedServer, stopEmbeddedServer } from '../src/db/embedded.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import type { PostingsTables } from '../src/workflows/postings/schema.ts';
import { assertDomainMatchesInteractions, completedCount, interactionStatuses, pendingPostings, recordFigure } from './helpers/chaos.ts';
import { eventually, startCli, type CliProcess } from './helpers/cli.ts';
import { startOllamaStub, type OllamaStub } from './helpers/ollama-stub.ts';
import { FORM, postSigned, slashCommandBody } from './helpers/slack-sign.ts';
import { messageText, startSlackStub, type SlackStub } from './helpers/slack-stub.ts';

const SECRET = 'chaos-signing-secret';
const POSTINGS = 200;

describe('PostgreSQL restarted mid-run', () => {
  let dir: string;
  let url: string;
  let db: Db<PostingsTables>;
  let ollama: OllamaStub;
  let slack: SlackStub;
  let server: CliProcess | undefined;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'chaos-pg-'));
    await fs.chmod(dir, 0o755); // as root, the server runs as the postgres OS user
    url = await ensureEmbeddedServer(dir);
    db = createKysely<PostingsTables>(createPool({ connectionString: url, applicationName: 'chaos-test', max: 2 }));
    await migrateToLatest(db);
    await replaceDemoPostings(db, POSTINGS);
    ollama = await startOllamaStub({ delayMs: 50 });
    slack = await startSlackStub();
  });

  after(async () => {
    if (server && server.child.exitCode === null) server.child.kill('SIGKILL');
    await server?.exited;
    await db?.destroy().catch(() => {});
    await stopEmbeddedServer(dir, { mode: 'fast' }).catch(() => {});
    await fs.rm(dir, { recursive: true, force: true });
    await ollama?.close();
    await slack?.close();
  });

  test('the app survives, answers with the outage message while the database is down, works again after, and its run is adopted and finished', {
    timeout: 180_000,
  }, async () => {
    server = startCli(['serve'], {
      DATABASE_URL: url,
      OLLAMA_URL: ollama.url,
      WORKFLOW_HEARTBEAT_MS: '200',
      SLACK_SIGNING_SECRET: SECRET,
      SLACK_BOT_TOKEN: 'xoxb-chaos',
      SLACK_API_URL: slack.url,
      PORT: '0',
      WORKFLOW_ACCESS: JSON.stringify([{ role: 'operator', to: ['*'] }]),
    });
    const [, port] = await server.waitFor(/HTTP on port (\d+)/);
    const events = `http://127.0.0.1:${port}/slack/events`;
    let n = 0;
    /** Sends `/workflow <text>` and resolves with the text of the answer to it. */
    const command = async (text: string) => {
      const user = `UCHAOS${++n}`;
      const since = slack.mark();
      const sent = performance.now();
      const response = await postSigned(events, slashCommandBody({ text, user_id: user, channel_id: 'C0OPS' }), FORM, { secret: SECRET });
      assert.equal(response.status, 200);
      // Answers to `list` (and refusals) are ephemeral, to the one who asked.
      const reply = await slack.waitFor('chat.postEphemeral', (c) => c.body.user === user, { since, timeoutMs: 20_000, what: `the answer to ${text}` });
      return { text: messageText(reply), ms: performance.now() - sent };
    };

    await postSigned(events, slashCommandBody({ text: 'run 3001', user_id: 'UOPS', channel_id: 'C0OPS' }), FORM, { secret: SECRET });
    const runId = await eventually(async () => {
      const row = await db.selectFrom('workflow_runs').select('id').where('status', '=', 'running').executeTakeFirst();
      return row && (await completedCount(db, row.id)) >= 20 ? row.id : undefined;
    }, 'the run to make progress');

    const completedAtStop = await completedCount(db);
    const stopping = performance.now();
    await stopEmbeddedServer(dir, { mode: 'fast' });
    const stoppedMs = performance.now() - stopping;

    const down = await command('list');
    assert.match(down.text, /database unavailable, try again shortly/);
    assert.equal(server.child.exitCode, null, 'the serving process is still up');

    const restarting = performance.now();
    await ensureEmbeddedServer(dir);
    const restartMs = performance.now() - restarting;

    // Commands work again (the pools reconnect on their own); `list` leaves the run whose owner lost the database to the adopters.
    const back = performance.now();
    const answer = await eventually(
      async () => {
        const reply = await command('list');
        return /database unavailable/.test(reply.text) ? undefined : reply;
      },
      'a normal answer after the restart',
      30_000,
    );
    const backMs = performance.now() - back;
    assert.doesNotMatch(answer.text, /unavailable|failed on our side/);

    // The run lost its owner with the database; the serving instance, which
    // defines the workflow, adopts the same run and finishes it: no command.
    ollama.setDelay(0);
    const run = await eventually(
      async () => {
        const row = await db
          .selectFrom('workflow_runs')
          .selectAll()
          .where('id', '=', runId)
          .executeTakeFirst()
          .catch(() => undefined);
        return row && row.status !== 'running' ? row : undefined;
      },
      'the run to be adopted and finished',
      120_000,
    );
    // The `list` above was answered before the serving instance's adopter had
    // its session back; it left the run to the adopter (RESTART_GRACE_SECONDS).
    assert.equal(run.status, 'completed', `run ended ${run.status} (${run.ended_reason}): ${run.error}`);
    assert.ok(run.owners.length >= 2, `adopted after its owner was lost: ${JSON.stringify(run.owners)}`);
    assert.equal(run.owners[0]?.ended, 'owner_lost', `the first owner was lost: ${JSON.stringify(run.owners)}`);
    assert.equal(await pendingPostings(db), 0);
    assert.equal((await interactionStatuses(db)).running, undefined, 'nothing left running');
    const completedAfterRestart = await completedCount(db);
    await assertDomainMatchesInteractions(db);
    assert.equal(server.child.exitCode, null, 'the serving process is still up');

    server.child.kill('SIGTERM');
    const exit = await server.exited;
    assert.equal(exit.code, 0, exit.stderr);
    await recordFigure('pg-restart', {
      stopMs: Math.round(stoppedMs),
      outageAnswerMs: Math.round(down.ms),
      restartMs: Math.round(restartMs),
      firstNormalAnswerAfterRestartMs: Math.round(backMs),
      runStatus: run.status,
      completedAtStop,
      completedAfterRestart,
    });
  });
});
