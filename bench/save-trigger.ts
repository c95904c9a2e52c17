// What the postings counters' triggers (migrations/0008_postings_counters.ts)
// cost on the save path: workflow 3001's own saves (500-row UPDATEs from
// src/workflows/postings/{summary,skills,ihl}.ts), each in its own committed
// transaction as the completer commits them, with the triggers on and off in
// alternate batches over N demo postings.
//
//   node bench/save-trigger.ts [--subjects 1000000] [--batches 100]
//
// - Off is a twin table without triggers: `plain.postings`, created LIKE
//   postings INCLUDING ALL (same columns, partial indexes and rows), which
//   the saves' unqualified `postings` resolves to under `SET LOCAL
//   search_path = plain`. (Turning the triggers off per transaction would
//   distort what it measures: session_replication_role discards every
//   cached plan, the trigger function's included, and ALTER TABLE … DISABLE
//   TRIGGER invalidates postings' plans.) On sets search_path too, to
//   public, so both kinds of transaction make the same round trips.
// - Batch k covers ids 500k+1 … 500(k+1) and is on when k is even: both
//   tables get the same kind of updates, interleaved, so drift
//   (checkpoints, other load) falls on both alike. Each step gets
//   --batches batches per condition; the outputs come from the local handlers
//   (not timed).
// - Timed: the save statement (client round trip: the UPDATE, the capture
//   of its transition tables and its AFTER STATEMENT trigger, which runs
//   before the statement returns) and the whole transaction (BEGIN …
//   COMMIT). Also the trigger function's own time inside the server
//   (pg_stat_user_functions with track_functions = 'pl', superuser only).
import { sql, type Kysely } from 'kysely';
import { createKysely, createPool } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { resolveDefaults, type AnyStep } from '../src/workflows/define.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import postingsWorkflow from '../src/workflows/postings/index.ts';
import { extractSkills, scoreIhl, summarize } from '../src/workflows/postings/local.ts';
import type { PostingsTables } from '../src/workflows/postings/schema.ts';
import { assert, freshDatabase, intFlag, openServer, parseFlags, printResult, serverFacts, watchdog } from './lib.ts';

const flags = parseFlags(process.argv.slice(2));
const subjects = intFlag(flags, 'subjects', 1_000_000);
const batches = intFlag(flags, 'batches', 100);
const BATCH = 500; // 3001's batchSize
assert(2 * batches * BATCH <= subjects, `--batches ${batches} needs ${2 * batches * BATCH} postings, have ${subjects}`);
watchdog(Number(process.env.BENCH_TIMEOUT_SECONDS ?? 1200));

const log = createLogger(process.env.LOG_LEVEL ?? 'warn');
const env: NodeJS.ProcessEnv = { ...process.env };
delete env.OLLAMA_URL;
const workflow = resolveDefaults(postingsWorkflow({ config: loadConfig(env), log }));

const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_savetrigger_${process.pid}`);
// One connection: one backend, whose trigger function plans are cached after the first call, as a completer's are.
// Typed as the steps' own database, so that its transactions are what their saves take.
const db: Kysely<PostingsTables> = createKysely<PostingsTables>(createPool({ connectionString: database.url, applicationName: 'bench-save-trigger', max: 1 }));
try {
  await migrateToLatest(db);
  const loadStarted = performance.now();
  await replaceDemoPostings(db, subjects);
  await sql`CREATE SCHEMA plain`.execute(db);
  await sql`CREATE TABLE plain.postings (LIKE public.postings INCLUDING ALL)`.execute(db);
  await sql`INSERT INTO plain.postings OVERRIDING SYSTEM VALUE SELECT * FROM public.postings`.execute(db);
  await sql`VACUUM ANALYZE postings`.execute(db);
  await sql`VACUUM ANALYZE plain.postings`.execute(db);
  await sql`CHECKPOINT`.execute(db);
  process.stderr.write(`   loaded ${subjects} postings twice in ${((performance.now() - loadStarted) / 1000).toFixed(1)} s\n`);
  // Superuser only; without it there is no server-side figure, the rest stands.
  const tracked = await sql`SET track_functions = 'pl'`.execute(db).then(
    () => true,
    () => false,
  );

  type Sample = { statementMs: number; transactionMs: number };
  const samples: Record<string, { on: Sample[]; off: Sample[] }> = {};

  const outputs = async (step: AnyStep<PostingsTables>, ids: number[], table: string) => {
    const { rows } = await sql<{ id: number; description: string; summary: string | null; skills: string[] | null }>`
      SELECT id, description, summary, skills FROM ${sql.table(table)} WHERE id = ANY(${ids}::bigint[]) ORDER BY id`.execute(db);
    return rows.map((row) => ({
      subjectId: Number(row.id),
      interactionId: 0,
      output:
        step.name === 'summary'
          ? { summary: summarize(row.description) }
          : step.name === 'skills'
            ? { skills: extractSkills(row.summary ?? '') }
            : { ihl_score: scoreIhl(row.skills ?? [], row.summary ?? '') },
    }));
  };

  for (const step of workflow.steps) {
    samples[step.name] = { on: [], off: [] };
    for (let k = 0; k < 2 * batches; k++) {
      const ids = Array.from({ length: BATCH }, (_, i) => k * BATCH + i + 1);
      const on = k % 2 === 0;
      const items = await outputs(step, ids, on ? 'public.postings' : 'plain.postings');
      const t0 = performance.now();
      let statementMs = 0;
      await db.transaction().execute(async (tx) => {
        await sql`SELECT set_config('search_path', ${on ? 'public' : 'plain'}, true)`.execute(tx);
        const s0 = performance.now();
        await step.save(tx, items);
        statementMs = performance.now() - s0;
      });
      samples[step.name]![on ? 'on' : 'off'].push({ statementMs, transactionMs: performance.now() - t0 });
    }
  }

  // The function's time as the server counted it: stats reach the shared view when the backend next reports.
  await sql`SELECT pg_stat_force_next_flush()`.execute(db);
  await sql`SELECT 1`.execute(db);
  await sql`SELECT pg_stat_clear_snapshot()`.execute(db);
  const fn = !tracked
    ? undefined
    : (
        await sql<{ calls: number; total_ms: number }>`
      SELECT calls::int, total_time AS total_ms FROM pg_stat_user_functions WHERE funcname = 'postings_counters_changed'`.execute(db)
      ).rows[0];

  // The conditions were what they claim: each table got its half, and the counters saw theirs.
  const seen = (
    await sql<{ counted: number; on: number; off: number }>`
      SELECT (SELECT sum(with_ihl)::int FROM postings_counters) AS counted, (SELECT count(ihl_score)::int FROM public.postings) AS on,
             (SELECT count(ihl_score)::int FROM plain.postings) AS off`.execute(db)
  ).rows[0]!;
  const half = batches * BATCH;
  assert(seen.counted === half && seen.on === half && seen.off === half, `scored: ${JSON.stringify(seen)}, expected ${half} each`);
  const version = (await sql<{ v: string }>`SELECT current_setting('server_version') AS v`.execute(db)).rows[0]!.v;

  const stats = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
    return { mean: values.reduce((a, b) => a + b, 0) / values.length, p50: at(0.5), p95: at(0.95) };
  };
  const byStep: Record<string, unknown> = {};
  const lines = ['step     timed        triggers  mean ms  p50 ms  p95 ms'];
  for (const [name, { on, off }] of Object.entries(samples)) {
    const row: Record<string, unknown> = {};
    for (const part of ['statementMs', 'transactionMs'] as const) {
      const a = stats(on.map((s) => s[part]));
      const b = stats(off.map((s) => s[part]));
      row[part] = { on: a, off: b, p50DeltaMs: a.p50 - b.p50, meanDeltaMs: a.mean - b.mean };
      lines.push(
        `${name.padEnd(8)} ${part === 'statementMs' ? 'save UPDATE' : 'transaction'}  on        ${a.mean.toFixed(2).padStart(7)} ${a.p50.toFixed(2).padStart(7)} ${a.p95.toFixed(2).padStart(7)}`,
      );
      lines.push(
        `${name.padEnd(8)} ${part === 'statementMs' ? 'save UPDATE' : 'transaction'}  off       ${b.mean.toFixed(2).padStart(7)} ${b.p50.toFixed(2).padStart(7)} ${b.p95.toFixed(2).padStart(7)}`,
      );
    }
    byStep[name] = row;
  }
  const triggerMsPerCall = fn && fn.calls > 0 ? fn.total_ms / fn.calls : null;
  process.stderr.write(
    `\n${lines.join('\n')}\n\ntrigger function (server side): ${fn ? `${fn.calls} calls, ${triggerMsPerCall!.toFixed(3)} ms per call` : 'no statistics'}\n`,
  );
  printResult({
    system: 'workflow-chatops postings counters',
    config: `3001's saves, ${BATCH} rows per UPDATE, ${batches} batches per step and condition, ${subjects} postings`,
    items: workflow.steps.length * 2 * batches * BATCH,
    seconds: 0,
    itemsPerSecond: 0,
    peakRssMb: 0,
    sampledPeakRssMb: 0,
    cpuSeconds: 0,
    details: {
      subjects,
      batches,
      byStep,
      triggerFunction: fn ? { calls: fn.calls, msPerCall: triggerMsPerCall } : null,
      serverVersion: version,
      server: await serverFacts(database.url),
    },
  });
} finally {
  await db.destroy();
  await database.drop().catch((error: Error) => process.stderr.write(`could not drop the database: ${error.message}\n`));
  await server.release();
}
