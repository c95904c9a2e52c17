// Socket Mode at its protocol: the app, given SLACK_APP_TOKEN, asks the Web
// API for a WebSocket URL (apps.connections.open, with the app-level token),
// dials it, waits for Slack's `hello`, and then receives envelopes, each of
// which it must acknowledge over the socket by envelope_id (within 3 s, or
// Slack redelivers it). Played here by a local HTTP stand-in for the Web API
// (test/helpers/slack-stub.ts, with apps.connections.open answered in front of
// it) and a local `ws` WebSocket server; the engine and database are real.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { WebSocketServer, type WebSocket } from 'ws';
import { createObservability } from '../src/chat/slack/metrics.ts';
import { createSlackApp, type SlackApp } from '../src/chat/slack/app.ts';
import { loadConfig } from '../src/config.ts';
import postingsWorkflow from '../src/workflows/postings/index.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import { eventually } from './helpers/cli.ts';
import { quietLog, testEngine, type TestEngine } from './helpers/engine.ts';
import { messageText, startSlackStub, type SlackStub } from './helpers/slack-stub.ts';

const APP_TOKEN = 'xapp-1-A0TEST-1-socketmodetest';
const BOT_TOKEN = 'xoxb-0-socketmodetest';
const CHANNEL = 'C0OPS';
const USER = 'U0OPERATOR';

interface Envelope {
  envelope_id: string;
  type: string;
  payload: Record<string, unknown>;
  accepts_response_payload: boolean;
  retry_attempt?: number;
  retry_reason?: string;
}

/** What the app sends back over the socket. */
interface Ack {
  envelope_id: string;
  payload?: Record<string, unknown>;
  receivedAt: number;
}

/** Slack's side of the WebSocket: sends hello on connect, sends envelopes, collects acks. */
interface SocketSide {
  url: string;
  connections: number;
  acks: Ack[];
  /** Sends an envelope to the (latest) connected app and resolves with its ack and the time it took. */
  send(envelope: Envelope, timeoutMs?: number): Promise<{ ack: Ack; ms: number }>;
  connected(): Promise<void>;
  close(): Promise<void>;
}

async function startSocketSide(): Promise<SocketSide> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const { port } = wss.address() as AddressInfo;
  const acks: Ack[] = [];
  const waiters = new Map<string, (ack: Ack) => void>();
  let socket: WebSocket | undefined;
  let onConnected: (() => void) | undefined;
  const side: SocketSide = {
    url: `ws://127.0.0.1:${port}/link/?ticket=test-ticket&app_id=A0TEST`,
    connections: 0,
    acks,
    async send(envelope, timeoutMs = 10_000) {
      assert.ok(socket, 'no app connected');
      const sentAt = performance.now();
      const acked = new Promise<Ack>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ack for envelope ${envelope.envelope_id} within ${timeoutMs} ms`)), timeoutMs);
        waiters.set(envelope.envelope_id, (ack) => {
          clearTimeout(timer);
          resolve(ack);
        });
      });
      socket.send(JSON.stringify(envelope));
      const ack = await acked;
      return { ack, ms: ack.receivedAt - sentAt };
    },
    connected: () => (socket ? Promise.resolve() : new Promise<void>((resolve) => (onConnected = resolve))),
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close(() => resolve());
      }),
  };
  wss.on('connection', (ws, request) => {
    assert.match(request.url ?? '', /ticket=test-ticket/, 'the app dials the URL apps.connections.open gave it');
    side.connections++;
    socket = ws;
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { envelope_id?: string; payload?: Record<string, unknown> };
      if (!message.envelope_id) return;
      const ack: Ack = { envelope_id: message.envelope_id, payload: message.payload, receivedAt: performance.now() };
      acks.push(ack);
      waiters.get(message.envelope_id)?.(ack);
      waiters.delete(message.envelope_id);
    });
    // What Slack sends first on every connection.
    ws.send(
      JSON.stringify({
        type: 'hello',
        num_connections: 1,
        debug_info: { host: 'applink-test', approximate_connection_time: 18060 },
        connection_info: { app_id: 'A0TEST' },
      }),
    );
    onConnected?.();
  });
  return side;
}

/**
 * The Web API stand-in: apps.connections.open (POST, app-level token) answered
 * here with the local WebSocket URL; every other method forwarded to the
 * recording stub.
 */
async function startWebApi(stub: SlackStub, socketUrl: () => string): Promise<{ url: string; opens: { token: string | undefined }[]; close(): Promise<void> }> {
  const target = new URL(stub.url);
  const opens: { token: string | undefined }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.url?.startsWith('/api/apps.connections.open')) {
        const auth = req.headers.authorization;
        opens.push({ token: typeof auth === 'string' ? auth.replace(/^Bearer /, '') : undefined });
        res.setHeader('content-type', 'application/json; charset=utf-8');
        res.end(JSON.stringify(req.method === 'POST' ? { ok: true, url: socketUrl() } : { ok: false, error: 'method_not_supported_for_channel_type' }));
        return;
      }
      const forward = http.request(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: { ...req.headers, host: target.host } },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      forward.on('error', () => res.writeHead(502).end());
      forward.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api/`,
    opens,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let envelopeCounter = 0;
function slashCommandEnvelope(text: string, user = USER, channel = CHANNEL): Envelope {
  return {
    envelope_id: `env-${++envelopeCounter}-${Date.now()}`,
    type: 'slash_commands',
    accepts_response_payload: true,
    payload: {
      token: 'verification-token-unused',
      team_id: 'T0TEST',
      team_domain: 'test',
      channel_id: channel,
      channel_name: 'ops',
      user_id: user,
      user_name: 'olga',
      command: '/workflow',
      text,
      api_app_id: 'A0TEST',
      is_enterprise_install: 'false',
      response_url: 'https://hooks.slack.com/commands/T0TEST/1/unused',
      trigger_id: `${Date.now()}.${envelopeCounter}.trigger`,
    },
  };
}

function appHomeOpenedEnvelope(user = USER): Envelope {
  return {
    envelope_id: `env-${++envelopeCounter}-${Date.now()}`,
    type: 'events_api',
    accepts_response_payload: false,
    retry_attempt: 0,
    retry_reason: '',
    payload: {
      token: 'verification-token-unused',
      team_id: 'T0TEST',
      api_app_id: 'A0TEST',
      type: 'event_callback',
      event_id: `Ev${Date.now()}`,
      event_time: Math.floor(Date.now() / 1000),
      event: { type: 'app_home_opened', user, channel: 'D0HOME', tab: 'home', event_ts: `${Date.now() / 1000}` },
      authorizations: [{ team_id: 'T0TEST', user_id: 'U0BOT', is_bot: true, is_enterprise_install: false }],
    },
  };
}

describe('Socket Mode', () => {
  let t: TestEngine;
  let stub: SlackStub;
  let socket: SocketSide;
  let api: Awaited<ReturnType<typeof startWebApi>>;
  let slack: SlackApp;
  let routesPort: number;

  before(async () => {
    t = await testEngine('slack_socket', [postingsWorkflow({ config: loadConfig({}), log: quietLog })], async (db) => void (await replaceDemoPostings(db, 40)));
    stub = await startSlackStub();
    socket = await startSocketSide();
    api = await startWebApi(stub, () => socket.url);
    const config = loadConfig({
      SLACK_APP_TOKEN: APP_TOKEN,
      SLACK_BOT_TOKEN: BOT_TOKEN,
      SLACK_API_URL: api.url,
      PORT: '0',
      LOG_LEVEL: 'silent',
      WORKFLOW_ACCESS: JSON.stringify([{ role: 'operator', to: [USER] }]),
    });
    slack = createSlackApp({
      config,
      service: t.service,
      views: t.views,
      messages: t.messages,
      log: quietLog,
      routes: createObservability({ health: t.health, processMetrics: false }).routes,
      notifier: { minUpdateMs: 200, pollMs: 200, discoverMs: 1_000 },
    });
    ({ port: routesPort } = await slack.start(0));
    await socket.connected();
  });
  after(async () => {
    await slack?.stop().catch(() => {});
    await socket?.close();
    await api?.close();
    await stub?.close();
    await t?.close();
  });

  test('opens the connection with the app-level token over POST apps.connections.open', () => {
    assert.equal(socket.connections, 1);
    assert.ok(api.opens.length >= 1);
    assert.equal(api.opens[0]!.token, APP_TOKEN);
    // The bot token, never the app token, for everything else.
    assert.ok(
      stub.calls.every((c) => c.token === BOT_TOKEN),
      `tokens used: ${[...new Set(stub.calls.map((c) => c.token))].join(', ')}`,
    );
  });

  test('`/workflow run 3001` is acknowledged by envelope_id over the socket, then runs, and the channel hears of it', async () => {
    const mark = stub.mark();
    const envelope = slashCommandEnvelope('run 3001');
    // How fast is bench/slack-ack.ts's question (Slack redelivers after 3 s); here: acknowledged, once.
    const { ack } = await socket.send(envelope);
    assert.equal(ack.envelope_id, envelope.envelope_id);
    // Acknowledged exactly once.
    assert.equal(socket.acks.filter((a) => a.envelope_id === envelope.envelope_id).length, 1);

    const run = await eventually(
      async () => (await t.db.selectFrom('workflow_runs').selectAll().where('workflow_id', '=', 3001).executeTakeFirst()) ?? null,
      'a run row for workflow 3001',
      10_000,
    );
    assert.equal(run.mode, 'global_batch');
    assert.equal(run.source, 'slack');
    assert.match(run.requested_by, new RegExp(`^${USER}\\b`), 'the run is requested by the Slack user, not the bot');

    const posted = await stub.waitFor('chat.postMessage', (c) => c.body.channel === CHANNEL && messageText(c).includes(`#${run.id}`), {
      since: mark,
      what: 'the run message in the channel',
    });
    assert.equal(posted.token, BOT_TOKEN);

    const ended = await eventually(
      async () => {
        const row = await t.db.selectFrom('workflow_runs').selectAll().where('id', '=', run.id).executeTakeFirstOrThrow();
        return row.status !== 'running' && row;
      },
      'the run to end',
      30_000,
    );
    assert.equal(ended.status, 'completed');
    assert.equal(ended.interactions_completed, 120);
    assert.deepEqual(stub.problems, []);
  });

  test('`/workflow help` is acknowledged and answered ephemerally to the user', async () => {
    const mark = stub.mark();
    const envelope = slashCommandEnvelope('help');
    const { ack } = await socket.send(envelope);
    assert.equal(ack.envelope_id, envelope.envelope_id);
    const reply = await stub.waitFor('chat.postEphemeral', (c) => c.body.user === USER && c.body.channel === CHANNEL, { since: mark, what: 'the help reply' });
    assert.match(messageText(reply), /run (<|&lt;)workflow(>|&gt;)/);
  });

  test('a request refused for want of a role is acknowledged too, answered with the role it needs, and runs nothing', async () => {
    const mark = stub.mark();
    const envelope = slashCommandEnvelope('run 3001', 'U0STRANGER');
    const { ack } = await socket.send(envelope);
    assert.equal(ack.envelope_id, envelope.envelope_id);
    const reply = await stub.waitFor('chat.postEphemeral', (c) => c.body.user === 'U0STRANGER', { since: mark, what: 'the refusal' });
    assert.match(messageText(reply), /operator/);
    const runs = await t.db.selectFrom('workflow_runs').select('id').where('requested_by', 'like', 'U0STRANGER%').execute();
    assert.equal(runs.length, 0);
  });

  test('an app_home_opened event envelope is acknowledged and the Home tab published', async () => {
    const mark = stub.mark();
    const envelope = appHomeOpenedEnvelope();
    const { ack } = await socket.send(envelope);
    assert.equal(ack.envelope_id, envelope.envelope_id);
    const published = await stub.waitFor('views.publish', (c) => c.body.user_id === USER, { since: mark, what: 'the Home tab' });
    assert.equal(published.body.view?.type, 'home');
  });

  test('GET /healthz is served in Socket Mode too (on PORT)', async () => {
    const response = await fetch(`http://127.0.0.1:${routesPort}/healthz`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: 'ok' });
  });
});
