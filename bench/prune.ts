// Retention beside a run: does pruning old interactions slow a run going on
// the same database, or the Slack app's acknowledgement of slash commands?
//
//   node bench/prune.ts [--old 3000000] [--subjects 2000000] [--window-s 15] [--batch 2000] [--rest 1]
//
// Setup (not timed): --old interactions of a run that ended 40 days ago (with
// an input and an output of about 100 bytes each, as small handlers write),
// and --subjects for a no-op global_batch run with concurrency 16. Then, with
// the run at its steady state and signed `/workflow list` requests going to
// the Slack app (HTTP mode) one after another from a worker thread:
//   1. a window of --window-s seconds without pruning (baseline),
//   2. retention (src/engine/retention.ts) pruning everything of the old run,
//      in batches of --batch rows, measured from start to end,
//   3. another baseline window.
// The run's rate during the prune is compared with the mean of the two
// baselines (target: at most 10 % slower), and the acks' p99 with 50 ms.
import { Worker } from 'node:worker_threads';
import { sql } from 'kysely';
import { createObservability } from '../src/chat/slack/metrics.ts';
import { createSlackApp } from '../src/chat/slack/app.ts';
import { createCommands } from '../src/commands/commands.ts';
import { loadConfig } from '../src/config.ts';
import { createKysely, createPool } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { Engine } from '../src/engine/engine.ts';
import { Retention } from '../src/engine/retention.ts';
import { createLogger } from '../src/log.ts';
import { defineStep, defineWorkflow, resolveDefaults } from '../src/workflows/define.ts';
import { startSlackStub } from '../test/helpers/slack-stub.ts';
import { assert, freshDatabase, intFlag, measureProcess, openServer, parseFlags, peakRssMb, printResult, sampleRss, watchdog } from './lib.ts';

const WORKFLOW_ID = 9003;
const SECRET = 'bench-signing-secret';
const CHANNEL = 'C0BENCH';
const USER = 'U0BENCH';

interface BenchTables {
  subjects: { id: number; done: boolean };
}

const flags = parseFlags(process.argv.slice(2));
const old = intFlag(flags, 'old', 3_000_000);
const subjects = intFlag(flags, 'subjects', 2_000_000);
const windowS = intFlag(flags, 'window-s', 15);
const batchSize = intFlag(flags, 'batch', 2_000);
const restRatio = flags.has('rest') ? Number(flags.get('rest')) : 1;

watchdog(Number(process.env.BENCH_TIMEOUT_SECONDS ?? 1_800));
const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_prune_${process.pid}`);
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
  await setup.insertInto('workflows').values({ id: WORKFLOW_ID, name: 'bench-prune', definition: '{}' }).execute();
  const { rows } = await sql<{ id: number }>`
    INSERT INTO workflow_runs (workflow_id, mode, lock_key, status, action, requested_by, source, ended_at, ended_reason, created_at, started_at)
    VALUES (${WORKFLOW_ID}, 'global_batch', 0, 'completed', 'run', 'bench', 'bench', now() - interval '40 days', 'finished',
            now() - interval '41 days', now() - interval '41 days')
    RETURNING id`.execute(setup);
  const oldRun = rows[0]!.id;
  const filled = performance.now();
  for (let from = 1; from <= old; from += 500_000) {
    const to = Math.min(old, from + 499_999);
    await sql`
      INSERT INTO interactions (run_id, workflow_id, step, subject_id, status, attempts, input, output, claimed_at, finished_at)
      SELECT ${oldRun}, ${WORKFLOW_ID}, (ARRAY['summary', 'skills', 'ihl'])[1 + g % 3], g, 'completed', 1,
             jsonb_build_object('subject', g, 'text', repeat('x', 60)), jsonb_build_object('result', md5(g::text), 'score', g % 100),
             now() - interval '41 days', now() - interval '41 days'
        FROM generate_series(${from}::int, ${to}::int) g`.execute(setup);
  }
  const fillSeconds = (performance.now() - filled) / 1000;
  await sql`VACUUM ANALYZE`.execute(setup);
  await setup.destroy();

  const workflow = resolveDefaults(
    defineWorkflow<BenchTables>({
      id: WORKFLOW_ID,
      name: 'bench-prune',
      subject: 'subject',
      concurrency: 16,
      batchSize: 500,
      metrics: (d) => d.selectFrom('subjects').select([sql<number>`count(*)`.as('total')]),
      steps: [
        defineStep<BenchTables, object, null>({
          name: 'noop',
          pending: (d) => d.selectFrom('subjects').select('id as subject_id').where('done', '=', false),
          handle: async () => null,
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
  const client = startClient(`http://127.0.0.1:${port}/slack/events`);
  // Retention on a pool of its own, as a second instance's monitor would prune.
  const prunePool = createPool({ connectionString: database.url, applicationName: 'bench-retention', max: 1 });
  const retention = new Retention({ db: createKysely(prunePool), log, retentionDays: 30, batchSize, restRatio });
  try {
    const { result } = await commands.service.handle(`run ${WORKFLOW_ID}`, { id: 'bench', source: 'bench' }, 'chat');
    assert(result.kind === 'run_started', `the run did not start: ${JSON.stringify(result)}`);
    const active = engine.activeRuns()[0]!;
    await waitUntil(() => done(active.progress()) >= 5_000, 60_000, 'the run to reach its steady state');

    const window = async (what: () => Promise<unknown>) => {
      const before = done(active.progress());
      const process_ = measureProcess();
      client.start('list');
      const started = performance.now();
      await what();
      const seconds = (performance.now() - started) / 1000;
      const acks = await client.stop();
      const loop = process_.stop();
      assert(
        engine!.activeRuns().some((r) => r.id === active.id),
        `the run ended during the measurement: raise --subjects (now ${subjects})`,
      );
      return { seconds, itemsPerSecond: (done(active.progress()) - before) / seconds, acks: stats(acks), eventLoopDelayMs: loop.eventLoopDelayMs };
    };
    const rss = sampleRss();
    const baseline1 = await window(() => new Promise((resolve) => setTimeout(resolve, windowS * 1000)));
    let counts: Awaited<ReturnType<Retention['prune']>> | undefined;
    const pruning = await window(async () => {
      counts = await retention.prune({ olderThanDays: 30 });
    });
    const baseline2 = await window(() => new Promise((resolve) => setTimeout(resolve, windowS * 1000)));
    const sampledPeak = rss.stop();
    active.stop({ kind: 'stop', by: 'bench' });
    await active.done;
    assert(counts?.interactions === old, `pruned ${counts?.interactions} of ${old}`);

    const baselineRate = (baseline1.itemsPerSecond + baseline2.itemsPerSecond) / 2;
    const slowdown = 1 - pruning.itemsPerSecond / baselineRate;
    printResult({
      system: 'retention beside a run',
      config: `${old.toLocaleString('en-US')} old interactions, batches of ${batchSize}, rest ${restRatio}× each batch; no-op run, concurrency 16; sequential signed /workflow list`,
      items: old,
      seconds: pruning.seconds,
      itemsPerSecond: old / pruning.seconds,
      peakRssMb: peakRssMb(),
      sampledPeakRssMb: sampledPeak,
      cpuSeconds: 0,
      details: {
        fillSeconds,
        pruneRowsPerSecond: Math.round(old / pruning.seconds),
        runItemsPerSecond: { baselineBefore: baseline1.itemsPerSecond, pruning: pruning.itemsPerSecond, baselineAfter: baseline2.itemsPerSecond },
        runSlowdown: Math.round(slowdown * 1000) / 1000,
        ackMs: { baselineBefore: baseline1.acks, pruning: pruning.acks, baselineAfter: baseline2.acks },
        eventLoopDelayMs: { baselineBefore: baseline1.eventLoopDelayMs, pruning: pruning.eventLoopDelayMs, baselineAfter: baseline2.eventLoopDelayMs },
        figures: [
          { figure: 'run slowdown while pruning', value: `${(slowdown * 100).toFixed(1)} %`, target: '≤ 10 %', met: slowdown <= 0.1 },
          { figure: 'slash-command ack p99 while pruning', value: `${pruning.acks.p99} ms`, target: '< 50 ms', met: pruning.acks.p99 < 50 },
        ],
      },
    });
  } finally {
    await client.close();
    await prunePool.end().catch(() => {});
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

function stats(ms: number[]): { count: number; p50: number; p99: number; max: number } {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;
  const round = (x: number) => Math.round(x * 100) / 100;
  return { count: ms.length, p50: round(at(0.5)), p99: round(at(0.99)), max: round(sorted[sorted.length - 1] ?? 0) };
}

/**
 * Signed `/workflow <text>` requests one after another, from a worker thread
 * (its own event loop), from start() until stop(); plain JavaScript, since
 * eval'd worker source is not type-stripped. As bench/slack-ack.ts signs them.
 */
function startClient(url: string) {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { createHmac } = require('node:crypto');
    const { url, secret, user, channel } = workerData;
    let counter = 0, going = false, latencies = [];
    async function one(text) {
      counter++;
      const payload = new URLSearchParams({
        token: 'unused', team_id: 'T0BENCH', team_domain: 'bench', channel_id: channel, channel_name: 'bench',
        user_id: user, user_name: 'bench', command: '/workflow', text, api_app_id: 'A0BENCH',
        is_enterprise_install: 'false', response_url: 'http://127.0.0.1:9/unused', trigger_id: counter + '.1.prune',
      }).toString();
      const ts = Math.floor(Date.now() / 1000);
      const signature = 'v0=' + createHmac('sha256', secret).update('v0:' + ts + ':' + payload).digest('hex');
      const started = performance.now();
      const response = await fetch(url, { method: 'POST', body: payload, headers: {
        'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': String(ts), 'x-slack-signature': signature } });
      await response.arrayBuffer();
      if (response.status !== 200) throw new Error('answered ' + response.status);
      return performance.now() - started;
    }
    parentPort.on('message', async (m) => {
      if (m.type === 'stop') { going = false; return; }
      going = true; latencies = [];
      try {
        while (going) { latencies.push(await one(m.text)); await new Promise((r) => setTimeout(r, 10)); }
        parentPort.postMessage({ latencies });
      } catch (error) {
        parentPort.postMessage({ error: String(error && error.stack || error) });
      }
    });
  `;
  const worker = new Worker(source, { eval: true, workerData: { url, secret: SECRET, user: USER, channel: CHANNEL } });
  let waiting: { resolve: (ms: number[]) => void; reject: (e: Error) => void } | undefined;
  worker.on('message', (m: { latencies?: number[]; error?: string }) => {
    if (m.error) waiting?.reject(new Error(m.error));
    else waiting?.resolve(m.latencies!);
    waiting = undefined;
  });
  return {
    start(text: string) {
      worker.postMessage({ type: 'start', text });
    },
    stop(): Promise<number[]> {
      return new Promise((resolve, reject) => {
        waiting = { resolve, reject };
        worker.postMessage({ type: 'stop' });
      });
    },
    close: () => worker.terminate().then(() => {}),
  };
}
