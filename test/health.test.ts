// GET /healthz and GET /metrics (src/chat/slack/metrics.ts) over real HTTP,
// with a real engine on a test database: served here by a plain node HTTP
// server that dispatches to the Bolt custom routes the way Bolt's receivers do.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { CustomRoute } from '@slack/bolt';
import { createObservability } from '../src/chat/slack/metrics.ts';
import { createCommands } from '../src/commands/commands.ts';
import type { CommandResult } from '../src/commands/results.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { eventually } from './helpers/cli.ts';
import { startEngine, testEngine, type TestEngine } from './helpers/engine.ts';

const actor = { id: 'U0HEALTH', source: 'test' };
const WORKFLOW_ID = 9100;
const ITEMS = 30;

interface Served {
  url: string;
  close(): Promise<void>;
}

async function serve(routes: CustomRoute[]): Promise<Served> {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const route = routes.find(
      (r) =>
        r.path === path &&
        [r.method]
          .flat()
          .map((m) => m.toUpperCase())
          .includes(req.method ?? ''),
    );
    if (!route) {
      res.writeHead(404).end();
      return;
    }
    route.handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function get(url: string): Promise<{ status: number; type: string; body: string }> {
  const response = await fetch(url);
  return { status: response.status, type: response.headers.get('content-type') ?? '', body: await response.text() };
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Parses the Prometheus text exposition format (0.0.4) strictly enough to catch a
 * malformed line. Values as Go's ParseFloat reads them (prom-client writes NaN as "Nan").
 */
function parsePrometheus(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([+-]?(?:[0-9.]+(?:e[+-]?[0-9]+)?|nan|inf))(?: -?[0-9]+)?$/i;
  const labelPair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/gy;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) continue;
    if (line.startsWith('# TYPE ')) {
      const [, name, type] = line.split(' ').slice(1);
      assert.ok(name && ['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type ?? ''), `bad TYPE line: ${line}`);
      types.set(name, type!);
      continue;
    }
    const match = sampleLine.exec(line);
    assert.ok(match, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    if (match[2]) {
      labelPair.lastIndex = 0;
      let consumed = 0;
      for (let pair = labelPair.exec(match[2]); pair; pair = labelPair.exec(match[2])) {
        labels[pair[1]!] = pair[2]!;
        consumed = labelPair.lastIndex;
      }
      assert.equal(consumed, match[2].length, `bad labels in ${line}`);
    }
    samples.push({ name: match[1]!, labels, value: /nan/i.test(match[3]!) ? NaN : Number(match[3]!.replace(/inf/i, 'Infinity')) });
  }
  return { samples, types };
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('/healthz and /metrics', () => {
  let t: TestEngine;
  let served: Served;
  let alive = true;
  let release: () => void = () => {};
  let gate = Promise.resolve();

  before(async () => {
    t = await testEngine(
      'health',
      [
        itemsWorkflow({
          id: WORKFLOW_ID,
          rateLimitSeconds: 1,
          handle: async ({ id }) => {
            await gate;
            return `r${id}`;
          },
        }),
      ],
      (db) => createItems(db, ITEMS),
    );
    const observability = createObservability({ health: t.health, engineAlive: () => alive });
    served = await serve(observability.routes);
  });
  after(async () => {
    release();
    await served?.close();
    await t?.close();
  });

  test('healthz: 200 {"status":"ok"} with the database up and the runner alive', async () => {
    const response = await get(`${served.url}/healthz`);
    assert.equal(response.status, 200);
    assert.match(response.type, /^application\/json/);
    assert.deepEqual(JSON.parse(response.body), { status: 'ok' });
  });

  test('healthz: 503 with the reason when the runner is not alive', async () => {
    alive = false;
    try {
      const response = await get(`${served.url}/healthz`);
      assert.equal(response.status, 503);
      assert.deepEqual(JSON.parse(response.body), { status: 'unavailable', reason: 'runner not alive' });
    } finally {
      alive = true;
    }
  });

  test('metrics: Prometheus text whose run, interaction, duration and lock-wait figures follow a run', async () => {
    const first = await get(`${served.url}/metrics`);
    assert.equal(first.status, 200);
    assert.match(first.type, /^text\/plain; version=0\.0\.4/);
    const before = parsePrometheus(first.body);
    assert.equal(before.types.get('workflow_runs'), 'gauge');
    assert.equal(before.types.get('workflow_interactions'), 'gauge');
    assert.equal(before.types.get('workflow_run_duration_seconds'), 'histogram');
    assert.equal(before.types.get('workflow_lock_waits_total'), 'counter');
    assert.equal(value(before.samples, 'workflow_database_up'), 1);
    assert.equal(value(before.samples, 'workflow_runs', { workflow_id: String(WORKFLOW_ID), status: 'completed' }) ?? 0, 0);
    assert.ok(
      before.samples.some((s) => s.name === 'process_cpu_user_seconds_total'),
      'process metrics from its own registry',
    );

    // A run held at its handlers, a duplicate request refused meanwhile, then the run let go.
    gate = new Promise<void>((resolve) => (release = resolve));
    const { result } = await t.service.handle(`run ${WORKFLOW_ID}`, actor, 'chat');
    assert.equal(result.kind, 'run_started', JSON.stringify(result));
    const started = result as Extract<CommandResult, { kind: 'run_started' }>;

    const during = await eventually(
      async () => {
        const samples = parsePrometheus((await get(`${served.url}/metrics`)).body).samples;
        const live = { workflow_id: String(WORKFLOW_ID), step: 'process', status: 'running' };
        return (value(samples, 'workflow_interactions', live) ?? 0) > 0 && samples;
      },
      'claimed interactions in /metrics',
      10_000,
    );
    assert.equal(value(during, 'workflow_runs', { workflow_id: String(WORKFLOW_ID), status: 'running' }), 1);

    const duplicate = await t.service.handle(`run ${WORKFLOW_ID}`, actor, 'chat');
    assert.equal(duplicate.result.kind, 'refused');
    release();
    const summary = await started.run.done;
    assert.equal(summary.outcome, 'completed');

    const afterRun = parsePrometheus((await get(`${served.url}/metrics`)).body).samples;
    const labels = { workflow_id: String(WORKFLOW_ID) };
    assert.equal(value(afterRun, 'workflow_runs', { ...labels, status: 'completed' }), 1);
    assert.equal(value(afterRun, 'workflow_runs', { ...labels, status: 'running' }), 0);
    assert.equal(value(afterRun, 'workflow_interactions', { ...labels, step: 'process', status: 'completed' }), ITEMS);
    assert.equal(value(afterRun, 'workflow_interactions', { ...labels, step: 'process', status: 'pending' }), 0);
    assert.equal(value(afterRun, 'workflow_lock_waits_total', { ...labels, reason: 'duplicate' }), 1);
    assert.equal(value(afterRun, 'workflow_run_duration_seconds_count', { ...labels, status: 'completed' }), 1);
    const sum = value(afterRun, 'workflow_run_duration_seconds_sum', { ...labels, status: 'completed' })!;
    assert.ok(sum > 0 && sum < 60, `duration ${sum}`);
    assert.equal(value(afterRun, 'workflow_run_duration_seconds_bucket', { ...labels, status: 'completed', le: '+Inf' }), 1);

    // A second scrape observes the ended run no second time.
    const again = parsePrometheus((await get(`${served.url}/metrics`)).body).samples;
    assert.equal(value(again, 'workflow_run_duration_seconds_count', { ...labels, status: 'completed' }), 1);
  });

  test('healthz: 503 "database unreachable" for a service whose database is down; /metrics says so too', async () => {
    const port = await closedPort();
    const engine = startEngine(`postgresql://postgres@127.0.0.1:${port}/nowhere`, t.workflows);
    const { health } = createCommands(engine, { all: () => t.workflows, find: () => undefined });
    const down = await serve(createObservability({ health, processMetrics: false }).routes);
    try {
      const response = await get(`${down.url}/healthz`);
      assert.equal(response.status, 503);
      // Which cause, not the error: that names hosts and ports, for METRICS_TOKEN's bearer only.
      assert.deepEqual(JSON.parse(response.body), { status: 'unavailable', reason: 'database unreachable' });
      const metrics = await get(`${down.url}/metrics`);
      assert.equal(metrics.status, 200);
      const { samples } = parsePrometheus(metrics.body);
      assert.equal(value(samples, 'workflow_database_up'), 0);
      assert.equal(samples.filter((s) => s.name === 'workflow_runs').length, 0);
    } finally {
      await down.close();
      await engine.close();
    }
  });

  test('healthz: 503 once the database the app runs on is dropped', async () => {
    await t.database.drop();
    const response = await get(`${served.url}/healthz`);
    assert.equal(response.status, 503);
    assert.equal((JSON.parse(response.body) as { reason: string }).reason, 'database unreachable');
  });
});
