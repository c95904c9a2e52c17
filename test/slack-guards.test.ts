// The Slack app's HTTP mode as an attacker and a careless operator meet it:
// the real Bolt app on a port, requests signed as Slack signs them (or not),
// Web API calls answered by a local stand-in. The app runs with the settings
// a production deployment is told to use (SLACK_TEAM_ID, METRICS_TOKEN) and
// without WORKFLOW_ACCESS, to see what that default allows.
import assert from 'node:assert/strict';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { createSlackApp, type SlackApp } from '../src/chat/slack/app.ts';
import { createObservability } from '../src/chat/slack/metrics.ts';
import { MAX_BODY_BYTES } from '../src/chat/slack/request-guard.ts';
import { loadConfig } from '../src/config.ts';
import type { HealthReport } from '../src/engine/monitor.ts';
import { createLogger } from '../src/log.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { testEngine, type TestEngine } from './helpers/engine.ts';
import { blockActionsBody, FORM, postSigned, signed, slashCommandBody } from './helpers/slack-sign.ts';
import { messageText, startSlackStub, type SlackStub } from './helpers/slack-stub.ts';

const SECRET = 'guards-signing-secret-51c2';
const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
const WORKFLOW = 9301;

/** A monitor report with a service down: what /healthz must not tell strangers. */
const REPORT = {
  instanceId: 'db-host-7:4242',
  active: true,
  activeInstance: 'db-host-7:4242',
  intervalMs: 60_000,
  staleAfterMs: 6_000,
  lastPassAt: new Date().toISOString(),
  recovered: [],
  stuck: [],
  orphans: [],
  services: [{ name: 'ollama', up: false, error: 'connect ECONNREFUSED 10.1.2.3:11434', workflows: [WORKFLOW] }],
  totals: { passes: 1, runsRecovered: 0, orphanedClaims: 0, interactionsPending: 0 },
  error: null,
} as unknown as HealthReport;

interface RawAnswer {
  /** Everything the server sent. */
  text: string;
  /** Whether the server closed the connection. */
  closed: boolean;
}

/**
 * Sends `head` and then `chunks` on a plain TCP connection (no client library
 * that would send the whole body first), then waits, without sending more,
 * for the server to answer and close.
 */
function rawExchange(port: number, head: string, chunks: Buffer[]): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => (text += data));
    socket.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' || error.code === 'EPIPE' ? undefined : reject(error)));
    socket.on('close', () => resolve({ text, closed: true }));
    socket.setTimeout(15_000, () => {
      socket.destroy();
      resolve({ text, closed: false });
    });
    socket.on('connect', () => {
      socket.write(head);
      for (const chunk of chunks) socket.write(chunk);
    });
  });
}

describe('Slack HTTP mode: limits, timestamps, workspaces, default roles, /metrics and /healthz', () => {
  let stub: SlackStub;
  let t: TestEngine;
  let slack: SlackApp;
  let port: number;
  let url: string;
  let logged = '';

  before(async () => {
    stub = await startSlackStub();
    t = await testEngine(
      'slack_guards',
      [itemsWorkflow({ id: WORKFLOW, name: 'guarded', table: 'items', rateLimitSeconds: 0, handle: async ({ id }) => `done ${id}` })],
      (db) => createItems(db, 5),
    );
    const out = new PassThrough();
    out.on('data', (chunk) => (logged += chunk));
    const config = loadConfig({
      SLACK_SIGNING_SECRET: SECRET,
      SLACK_BOT_TOKEN: 'xoxb-guards',
      SLACK_API_URL: stub.url,
      SLACK_TEAM_ID: 'T0TEST',
      METRICS_TOKEN,
      LOG_LEVEL: 'warn',
      PORT: '0',
    });
    const observability = createObservability({
      health: { ping: () => t.health.ping(), observabilityStats: (since) => t.health.observabilityStats(since), monitorReport: () => REPORT },
      metricsToken: config.METRICS_TOKEN,
      processMetrics: false,
    });
    slack = createSlackApp({
      config,
      service: t.service,
      views: t.views,
      messages: t.messages,
      log: createLogger('warn', out),
      routes: observability.routes,
      notifier: { minUpdateMs: 300, pollMs: 100, discoverMs: 60_000 },
    });
    ({ port } = await slack.start(0));
    url = `http://127.0.0.1:${port}/slack/events`;
  });

  after(async () => {
    await slack?.stop();
    await t?.close();
    await stub?.close();
  });

  const lastAuditId = async () => Number((await sql<{ id: number | null }>`SELECT max(id)::int AS id FROM audit_log`.execute(t.db)).rows[0]!.id ?? 0);
  const auditSince = (id: number) => t.db.selectFrom('audit_log').selectAll().where('id', '>', id).orderBy('id').execute();
  const runCount = async () => Number((await sql<{ n: number }>`SELECT count(*)::int AS n FROM workflow_runs`.execute(t.db)).rows[0]!.n);

  function command(user: string, text: string, options: { timestamp?: number; team_id?: string; enterprise_id?: string } = {}) {
    const body = slashCommandBody({ text, user_id: user, channel_id: 'C0OPS', team_id: options.team_id, enterprise_id: options.enterprise_id });
    return postSigned(url, body, FORM, { secret: SECRET, timestamp: options.timestamp });
  }

  test('without WORKFLOW_ACCESS: one start-up warning saying how to grant roles, and every Slack user a viewer', async () => {
    const warnings = logged.split('\n').filter((line) => line.includes('WORKFLOW_ACCESS is not set'));
    assert.equal(warnings.length, 1, logged);
    assert.match(warnings[0]!, /every Slack user is a viewer/);
    assert.match(warnings[0]!, /\\"role\\":\\"operator\\"/);

    const audit = await lastAuditId();
    const runs = await runCount();
    let mark = stub.mark();
    assert.equal((await command('UANYONE', `run ${WORKFLOW}`)).status, 200);
    const refusal = await stub.waitFor('chat.postEphemeral', (c) => c.body.user === 'UANYONE', { since: mark, what: 'the refusal' });
    assert.match(messageText(refusal), /needs the operator role; you have viewer/);
    mark = stub.mark();
    await command('UANYONE', 'list');
    await stub.waitFor('chat.postEphemeral', (c) => c.body.user === 'UANYONE', { since: mark, what: 'the list' });
    assert.equal(await runCount(), runs);
    assert.deepEqual(
      (await auditSince(audit)).map((e) => [e.actor, e.action, e.outcome]),
      [['UANYONE (uanyone)', 'run', 'refused']],
    );
  });

  test('a body declared over 1 MB: 413 and the connection closed, before the body is read', async () => {
    const declared = 256 * 1024 * 1024;
    const head = `POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: ${FORM}\r\nContent-Length: ${declared}\r\n\r\n`;
    // One kilobyte of the 256 MB sent, then nothing: only a server that answers without reading on can answer.
    const answer = await rawExchange(port, head, [Buffer.alloc(1024, 'a')]);
    assert.match(answer.text, /^HTTP\/1\.1 413 /);
    assert.match(answer.text, /connection: close/i);
    assert.ok(answer.closed, 'the server closed the connection');
  });

  test('a streamed body over 1 MB (no Content-Length): 413 as soon as it passes the limit, before it ends', async () => {
    const head = `POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: ${FORM}\r\nTransfer-Encoding: chunked\r\n\r\n`;
    const piece = Buffer.alloc(64 * 1024, 'b');
    const chunk = Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]);
    // Just past 1 MB, and no terminating chunk: the body has not ended when the server answers.
    const chunks = Array.from({ length: MAX_BODY_BYTES / piece.length + 1 }, () => chunk);
    const answer = await rawExchange(port, head, chunks);
    assert.match(answer.text, /^HTTP\/1\.1 413 /);
    assert.ok(answer.closed, 'the server closed the connection');
  });

  test('the limit holds for signed requests too; a signed body under it is served', async () => {
    const padding = (size: number) => `${slashCommandBody({ text: 'help', user_id: 'UANYONE', channel_id: 'C0OPS' })}&pad=${'p'.repeat(size)}`;
    const over = padding(MAX_BODY_BYTES);
    const request = signed(SECRET, over, FORM);
    const answer = await fetch(url, { method: 'POST', headers: request.headers, body: request.body }).catch((error: Error) => error);
    // fetch may see the connection closed while it is still sending; either way nothing got past the limit.
    if (!(answer instanceof Error)) assert.equal(answer.status, 413);
    const mark = stub.mark();
    const under = await postSigned(url, padding(MAX_BODY_BYTES - 4096), FORM, { secret: SECRET });
    assert.equal(under.status, 200);
    await stub.waitFor('chat.postEphemeral', (c) => c.body.user === 'UANYONE', { since: mark, what: 'the answer to the request under the limit' });
  });

  test('a signed request whose timestamp is more than 5 minutes off, ahead or behind: 401 and nothing done', async () => {
    const now = Math.floor(Date.now() / 1000);
    const mark = stub.mark();
    for (const offset of [6 * 60, 365 * 24 * 3600, -6 * 60]) {
      const answer = await command('UANYONE', 'list', { timestamp: now + offset });
      assert.equal(answer.status, 401, `timestamp ${offset} s off`);
    }
    // Within the window, both ways: served.
    assert.equal((await command('UANYONE', 'help', { timestamp: now + 4 * 60 })).status, 200);
    const answered = await stub.waitFor('chat.postEphemeral', (c) => c.body.user === 'UANYONE', { since: mark, what: 'the answer to the in-window request' });
    assert.match(messageText(answered), /run/);
    assert.deepEqual(
      stub.calls.slice(mark).map((c) => c.method),
      ['chat.postEphemeral'],
      'one answer: the three refused requests did nothing',
    );
  });

  test('SLACK_TEAM_ID: a command or click from another workspace or organisation is refused, answered and audited; nothing runs', async () => {
    const audit = await lastAuditId();
    const runs = await runCount();
    const mark = stub.mark();
    const foreign = await command('UOUTSIDER', `run ${WORKFLOW}`, { team_id: 'T0OTHER' });
    assert.equal(foreign.status, 200);
    assert.match(foreign.text, /serves its own workspace only/);
    const grid = await command('UGRID', 'list', { enterprise_id: 'E0ELSEWHERE' });
    assert.equal(grid.status, 200);
    const click = blockActionsBody({
      user_id: 'UOUTSIDER',
      team_id: 'T0OTHER',
      channel_id: 'C0SHARED',
      message_ts: '1.000001',
      action_id: 'workflow_force_start',
      value: JSON.stringify({ workflowId: WORKFLOW }),
    });
    assert.equal((await postSigned(url, click, FORM, { secret: SECRET })).status, 200);

    const entries = await (async () => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const rows = await auditSince(audit);
        if (rows.length >= 3 || Date.now() > deadline) return rows;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    })();
    assert.deepEqual(
      entries.map((e) => [e.actor, e.action, e.outcome, (e.details as Record<string, unknown>).refusal, (e.details as Record<string, unknown>).teams]).sort(),
      [
        ['UGRID (ugrid)', 'command', 'refused', 'team', ['T0TEST', 'E0ELSEWHERE']],
        ['UOUTSIDER (uoutsider)', 'button', 'refused', 'team', ['T0TEST', 'T0OTHER']],
        ['UOUTSIDER (uoutsider)', 'command', 'refused', 'team', ['T0OTHER']],
      ],
    );
    assert.equal(await runCount(), runs);
    assert.deepEqual(
      stub.calls.slice(mark).map((c) => c.method),
      [],
      'nothing sent to Slack for them',
    );
  });

  test('/metrics needs the bearer token; /healthz tells strangers the status only', async () => {
    const base = `http://127.0.0.1:${port}`;
    const wrong: Record<string, string>[] = [
      {},
      { authorization: 'Bearer wrong-token-0123456789' },
      { authorization: METRICS_TOKEN },
      { authorization: `Basic ${METRICS_TOKEN}` },
    ];
    for (const headers of wrong) {
      const answer = await fetch(`${base}/metrics`, { headers });
      assert.equal(answer.status, 401, JSON.stringify(headers));
      assert.equal(answer.headers.get('www-authenticate'), 'Bearer realm="metrics"');
      assert.doesNotMatch(await answer.text(), /workflow_/);
    }
    const metrics = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /workflow_database_up 1/);

    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    const shown = await health.text();
    assert.deepEqual(JSON.parse(shown), { status: 'degraded' });
    for (const secret of ['ollama', '10.1.2.3', 'db-host-7', String(WORKFLOW)]) assert.ok(!shown.includes(secret), `${secret} in ${shown}`);
    const detailed = await fetch(`${base}/healthz`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    const body = (await detailed.json()) as { status: string; reason: string; services: Record<string, string> };
    assert.equal(body.status, 'degraded');
    assert.match(body.reason, /ollama down: connect ECONNREFUSED/);
    assert.deepEqual(body.services, { ollama: 'down' });
  });
});
