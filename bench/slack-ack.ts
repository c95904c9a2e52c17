// Slash-command acknowledgement latency of the Slack app in HTTP mode: how
// long Slack waits for the 200 to a signed `POST /slack/events` carrying
// `/workflow <text>` (Slack gives up after 3 s). Measured twice, over
// --requests signed requests each: with the process idle, and while a
// global_batch run with concurrency 16 runs in the same process (a no-op
// workflow over enough subjects to outlast the measurement, started by a
// signed `/workflow run` like a user would, its progress posted to the
// stand-in for Slack's Web API by the app's notifier).
//
//   node bench/slack-ack.ts [--requests 2000] [--concurrency 1] [--text list]
//        [--subjects 600000] [--handler-delay-ms 0] [--run-concurrency 16]
//
// The requests come from a worker thread (its own event loop, same process),
// signed as Slack signs them, over one keep-alive connection per concurrent
// sender; --concurrency 1 (the default) sends them one after another. A
// request's latency is from just before fetch() to the response's end.
// Slack's Web API is played by test/helpers/slack-stub.ts in this process.
import { Worker } from 'node:worker_threads';
import { sql } from 'kysely';
import { createObservability } from '../src/chat/slack/metrics.ts';
import { createSlackApp } from '../src/chat/slack/app.ts';
import { createCommands } from '../src/commands/commands.ts';
import { loadConfig } from '../src/config.ts';
import { createKysely, createPool } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { Engine } from '../src/engine/engine.ts';
import { createLogger } from '../src/log.ts';
import { defineStep, defineWorkflow, resolveDefaults } from '../src/workflows/define.ts';
import { startSlackStub } from '../test/helpers/slack-stub.ts';
import { assert, freshDatabase, intFlag, measureProcess, openServer, parseFlags, peakRssMb, printResult, sampleRss, watchdog } from './lib.ts';

const WORKFLOW_ID = 9002;
const SECRET = 'bench-signing-secret';
const CHANNEL = 'C0BENCH';
const USER = 'U0BENCH';

interface BenchTables {
  subjects: { id: number; done: boolean };
}

const flags = parseFlags(process.argv.slice(2));
const requests = intFlag(flags, 'requests', 2_000);
const concurrency = intFlag(flags, 'concurrency', 1);
const text = typeof flags.get('text') === 'string' ? (flags.get('text') as string) : 'list';
const subjects = intFlag(flags, 'subjects', 600_000);
const handlerDelayMs = flags.has('handler-delay-ms') ? Number(flags.get('handler-delay-ms')) : 0;
const runConcurrency = intFlag(flags, 'run-concurrency', 16);
const warmup = Math.min(200, requests);

watchdog();
const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_slack_${process.pid}`);
const log = createLogger(process.env.LOG_LEVEL ?? 'warn');
const stub = await startSlackStub();
let engine: Engine | undefined;
let slack: ReturnType<typeof createSlackApp> | undefined;
try {
  // --- setup (not timed) ---------------------------------------------------
  const setup = createKysely<BenchTables>(createPool({ connectionString: database.url, applicationName: 'bench-setup', max: 2 }));
  await migrateToLatest(setup);
  await sql`CREATE TABLE subjects (id bigint PRIMARY KEY, done boolean NOT NULL DEFAULT false)`.execute(setup);
  await sql`CREATE INDEX subjects_pending ON subjects (id) WHERE NOT done`.execute(setup);
  await sql`INSERT INTO subjects (id) SELECT g FROM generate_series(1, ${subjects}::int) g`.execute(setup);
  await sql`VACUUM ANALYZE subjects`.execute(setup);
  await setup.insertInto('workflows').values({ id: WORKFLOW_ID, name: 'bench-slack', definition: '{}' }).execute();
  await setup.destroy();

  const workflow = resolveDefaults(
    defineWorkflow<BenchTables>({
      id: WORKFLOW_ID,
      name: 'bench-slack',
      subject: 'subject',
      concurrency: runConcurrency,
      batchSize: 500,
      metrics: (d) => d.selectFrom('subjects').select([sql<number>`count(*)`.as('total'), sql<number>`count(*) FILTER (WHERE done)`.as('done')]),
      steps: [
        defineStep<BenchTables, object, null>({
          name: 'noop',
          pending: (d) => d.selectFrom('subjects').select('id as subject_id').where('done', '=', false),
          handle: handlerDelayMs > 0 ? () => new Promise((resolve) => setTimeout(() => resolve(null), handlerDelayMs)) : async () => null,
          save: async (tx, items) => {
            await sql`UPDATE subjects SET done = true WHERE id = ANY(${items.map((i) => i.subjectId)}::bigint[])`.execute(tx);
          },
        }),
      ],
    }),
  );
  engine = new Engine({ connectionString: database.url, workflows: [workflow], log, heartbeatMs: 2_000, forceGraceMs: 5_000 });
  const commands = createCommands(engine, {
    all: () => [workflow],
    find: (ref) => (String(ref) === String(WORKFLOW_ID) || ref === workflow.name ? workflow : undefined),
  });
  const config = loadConfig({
    SLACK_SIGNING_SECRET: SECRET,
    SLACK_BOT_TOKEN: 'xoxb-bench',
    SLACK_API_URL: stub.url,
    PORT: '0',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    WORKFLOW_ACCESS: JSON.stringify([{ role: 'operator', to: ['*'] }]),
  });
  slack = createSlackApp({ config, ...commands, log, routes: createObservability({ health: commands.health }).routes });
  const { port } = await slack.start(0);
  const url = `http://127.0.0.1:${port}/slack/events`;

  const client = startClient(url);
  try {
    await client.send(warmup, concurrency, text); // JIT, connections, caches: not counted

    // --- idle ----------------------------------------------------------------
    const idleProcess = measureProcess();
    const idle = await client.send(requests, concurrency, text);
    const idleLoop = idleProcess.stop();

    // --- while a run goes ----------------------------------------------------
    const mark = stub.mark();
    const started = await client.send(1, 1, `run ${WORKFLOW_ID}`);
    assert(
      started.statuses.every((s) => s === 200),
      `the run request was answered ${started.statuses.join(',')}`,
    );
    await stub.waitFor('chat.postMessage', (c) => c.body.channel === CHANNEL, { since: mark, timeoutMs: 30_000, what: 'the run started message' });
    const active = engine.activeRuns()[0];
    assert(active, 'the run did not start');
    // Let it reach its steady state (claiming and completing pages) first.
    await waitUntil(() => done(active.progress()) >= 2_000, 30_000, 'the run to complete its first pages');
    const doneBefore = done(active.progress());
    const rss = sampleRss();
    const loadedProcess = measureProcess();
    const loadedStarted = performance.now();
    const loaded = await client.send(requests, concurrency, text);
    const loadedSeconds = (performance.now() - loadedStarted) / 1000;
    const loadedLoop = loadedProcess.stop();
    const sampledPeak = rss.stop();
    const doneDuring = done(active.progress()) - doneBefore;
    const stillRunning = engine.activeRuns().some((r) => r.id === active.id);
    assert(stillRunning, `the run ended before the measurement did: raise --subjects (now ${subjects})`);
    active.stop({ kind: 'stop', by: 'bench' });
    const summary = await active.done;

    for (const [phase, r] of [
      ['idle', idle],
      ['loaded', loaded],
    ] as const) {
      assert(
        r.statuses.every((s) => s === 200),
        `${phase}: answers other than 200: ${[...new Set(r.statuses)].join(',')}`,
      );
      assert(r.latencies.length === requests, `${phase}: ${r.latencies.length} of ${requests} requests measured`);
    }
    assert(stub.problems.length === 0, `Block Kit problems: ${stub.problems.slice(0, 3).join('; ')}`);
    const replies = stub.callsTo('chat.postEphemeral').length;

    const idleStats = stats(idle.latencies);
    const loadedStats = stats(loaded.latencies);
    printResult({
      system: 'Slack app, HTTP mode',
      config: `${JSON.stringify(text)}, ${concurrency === 1 ? 'sequential' : `concurrency ${concurrency}`}; run: ${handlerDelayMs > 0 ? `${handlerDelayMs} ms handler` : 'no-op'}, concurrency ${runConcurrency}`,
      items: requests,
      seconds: loadedSeconds,
      itemsPerSecond: requests / loadedSeconds,
      peakRssMb: peakRssMb(),
      sampledPeakRssMb: sampledPeak,
      cpuSeconds: loadedLoop.cpuSeconds,
      details: {
        latencyMs: { idle: idleStats, loaded: loadedStats },
        targetP99Ms: 50,
        meetsTarget: idleStats.p99 < 50 && loadedStats.p99 < 50,
        runItemsPerSecondDuringLoaded: doneDuring / loadedSeconds,
        runOutcome: summary.outcome,
        eventLoopDelayMs: { idle: idleLoop.eventLoopDelayMs, loaded: loadedLoop.eventLoopDelayMs },
        cpuSeconds: { idle: idleLoop.cpuSeconds, loaded: loadedLoop.cpuSeconds },
        ephemeralReplies: replies,
        requests,
        concurrency,
        text,
        subjects,
      },
    });
  } finally {
    await client.close();
  }
} finally {
  await slack?.stop().catch(() => {});
  await engine?.close().catch(() => {});
  await stub.close();
  await database.drop();
  await server.release();
}

function done(progress: Record<string, { done: number; failed: number }>): number {
  return Object.values(progress).reduce((n, p) => n + p.done + p.failed, 0);
}

async function waitUntil(probe: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function stats(ms: number[]): { p50: number; p90: number; p99: number; max: number; mean: number } {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    p50: round(at(0.5)),
    p90: round(at(0.9)),
    p99: round(at(0.99)),
    max: round(sorted[sorted.length - 1]!),
    mean: round(ms.reduce((a, b) => a + b, 0) / ms.length),
  };
}

/**
 * The load generator, on a worker thread so that its own event loop is not the
 * one under test. Plain JavaScript (eval'd worker source is not type-stripped): signs each request
 * as Slack does (v0 HMAC-SHA256 of `v0:<ts>:<body>`; see test/helpers/slack-sign.ts).
 */
function startClient(url: string) {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { createHmac } = require('node:crypto');
    const { url, secret, user, channel } = workerData;
    let counter = 0;
    function body(text) {
      counter++;
      return new URLSearchParams({
        token: 'unused', team_id: 'T0BENCH', team_domain: 'bench', channel_id: channel, channel_name: 'bench',
        user_id: user, user_name: 'bench', command: '/workflow', text, api_app_id: 'A0BENCH',
        is_enterprise_install: 'false', response_url: 'http://127.0.0.1:9/unused', trigger_id: counter + '.1.trigger',
      }).toString();
    }
    async function one(text) {
      const payload = body(text);
      const ts = Math.floor(Date.now() / 1000);
      const signature = 'v0=' + createHmac('sha256', secret).update('v0:' + ts + ':' + payload).digest('hex');
      const started = performance.now();
      const response = await fetch(url, { method: 'POST', body: payload, headers: {
        'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': String(ts), 'x-slack-signature': signature } });
      await response.arrayBuffer();
      return { ms: performance.now() - started, status: response.status };
    }
    parentPort.on('message', async ({ id, count, concurrency, text }) => {
      const latencies = [], statuses = [];
      let next = 0;
      async function sender() {
        while (next < count) { next++; const r = await one(text); latencies.push(r.ms); statuses.push(r.status); }
      }
      try {
        await Promise.all(Array.from({ length: concurrency }, sender));
        parentPort.postMessage({ id, latencies, statuses });
      } catch (error) {
        parentPort.postMessage({ id, error: String(error && error.stack || error) });
      }
    });
  `;
  const worker = new Worker(source, { eval: true, workerData: { url, secret: SECRET, user: USER, channel: CHANNEL } });
  let nextId = 0;
  const pending = new Map<number, { resolve: (r: { latencies: number[]; statuses: number[] }) => void; reject: (e: Error) => void }>();
  worker.on('message', (m: { id: number; latencies?: number[]; statuses?: number[]; error?: string }) => {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.error) p?.reject(new Error(m.error));
    else p?.resolve({ latencies: m.latencies!, statuses: m.statuses! });
  });
  worker.on('error', (error) => {
    for (const p of pending.values()) p.reject(error);
    pending.clear();
  });
  return {
    send(count: number, senders: number, commandText: string) {
      const id = nextId++;
      return new Promise<{ latencies: number[]; statuses: number[] }>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, count, concurrency: senders, text: commandText });
      });
    },
    close: () => worker.terminate().then(() => {}),
  };
}
