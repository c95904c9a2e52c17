// graphile-worker (0.18) over the same no-op work: N jobs enqueued in one
// `graphile_worker.add_jobs` call (not timed), then a runner (run()) timed from
// its start until every job has been handled and its row deleted (completed
// jobs are deleted: that is graphile-worker's whole record of them).
//
//   node bench/peers/graphile-worker.ts --config A|B|C [--jobs 100000] [--pool N]
//
//   A  concurrency 10, localQueue 500                            (the target configuration)
//   B  concurrency 50, localQueue 500, completeJobBatchDelay 0   (its best single-process setup)
//   C  the library's defaults: concurrency 1, no local queue, no completion batching
//
// maxPoolSize stays at its default (10) unless --pool is given.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Logger, run, runMigrations, type RunnerOptions, type Task } from 'graphile-worker';
import pg from 'pg';
import {
  REPO_ROOT,
  assert,
  freshDatabase,
  intFlag,
  measureProcess,
  measureServer,
  openServer,
  parseFlags,
  peakRssMb,
  printResult,
  sampleRss,
  watchdog,
} from '../lib.ts';

interface Config {
  label: string;
  concurrency?: number;
  localQueueSize?: number;
  completeJobBatchDelay?: number;
}

const CONFIGS: Record<string, Config> = {
  A: { label: 'A: concurrency 10, localQueue 500', concurrency: 10, localQueueSize: 500 },
  B: { label: 'B: concurrency 50, localQueue 500, completeJobBatchDelay 0', concurrency: 50, localQueueSize: 500, completeJobBatchDelay: 0 },
  C: { label: 'C: defaults (concurrency 1, no localQueue, no batching)' },
};

// Its package.json is not in its exports map: read the installed copy's.
const VERSION = (JSON.parse(readFileSync(path.join(REPO_ROOT, 'node_modules/graphile-worker/package.json'), 'utf8')) as { version: string }).version;

const flags = parseFlags(process.argv.slice(2));
const configName = String(flags.get('config') ?? 'A').toUpperCase();
const config = CONFIGS[configName];
if (!config) throw new Error(`--config must be one of ${Object.keys(CONFIGS).join(', ')}`);
const jobs = intFlag(flags, 'jobs', 100_000);
const pool = flags.has('pool') ? intFlag(flags, 'pool', 10) : undefined;

// Warnings and errors only: the default logger prints a line per job.
const logger = new Logger(() => (level, message) => {
  if (level === 'error' || level === 'warning') process.stderr.write(`graphile-worker ${level}: ${message}\n`);
});

watchdog();
const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_gw_${configName.toLowerCase()}_${process.pid}`);
try {
  // --- setup (not timed): schema, then every job in one add_jobs call ----------
  await runMigrations({ connectionString: database.url, logger });
  const client = new pg.Client({ connectionString: database.url, application_name: 'bench-setup' });
  client.on('error', () => {}); // a dropped database (watchdog) ends it; queries report the rest
  await client.connect();
  await client.query(
    `SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(
       SELECT ROW('noop', json_build_object('id', g), NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
         FROM generate_series(1, $1::int) g))`,
    [jobs],
  );
  await client.query('VACUUM ANALYZE graphile_worker._private_jobs');
  await client.query('CHECKPOINT');
  const queued = (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM graphile_worker._private_jobs')).rows[0]!.n;
  assert(queued === jobs, `${queued} jobs queued, expected ${jobs}`);

  const seen = new Uint8Array(jobs + 1);
  let handled = 0;
  let duplicates = 0;
  let firstJobMs: number | undefined;
  let everyJobHandled!: () => void;
  const allHandled = new Promise<void>((resolve) => (everyJobHandled = resolve));
  const noop: Task = async (payload) => {
    const id = (payload as { id: number }).id;
    if (seen[id]) duplicates++;
    seen[id] = 1;
    if (handled === 0) firstJobMs = performance.now() - started;
    if (++handled === jobs) everyJobHandled();
  };

  const options: RunnerOptions = {
    connectionString: database.url,
    logger,
    noHandleSignals: true,
    taskList: { noop },
    ...(config.concurrency !== undefined ? { concurrency: config.concurrency } : {}),
    ...(pool !== undefined ? { maxPoolSize: pool } : {}),
    preset: {
      worker: {
        ...(config.localQueueSize !== undefined ? { localQueue: { size: config.localQueueSize } } : {}),
        ...(config.completeJobBatchDelay !== undefined ? { completeJobBatchDelay: config.completeJobBatchDelay } : {}),
      },
    },
  };

  // --- timed: start → every job handled and its row deleted ----------------------
  // run() rather than runOnce(): in 0.17.3 (and not re-checked since) a worker does not await completeJob
  // unless completions are batched, so runOnce() can resolve and release its
  // pool while the last few DELETEs are still in flight; they are lost and those
  // jobs stay locked (for 4 hours). Here the clock stops when the handler has
  // seen every job and the jobs table is empty (polled every 5 ms from then on).
  const rss = sampleRss();
  const serverUsage = await measureServer(database.url);
  const usage = measureProcess();
  const started = performance.now();
  const runner = await run(options);
  await allHandled;
  while ((await client.query<{ n: number }>('SELECT count(*)::int AS n FROM graphile_worker._private_jobs')).rows[0]!.n > 0) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const seconds = (performance.now() - started) / 1000;
  const sampledPeak = rss.stop();
  const used = usage.stop();
  const serverCpuSeconds = await serverUsage.stop();
  await runner.stop();

  // --- checks ---------------------------------------------------------------------
  const left = (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM graphile_worker._private_jobs')).rows[0]!.n;
  const version = (await client.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]!.v;
  await client.end();
  let distinct = 0;
  for (let i = 1; i <= jobs; i++) distinct += seen[i]!;
  assert(left === 0, `${left} jobs left in the queue`);
  assert(distinct === jobs, `${distinct} distinct jobs handled, expected ${jobs}`);

  printResult({
    system: `graphile-worker ${VERSION}`,
    config: config.label + (pool !== undefined ? `, maxPoolSize ${pool}` : ''),
    items: jobs,
    seconds,
    itemsPerSecond: jobs / seconds,
    peakRssMb: peakRssMb(),
    sampledPeakRssMb: sampledPeak,
    cpuSeconds: used.cpuSeconds,
    serverCpuSeconds,
    details: {
      handled,
      duplicates,
      jobsLeft: left,
      firstJobSeconds: (firstJobMs ?? 0) / 1000,
      eventLoopDelayMs: used.eventLoopDelayMs,
      serverVersion: version,
    },
  });
} finally {
  await database.drop().catch((error: Error) => process.stderr.write(`could not drop the database: ${error.message}\n`));
  await server.release();
}
