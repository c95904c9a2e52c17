// pg-boss 12 over the same no-op work: N jobs enqueued with `boss.insert`
// (chunks of 10,000, not timed), then `work(name, { batchSize }, handler)`
// workers timed from their start until every job has been handled and is
// `completed` in pgboss.job.
//
//   node bench/peers/pg-boss.ts --config A|B|C [--jobs 100000] [--workers N]
//
//   A  one worker, batchSize 500, pollingIntervalSeconds 0.5 (pg-boss's minimum)
//   B  ten workers (localConcurrency 10), batchSize 500, polling 0.5 s
//   C  as B, plus burstWhenBatchFull: a worker whose fetch came back full fetches again at once
//
// pg-boss facts that shape the figures (node_modules/pg-boss/dist):
// - a worker fetches up to batchSize jobs (one UPDATE … FOR UPDATE SKIP LOCKED),
//   hands the array to the handler, completes them with one UPDATE, then
//   waits for the polling interval before the next fetch, whether or not it
//   found jobs, unless a burst trigger is on (12.x: burstWhenBatchFull). So
//   without it one worker takes at most batchSize jobs per polling interval:
//   500 / 0.5 s = 1,000 jobs/s.
// - completed jobs stay in pgboss.job (state 'completed') until maintenance
//   archives them: like the engine, and unlike graphile-worker, it keeps a row.
// Supervision (maintenance) and scheduling are off so that nothing else runs.
import { createRequire } from 'node:module';
import { type Job, type JobInsert, PgBoss } from 'pg-boss';
import pg from 'pg';
import { assert, freshDatabase, intFlag, measureProcess, measureServer, openServer, parseFlags, peakRssMb, printResult, sampleRss, watchdog } from '../lib.ts';

interface Config {
  label: string;
  workers: number;
  burst?: boolean;
}

const CONFIGS: Record<string, Config> = {
  A: { label: 'A: 1 worker, batchSize 500, polling 0.5 s', workers: 1 },
  B: { label: 'B: 10 workers, batchSize 500, polling 0.5 s', workers: 10 },
  C: { label: 'C: 10 workers, batchSize 500, burstWhenBatchFull', workers: 10, burst: true },
};
const VERSION = (createRequire(import.meta.url)('pg-boss/package.json') as { version: string }).version;
const QUEUE = 'noop';
const BATCH_SIZE = 500;
const POLLING_SECONDS = 0.5;

const flags = parseFlags(process.argv.slice(2));
const configName = String(flags.get('config') ?? 'B').toUpperCase();
const config = CONFIGS[configName];
if (!config) throw new Error(`--config must be one of ${Object.keys(CONFIGS).join(', ')}`);
const jobs = intFlag(flags, 'jobs', 100_000);
if (flags.has('workers')) {
  const workers = intFlag(flags, 'workers', config.workers);
  Object.assign(config, { workers, label: `${configName}: ${workers} workers, batchSize 500, ${config.burst ? 'burstWhenBatchFull' : 'polling 0.5 s'}` });
}

watchdog();
const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_pgboss_${configName.toLowerCase()}_${process.pid}`);
let boss: PgBoss | undefined;
let stopping = false;
try {
  // --- setup (not timed): schema, queue, jobs ------------------------------------
  boss = new PgBoss({ connectionString: database.url, supervise: false, schedule: false, application_name: 'bench-pgboss' });
  boss.on('error', (error: Error) => {
    if (!stopping) process.stderr.write(`pg-boss error: ${error.message}\n`);
  });
  await boss.start();
  await boss.createQueue(QUEUE);
  const CHUNK = 10_000;
  for (let from = 1; from <= jobs; from += CHUNK) {
    const chunk: JobInsert[] = [];
    for (let id = from; id < Math.min(from + CHUNK, jobs + 1); id++) chunk.push({ data: { id } });
    await boss.insert(QUEUE, chunk);
  }
  const client = new pg.Client({ connectionString: database.url, application_name: 'bench-setup' });
  client.on('error', () => {});
  await client.connect();
  await client.query('VACUUM ANALYZE pgboss.job');
  await client.query('CHECKPOINT');
  const unfinished = async () =>
    (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state < 'completed'`, [QUEUE])).rows[0]!.n;
  const queued = await unfinished();
  assert(queued === jobs, `${queued} jobs queued, expected ${jobs}`);

  const seen = new Uint8Array(jobs + 1);
  let handled = 0;
  let duplicates = 0;
  let everyJobHandled!: () => void;
  const allHandled = new Promise<void>((resolve) => (everyJobHandled = resolve));
  const handler = async (batch: Job<{ id: number }>[]) => {
    for (const job of batch) {
      const id = job.data.id;
      if (seen[id]) duplicates++;
      seen[id] = 1;
      if (++handled === jobs) everyJobHandled();
    }
  };

  // --- timed: workers start → every job handled and completed ----------------------
  const rss = sampleRss();
  const serverUsage = await measureServer(database.url);
  const usage = measureProcess();
  const started = performance.now();
  await boss.work(
    QUEUE,
    { batchSize: BATCH_SIZE, pollingIntervalSeconds: POLLING_SECONDS, localConcurrency: config.workers, ...(config.burst ? { burstWhenBatchFull: true } : {}) },
    handler,
  );
  await allHandled;
  // Completion is not awaited by the worker: wait for the rows to say so.
  while ((await unfinished()) > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  const seconds = (performance.now() - started) / 1000;
  const sampledPeak = rss.stop();
  const used = usage.stop();
  const serverCpuSeconds = await serverUsage.stop();
  await boss.offWork(QUEUE);

  // --- checks ---------------------------------------------------------------------
  const states = (
    await client.query<{ state: string; n: number }>(`SELECT state::text, count(*)::int AS n FROM pgboss.job WHERE name = $1 GROUP BY 1`, [QUEUE])
  ).rows;
  const version = (await client.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]!.v;
  const tableMb = (
    await client.query<{ mb: number }>(`SELECT round(sum(pg_total_relation_size(relid)) / 1048576.0, 1)::float8 AS mb FROM pg_partition_tree('pgboss.job')`)
  ).rows[0]!.mb;
  await client.end();
  let distinct = 0;
  for (let i = 1; i <= jobs; i++) distinct += seen[i]!;
  const completed = states.find((s) => s.state === 'completed')?.n ?? 0;
  assert(completed === jobs, `job states ${JSON.stringify(states)}, expected ${jobs} completed`);
  assert(distinct === jobs, `${distinct} distinct jobs handled, expected ${jobs}`);

  printResult({
    system: `pg-boss ${VERSION}`,
    config: config.label,
    items: jobs,
    seconds,
    itemsPerSecond: jobs / seconds,
    peakRssMb: peakRssMb(),
    sampledPeakRssMb: sampledPeak,
    cpuSeconds: used.cpuSeconds,
    serverCpuSeconds,
    details: { handled, duplicates, states, jobTableMb: tableMb, eventLoopDelayMs: used.eventLoopDelayMs, serverVersion: version },
  });
} finally {
  stopping = true;
  await boss?.stop({ graceful: false }).catch(() => {});
  await database.drop().catch((error: Error) => process.stderr.write(`could not drop the database: ${error.message}\n`));
  await server.release();
}
