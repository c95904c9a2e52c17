// Stop latency: from a stop request to the run ended `stopped` (its row
// written, its lock released), with 16 handlers in flight that only end when
// aborted. The request goes through a second Engine (another "instance"), so
// it takes the real path: flag on the run row + NOTIFY to the owner's lock
// connection → abort → unfinished work back to pending → end record.
//
//   node bench/stop-latency.ts [--stops 50] [--concurrency 16]
//
// Target: p99 under 500 ms.
import { sql } from 'kysely';
import { createKysely, createPool } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { Engine } from '../src/engine/engine.ts';
import { createLogger } from '../src/log.ts';
import { defineStep, defineWorkflow, resolveDefaults } from '../src/workflows/define.ts';
import { assert, freshDatabase, intFlag, openServer, parseFlags, peakRssMb, printResult, watchdog } from './lib.ts';

const WORKFLOW_ID = 9002;

interface BenchTables {
  subjects: { id: number; done: boolean };
}
const flags = parseFlags(process.argv.slice(2));
const stops = intFlag(flags, 'stops', 50);
const concurrency = intFlag(flags, 'concurrency', 16);

watchdog();
const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_stop_${process.pid}`);
const log = createLogger(process.env.LOG_LEVEL ?? 'warn');
try {
  const db = createKysely<BenchTables>(createPool({ connectionString: database.url, applicationName: 'bench-setup', max: 2 }));
  await migrateToLatest(db);
  await sql`CREATE TABLE subjects (id bigint PRIMARY KEY, done boolean NOT NULL DEFAULT false)`.execute(db);
  await sql`INSERT INTO subjects (id) SELECT g FROM generate_series(1, ${concurrency * 4}::int) g`.execute(db);
  await db.insertInto('workflows').values({ id: WORKFLOW_ID, name: 'bench-stop', definition: '{}' }).execute();

  let inFlight = 0;
  const workflow = resolveDefaults(
    defineWorkflow<BenchTables>({
      id: WORKFLOW_ID,
      name: 'bench-stop',
      subject: 'subject',
      concurrency,
      batchSize: concurrency,
      rateLimitSeconds: 0,
      retries: 0,
      timeoutMs: 600_000,
      metrics: (d) => d.selectFrom('subjects').select([sql<number>`count(*)`.as('total'), sql<number>`count(*) FILTER (WHERE done)`.as('done')]),
      steps: [
        defineStep<BenchTables, object, null>({
          name: 'wait',
          pending: (d) => d.selectFrom('subjects').select('id as subject_id').where('done', '=', false),
          // In flight until the run aborts it: the worst case for a stop.
          handle: (_input, { signal }) =>
            new Promise((_resolve, reject) => {
              inFlight++;
              signal.addEventListener(
                'abort',
                () => {
                  inFlight--;
                  reject(signal.reason);
                },
                { once: true },
              );
            }),
          save: async () => {},
        }),
      ],
    }),
  );
  const owner = new Engine({ connectionString: database.url, workflows: [workflow], log, heartbeatMs: 2_000, forceGraceMs: 2_000, instanceId: 'bench-owner' });
  const requester = new Engine({
    connectionString: database.url,
    workflows: [workflow],
    log,
    heartbeatMs: 2_000,
    forceGraceMs: 2_000,
    instanceId: 'bench-requester',
  });

  const latencies: number[] = [];
  const started = performance.now();
  for (let i = 0; i < stops; i++) {
    const outcome = await owner.startRun({ workflow, mode: 'global_batch', force: false, requestedBy: 'bench', source: 'bench' });
    if (!outcome.started) throw new Error(`run refused: ${outcome.refusal.message}`);
    const deadline = Date.now() + 10_000;
    while (inFlight < concurrency) {
      if (Date.now() > deadline) throw new Error(`only ${inFlight} handlers in flight`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const t0 = performance.now();
    const requested = await requester.requestStop(outcome.run.id, 'bench');
    assert(requested.kind === 'requested', `stop: ${requested.kind}`);
    const summary = await outcome.run.done;
    latencies.push(performance.now() - t0);
    assert(summary.run.status === 'stopped', `run ended ${summary.run.status}`);
  }
  const seconds = (performance.now() - started) / 1000;
  const running = await sql<{ n: number }>`SELECT count(*)::int AS n FROM interactions WHERE status = 'running'`.execute(db);
  assert(running.rows[0]!.n === 0, `${running.rows[0]!.n} interactions left running`);
  await owner.close();
  await requester.close();
  await db.destroy();

  const sorted = [...latencies].sort((a, b) => a - b);
  const at = (q: number) => +sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!.toFixed(1);
  printResult({
    system: 'workflow-chatops stop latency',
    config: `${stops} stops, ${concurrency} handlers in flight, stop via another engine (NOTIFY)`,
    items: stops,
    seconds,
    itemsPerSecond: stops / seconds,
    peakRssMb: peakRssMb(),
    sampledPeakRssMb: peakRssMb(),
    cpuSeconds: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6,
    details: {
      latencyMs: { p50: at(0.5), p99: at(0.99), max: +sorted.at(-1)!.toFixed(1), min: +sorted[0]!.toFixed(1) },
      targetP99Ms: 500,
      inFlight: concurrency,
      figures: [
        { figure: `stop latency p50 (${stops} stops, ${concurrency} in flight)`, value: `${at(0.5)} ms`, target: '', met: true },
        { figure: `stop latency p99 (${stops} stops, ${concurrency} in flight)`, value: `${at(0.99)} ms`, target: '< 500 ms', met: at(0.99) < 500 },
      ],
    },
  });
} finally {
  await database.drop().catch((error: Error) => process.stderr.write(`could not drop the database: ${error.message}\n`));
  await server.release();
}
