// Scale: workflow 3001 as it ships (src/workflows/postings, local handlers:
// no OLLAMA_URL, so summary/skills/ihl are the pure functions in local.ts)
// over N synthetic postings from replaceDemoPostings, one global_batch run
// carrying every posting through its three steps (3N interactions).
//
//   node bench/scale.ts [--subjects 1000000] [--keep] [--explain K] [--stop-after 900]
//
// --stop-after S  stop the run (as a user would) after S seconds (default 900) and
//                 report what it did by then, marked unfinished: peak RSS, snapshot and
//                 heartbeat figures stay meaningful, and the suite's time stays bounded.
//
// --explain K  EXPLAIN (ANALYZE, BUFFERS) the K-th claim page, page read, save and
//              completion statement of the run (rolled back; printed to stderr).
//              Pages are 500: with N subjects, K > N/500 lands in the second wave (skills).
//
// Measured:
// - wall time and interactions/s of the run (start request → done);
// - peak RSS of this process (the postings are loaded by a child process, so
//   generating them does not count);
// - the state snapshot at N postings: the workflow's `metrics` query (a sum
//   over the trigger-kept postings_counters, migrations/0008) and the
//   expected work as the engine counts it (expectedWork: each step's
//   pendingCount, from the same counters), each timed on its own, before the
//   run (nothing done) and after it (everything done), plus EXPLAIN
//   (ANALYZE, BUFFERS) of the metrics query. Beside them, as the reference
//   they must equal (checked) and the cost they replace: the same four
//   numbers by one scan of postings with FILTER counts, and one count(*) per
//   step over its pending query (the generic path, which single_subject runs
//   still take);
// - what a progress update costs: the heartbeat (UPDATE workflow_runs SET
//   progress = <the runner's counters>) timed as a client round trip every
//   time the engine sends it during the run, and its plan afterwards (it
//   touches workflow_runs by primary key only, no domain table).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { sql } from 'kysely';
import { loadConfig } from '../src/config.ts';
import { createKysely, createPool } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { countPending } from '../src/db/queries/claim-interactions.ts';
import { Engine, runApplicationName } from '../src/engine/engine.ts';
import { expectedWork, takeSnapshot } from '../src/engine/snapshot.ts';
import { createLogger } from '../src/log.ts';
import { resolveDefaults } from '../src/workflows/define.ts';
import postingsWorkflow, { POSTINGS_WORKFLOW_ID, POSTINGS_WORKFLOW_NAME } from '../src/workflows/postings/index.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import type { PostingsTables } from '../src/workflows/postings/schema.ts';
import {
  assert,
  freshDatabase,
  intFlag,
  measureProcess,
  measureServer,
  openServer,
  parseFlags,
  peakRssMb,
  printResult,
  REPO_ROOT,
  sampleRss,
  watchdog,
} from './lib.ts';
import { ENGINE_STATEMENTS, EXPLAINED_ENGINE_STATEMENTS, formatSlowest, formatStats, traceSql } from './sql-trace.ts';

const flags = parseFlags(process.argv.slice(2));
const subjects = intFlag(flags, 'subjects', 1_000_000);
const log = createLogger(process.env.LOG_LEVEL ?? 'warn');

// --- child mode: load the postings and exit ------------------------------------
const loadInto = flags.get('load-into');
if (typeof loadInto === 'string') {
  const db = createKysely<PostingsTables>(createPool({ connectionString: loadInto, applicationName: 'bench-load', max: 2 }));
  await migrateToLatest(db);
  const started = performance.now();
  const n = await replaceDemoPostings(db, subjects);
  await sql`VACUUM ANALYZE postings`.execute(db);
  await sql`CHECKPOINT`.execute(db);
  process.stderr.write(`   loaded ${n} postings in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  await db.destroy();
  process.exit(0);
}

const keep = flags.has('keep');
const explainAt = flags.has('explain') ? intFlag(flags, 'explain', 1) : undefined;
const stopAfterSeconds = intFlag(flags, 'stop-after', 900);
const HEARTBEAT_MS = 2_000; // WORKFLOW_HEARTBEAT_MS's default
watchdog(Number(process.env.BENCH_TIMEOUT_SECONDS ?? 1800));
const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_scale_${process.pid}`);
try {
  // --- setup (not timed): postings loaded by a child process ----------------------
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bench/scale.ts'), '--subjects', String(subjects), '--load-into', database.url], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`loading postings exited ${code}`))));
  });

  const db = createKysely<PostingsTables>(createPool({ connectionString: database.url, applicationName: 'bench-measure', max: 2 }));
  await db.insertInto('workflows').values({ id: POSTINGS_WORKFLOW_ID, name: POSTINGS_WORKFLOW_NAME, definition: '{}' }).execute();
  // 3001 as shipped; with no OLLAMA_URL its summary and skills are local.
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: database.url };
  delete env.OLLAMA_URL;
  const workflow = resolveDefaults(postingsWorkflow({ config: loadConfig(env), log }));

  // What the metrics were before the counters: one scan of postings.
  const scanMetrics = () =>
    sql<Record<string, string>>`
      SELECT count(*) AS postings_total, count(*) FILTER (WHERE summary IS NOT NULL) AS postings_with_summary,
             count(*) FILTER (WHERE skills IS NOT NULL) AS postings_with_skills, count(*) FILTER (WHERE ihl_score IS NOT NULL) AS postings_with_ihl
        FROM postings`.execute(db);
  const timed = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
    const t = performance.now();
    const value = await f();
    return [value, performance.now() - t];
  };

  /** The state snapshot's two parts as the engine takes them, and the scans they replace, each timed on its own (ms). */
  const timeSnapshot = async () => {
    const [metrics, metricsMs] = await timed(() => takeSnapshot(db, workflow));
    const expectedMs: Record<string, number> = {};
    const expected: Record<string, number> = {};
    const countMs: Record<string, number> = {};
    const counted: Record<string, number> = {};
    for (const step of workflow.steps) {
      // The engine's path, one step at a time.
      [expected[step.name], expectedMs[step.name]] = await timed(async () => (await expectedWork(db, { ...workflow, steps: [step] }, null))[step.name]!);
      [counted[step.name], countMs[step.name]] = await timed(() => countPending(db, step.pending(db), null));
    }
    const [scan, scanMs] = await timed(async () => Object.fromEntries(Object.entries((await scanMetrics()).rows[0]!).map(([k, v]) => [k, Number(v)])));
    assert(JSON.stringify(metrics) === JSON.stringify(scan), `metrics ${JSON.stringify(metrics)} differ from a scan of postings ${JSON.stringify(scan)}`);
    assert(
      JSON.stringify(expected) === JSON.stringify(counted),
      `expected work ${JSON.stringify(expected)} differs from counting pending ${JSON.stringify(counted)}`,
    );
    const sum = (ms: Record<string, number>) => Object.values(ms).reduce((a, b) => a + b, 0);
    return {
      metricsMs,
      expectedWorkMs: sum(expectedMs),
      expectedMsByStep: expectedMs,
      metrics,
      expected,
      reference: { scanMetricsMs: scanMs, countPendingMs: sum(countMs), countPendingMsByStep: countMs },
    };
  };
  const explainMetrics = async () => {
    const compiled = workflow.metrics(db).compile();
    const { rows } = await sql.raw<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${compiled.sql}`).execute(db);
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  };
  await timeSnapshot(); // warm the cache once, as a running server would be
  const before = await timeSnapshot();
  const metricsPlan = await explainMetrics();

  // --- timed: start request → done -------------------------------------------------
  const trace = traceSql(
    [
      ...ENGINE_STATEMENTS,
      { name: 'metrics snapshot', test: (s) => s.includes('"postings_total"') },
      { name: 'expected work (pendingCount)', test: (s) => s.includes('as "pending" from "postings_counters"') },
      { name: 'save (UPDATE postings)', test: (s) => s.includes('UPDATE postings AS p') },
    ],
    explainAt === undefined ? {} : { explain: { kinds: [...EXPLAINED_ENGINE_STATEMENTS, 'save (UPDATE postings)'], occurrence: explainAt } },
  );
  const engine = new Engine({ connectionString: database.url, workflows: [workflow], log, heartbeatMs: HEARTBEAT_MS, forceGraceMs: 2_000 });
  const rss = sampleRss(200);
  const serverUsage = await measureServer(database.url);
  const usage = measureProcess();
  const started = performance.now();
  const outcome = await engine.startRun({ workflow, mode: 'global_batch', force: false, requestedBy: 'bench', source: 'bench' });
  if (!outcome.started) throw new Error(`run refused: ${outcome.refusal.message}`);
  // A stop does not interrupt a statement in flight: if one still runs 30 s after the
  // stop, cancel the run's statements (the run then ends failed; reported as unfinished).
  let cancelled = false;
  const cancelTimer = { id: undefined as NodeJS.Timeout | undefined };
  const stopTimer = setTimeout(() => {
    process.stderr.write(`   scale: stopping the run after ${stopAfterSeconds} s (--stop-after)\n`);
    outcome.run.stop({ kind: 'stop', by: 'bench --stop-after' });
    cancelTimer.id = setTimeout(() => {
      cancelled = true;
      process.stderr.write('   scale: the run has not ended 30 s after the stop; cancelling its statements\n');
      void sql`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = ${runApplicationName(outcome.run.id)} AND state = 'active'`
        .execute(db)
        .catch(() => {});
    }, 30_000);
  }, stopAfterSeconds * 1000);
  const summary = await outcome.run.done;
  clearTimeout(stopTimer);
  clearTimeout(cancelTimer.id);
  const seconds = (performance.now() - started) / 1000;
  const sampledPeak = rss.stop();
  const used = usage.stop();
  const serverCpuSeconds = await serverUsage.stop();
  trace.restore();
  await engine.close();
  const statements = trace.stats();
  process.stderr.write(`\nstatement timings (client round trip, ms) over ${seconds.toFixed(1)} s:\n${formatStats(statements)}\n`);
  process.stderr.write(`\nslowest statements:\n${formatSlowest(trace.slowest())}\n`);
  for (const [kind, plan] of Object.entries(trace.explains())) {
    process.stderr.write(`\nEXPLAIN (ANALYZE, BUFFERS) of ${kind}, occurrence ${explainAt}:\n${plan}\n`);
  }

  // --- after: snapshot again, heartbeat plan, checks ------------------------------------
  const after = await timeSnapshot();
  const heartbeatPlan = (
    await sql<{ 'QUERY PLAN': string }>`
      EXPLAIN (ANALYZE, BUFFERS)
      UPDATE workflow_runs SET heartbeat_at = now(), progress = ${JSON.stringify(summary.progress)}
       WHERE id = ${summary.run.id} AND owner_token = ${summary.run.owner_token ?? ''}
       RETURNING stop_requested_by`.execute(db)
  ).rows
    .map((r) => r['QUERY PLAN'])
    .join('\n');
  // EXPLAIN ANALYZE ran the UPDATE; it matched the run's row or none, and wrote only heartbeat_at/progress of an ended run.
  const expectedInteractions = 3 * subjects;
  const done = Object.values(summary.progress).reduce((n, p) => n + p.done, 0);
  const finished = summary.outcome === 'completed';
  assert(finished || summary.outcome === 'stopped' || (cancelled && summary.outcome === 'failed'), `run outcome ${summary.outcome}`);
  const counts = (
    await sql<{ total: number; completed: number }>`
      SELECT count(*)::int AS total, count(*) FILTER (WHERE status = 'completed')::int AS completed FROM interactions WHERE run_id = ${summary.run.id}`.execute(
      db,
    )
  ).rows[0]!;
  assert(counts.completed === done, `progress says ${done} done, the run has ${counts.completed} completed interactions`);
  if (finished) {
    assert(done === expectedInteractions, `progress says ${done} done, expected ${expectedInteractions}`);
    assert(after.metrics.postings_with_ihl === subjects, `${after.metrics.postings_with_ihl} postings scored, expected ${subjects}`);
    assert(counts.total === expectedInteractions, `interactions ${JSON.stringify(counts)}, expected ${expectedInteractions}`);
    const claims = (await sql<{ n: number }>`SELECT count(*)::int AS n FROM interaction_claims`.execute(db)).rows[0]!.n;
    assert(claims === 0, `${claims} claims left after the run`);
  }
  const sizes = (
    await sql<{ postings_mb: number; interactions_mb: number }>`
      SELECT round(pg_total_relation_size('postings') / 1048576.0)::float8 AS postings_mb,
             round(pg_total_relation_size('interactions') / 1048576.0)::float8 AS interactions_mb`.execute(db)
  ).rows[0]!;
  const version = (await sql<{ v: string }>`SELECT current_setting('server_version') AS v`.execute(db)).rows[0]!.v;
  await db.destroy();

  const heartbeat = statements.heartbeat;
  const inRunSnapshot = statements['metrics snapshot'];
  const ms = (n: number) => n.toFixed(1);
  for (const [when, snap] of [
    ['before', before],
    ['after', after],
  ] as const) {
    process.stderr.write(
      `\nsnapshot ${when} the run: metrics ${ms(snap.metricsMs)} ms (a scan of postings: ${ms(snap.reference.scanMetricsMs)} ms), ` +
        `expected work ${ms(snap.expectedWorkMs)} ms (count(*) of pending: ${ms(snap.reference.countPendingMs)} ms); ${JSON.stringify(snap.expected)}\n`,
    );
  }
  process.stderr.write(`\nEXPLAIN (ANALYZE, BUFFERS) of the metrics query at ${subjects} postings (before the run):\n${metricsPlan}\n`);
  process.stderr.write(`\nEXPLAIN (ANALYZE, BUFFERS) of the heartbeat UPDATE:\n${heartbeatPlan}\n`);
  printResult({
    system: 'workflow-chatops engine',
    config: `workflow 3001 (local handlers), concurrency ${workflow.concurrency}, batch ${workflow.batchSize}`,
    items: done,
    seconds,
    itemsPerSecond: done / seconds,
    peakRssMb: peakRssMb(),
    sampledPeakRssMb: sampledPeak,
    cpuSeconds: used.cpuSeconds,
    serverCpuSeconds,
    details: {
      subjects,
      interactionsPerSecond: done / seconds,
      finished,
      outcome: summary.outcome,
      cancelledStatements: cancelled,
      expectedInteractions,
      progress: summary.progress,
      stopAfterSeconds,
      snapshot: {
        before: { metricsMs: before.metricsMs, expectedWorkMs: before.expectedWorkMs, byStep: before.expectedMsByStep, reference: before.reference },
        after: { metricsMs: after.metricsMs, expectedWorkMs: after.expectedWorkMs, byStep: after.expectedMsByStep, reference: after.reference },
        inRun: inRunSnapshot ? { count: inRunSnapshot.count, maxMs: inRunSnapshot.maxMs, meanMs: inRunSnapshot.meanMs } : null,
        maxMetricsMs: Math.max(before.metricsMs, after.metricsMs, inRunSnapshot?.maxMs ?? 0),
      },
      heartbeat: heartbeat
        ? { count: heartbeat.count, p50Ms: heartbeat.p50Ms, p95Ms: heartbeat.p95Ms, maxMs: heartbeat.maxMs, meanMs: heartbeat.meanMs }
        : null,
      heartbeatPlan,
      metricsPlan,
      statements,
      slowestStatements: trace.slowest(),
      tableMb: sizes,
      eventLoopDelayMs: used.eventLoopDelayMs,
      serverVersion: version,
    },
  });
} finally {
  if (keep) process.stderr.write(`kept database ${database.url}\n`);
  else await database.drop().catch((error: Error) => process.stderr.write(`could not drop the database: ${error.message}\n`));
  await server.release();
}
