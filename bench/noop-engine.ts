// The engine over a no-op workflow: N subjects, one step whose handler returns
// null and whose save marks the batch done with one UPDATE … = ANY. Measures a
// global_batch run from the start request to `done`, then checks that every
// subject is done and has exactly one completed interaction.
//
//   node bench/noop-engine.ts [--subjects 100000] [--concurrency 10] [--batch 500]
//        [--trace-sql] [--explain 100] [--keep]
//
// --trace-sql  time every statement by kind (printed to stderr)
// --explain K  EXPLAIN (ANALYZE, BUFFERS) the K-th claim, read, completion and save statement (implies --trace-sql)
// --keep       keep the database afterwards (its name is printed)
// --stale-statistics  do not VACUUM ANALYZE the subjects before the run (plans without statistics)
import { sql } from 'kysely';
import { createKysely, createPool } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { Engine } from '../src/engine/engine.ts';
import { createLogger } from '../src/log.ts';
import { defineStep, defineWorkflow, resolveDefaults } from '../src/workflows/define.ts';
import { assert, freshDatabase, intFlag, measureProcess, measureServer, openServer, parseFlags, peakRssMb, printResult, sampleRss, watchdog } from './lib.ts';
import { ENGINE_STATEMENTS, EXPLAINED_ENGINE_STATEMENTS, formatSlowest, formatStats, traceSql, type SqlTrace } from './sql-trace.ts';

const WORKFLOW_ID = 9001;

interface BenchTables {
  subjects: { id: number; done: boolean };
}

const flags = parseFlags(process.argv.slice(2));
const subjects = intFlag(flags, 'subjects', 100_000);
const concurrency = intFlag(flags, 'concurrency', 10);
const batchSize = intFlag(flags, 'batch', 500);
const explainAt = flags.has('explain') ? intFlag(flags, 'explain', 100) : undefined;
const tracing = flags.has('trace-sql') || explainAt !== undefined;
const keep = flags.has('keep');
const staleStatistics = flags.has('stale-statistics');

watchdog();
const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_engine_${process.pid}`);
const log = createLogger(process.env.LOG_LEVEL ?? 'warn');
try {
  // --- setup (not timed) ---------------------------------------------------
  const setupPool = createPool({ connectionString: database.url, applicationName: 'bench-setup', max: 2 });
  const db = createKysely<BenchTables>(setupPool);
  await migrateToLatest(db);
  await sql`CREATE TABLE subjects (id bigint PRIMARY KEY, done boolean NOT NULL DEFAULT false)`.execute(db);
  await sql`CREATE INDEX subjects_pending ON subjects (id) WHERE NOT done`.execute(db);
  await sql`INSERT INTO subjects (id) SELECT g FROM generate_series(1, ${subjects}::int) g`.execute(db);
  // --stale-statistics: leave `subjects` and `interactions` unanalysed, as a
  // server with autovacuum off or behind leaves them, to check that the
  // engine's plans hold without statistics.
  if (!staleStatistics) await sql`VACUUM ANALYZE subjects`.execute(db);
  await sql`CHECKPOINT`.execute(db);
  await db.insertInto('workflows').values({ id: WORKFLOW_ID, name: 'bench-noop', definition: '{}' }).execute();

  const workflow = resolveDefaults(
    defineWorkflow<BenchTables>({
      id: WORKFLOW_ID,
      name: 'bench-noop',
      subject: 'subject',
      concurrency,
      batchSize,
      metrics: (d) => d.selectFrom('subjects').select([sql<number>`count(*)`.as('total'), sql<number>`count(*) FILTER (WHERE done)`.as('done')]),
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

  let trace: SqlTrace | undefined;
  if (tracing) {
    trace = traceSql(
      [
        ...ENGINE_STATEMENTS,
        { name: 'save (UPDATE subjects)', test: (s) => s.trimStart().startsWith('UPDATE subjects') },
        { name: 'metrics snapshot', test: (s) => s.includes('FILTER (WHERE done)') },
      ],
      explainAt === undefined ? {} : { explain: { kinds: [...EXPLAINED_ENGINE_STATEMENTS, 'save (UPDATE subjects)'], occurrence: explainAt } },
    );
  }

  const engine = new Engine({ connectionString: database.url, workflows: [workflow], log, heartbeatMs: 2_000, forceGraceMs: 2_000 });

  // --- timed: start request → done ---------------------------------------------
  const rss = sampleRss();
  const serverUsage = await measureServer(database.url);
  const usage = measureProcess();
  const started = performance.now();
  const outcome = await engine.startRun({ workflow, mode: 'global_batch', force: false, requestedBy: 'bench', source: 'bench' });
  if (!outcome.started) throw new Error(`run refused: ${outcome.refusal.message}`);
  const summary = await outcome.run.done;
  const seconds = (performance.now() - started) / 1000;
  const sampledPeak = rss.stop();
  const used = usage.stop();
  const serverCpuSeconds = await serverUsage.stop();
  // With --expose-gc: what the finished run still holds (before engine.close()).
  const gc = (globalThis as { gc?: () => void }).gc;
  let heapAfterRunMb: number | undefined;
  if (gc) {
    gc();
    heapAfterRunMb = Math.round(process.memoryUsage().heapUsed / 1048576);
  }
  trace?.restore();
  await engine.close();

  // --- checks ------------------------------------------------------------------
  assert(summary.outcome === 'completed', `run outcome ${summary.outcome}`);
  assert(summary.progress.noop?.done === subjects, `progress says ${summary.progress.noop?.done} done, expected ${subjects}`);
  const notDone = await sql<{ n: number }>`SELECT count(*)::int AS n FROM subjects WHERE NOT done`.execute(db);
  assert(notDone.rows[0]!.n === 0, `${notDone.rows[0]!.n} subjects not done`);
  const claimsLeft = await sql<{ n: number }>`SELECT count(*)::int AS n FROM interaction_claims`.execute(db);
  assert(claimsLeft.rows[0]!.n === 0, `${claimsLeft.rows[0]!.n} claims left after the run`);
  const counts = await sql<{ total: number; completed: number; distinct_subjects: number; once: number }>`
    SELECT count(*)::int AS total,
           count(*) FILTER (WHERE status = 'completed')::int AS completed,
           count(DISTINCT subject_id)::int AS distinct_subjects,
           (SELECT count(*)::int FROM (SELECT subject_id FROM interactions WHERE status = 'completed' AND workflow_id = ${WORKFLOW_ID}
                                        GROUP BY subject_id HAVING count(*) = 1) AS x) AS once
      FROM interactions WHERE workflow_id = ${WORKFLOW_ID}`.execute(db);
  const c = counts.rows[0]!;
  assert(
    c.total === subjects && c.completed === subjects && c.distinct_subjects === subjects && c.once === subjects,
    `interactions: ${JSON.stringify(c)}, expected ${subjects} each`,
  );
  const size = await sql<{ mb: number }>`SELECT round(pg_total_relation_size('interactions') / 1048576.0, 1)::float8 AS mb`.execute(db);
  const version = await sql<{ v: string }>`SELECT current_setting('server_version') AS v`.execute(db);
  await db.destroy();

  const details: Record<string, unknown> = {
    runId: summary.run.id,
    interactionRows: c.total,
    interactionsTableMb: size.rows[0]!.mb,
    serverVersion: version.rows[0]!.v,
    concurrency,
    batchSize,
    eventLoopDelayMs: used.eventLoopDelayMs,
    ...(heapAfterRunMb !== undefined ? { heapAfterRunMb } : {}),
  };
  if (trace) {
    details.statements = trace.stats();
    process.stderr.write(`\nstatement timings (client round trip, ms) over ${seconds.toFixed(2)} s:\n${formatStats(trace.stats())}\n`);
    process.stderr.write(`\nslowest statements:\n${formatSlowest(trace.slowest())}\n`);
    for (const [kind, plan] of Object.entries(trace.explains())) {
      process.stderr.write(`\nEXPLAIN (ANALYZE, BUFFERS) of ${kind}, occurrence ${explainAt}:\n${plan}\n`);
    }
  }
  printResult({
    system: 'workflow-chatops engine',
    config: `concurrency ${concurrency}, batch ${batchSize}${staleStatistics ? ', stale statistics' : ''}`,
    items: subjects,
    seconds,
    itemsPerSecond: subjects / seconds,
    peakRssMb: peakRssMb(),
    sampledPeakRssMb: sampledPeak,
    cpuSeconds: used.cpuSeconds,
    serverCpuSeconds,
    details,
  });
} finally {
  if (keep) process.stderr.write(`kept database ${database.url}\n`);
  else await database.drop().catch((error: Error) => process.stderr.write(`could not drop the database: ${error.message}\n`));
  await server.release();
}
