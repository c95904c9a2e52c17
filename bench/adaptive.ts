// concurrency: 'auto' against a stand-in model server of capacity C
// (test/helpers/capacity-server.ts: C calls served at once, 200 ms each, the
// rest queued in order, 503 past a queue of 2C), through the shipped Ollama
// client (src/workflows/ollama.ts), for C = 2, 8 and 32, and with C dropping
// from 8 to 2 in the middle of a run. The engine starts knowing nothing of C.
//
//   node bench/adaptive.ts [--seconds 25] [--only 2,8,32,drop] [--max 64]
//
// Each scenario is one global_batch run on a table of its own, stopped when the
// scenario's time is up. Measured from the run's start request, per scenario:
// - throughput over [10 s, end): answers per second as a share of C / 0.2 s
//   (target ≥ 90%), and when a one-second bucket first reached 90%;
// - the median time calls that arrived in that window waited in the server's
//   queue (target ≤ 100 ms, half the service time);
// - 503s and timeouts in the window (target none);
// - the limit, sampled every second (the run's progress).
// The drop scenario runs --seconds at 8, then --seconds at 2, and checks the
// same bounds (for C = 2) from 10 s after the drop.
import { sql } from 'kysely';
import { createKysely, createPool } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { Engine } from '../src/engine/engine.ts';
import { createLogger } from '../src/log.ts';
import { defineStep, defineWorkflow, resolveDefaults } from '../src/workflows/define.ts';
import { createOllamaClient } from '../src/workflows/ollama.ts';
import { startCapacityServer } from '../test/helpers/capacity-server.ts';
import { assert, freshDatabase, intFlag, measureProcess, openServer, parseFlags, peakRssMb, printResult, sampleRss, watchdog } from './lib.ts';

const SERVICE_MS = 200;
const SETTLE_S = 10;

interface Scenario {
  name: string;
  phases: { capacity: number; seconds: number }[];
}

interface Figure {
  figure: string;
  value: string;
  target: string;
  met: boolean | '';
}

const flags = parseFlags(process.argv.slice(2));
const seconds = intFlag(flags, 'seconds', 25);
const max = intFlag(flags, 'max', 64);
const only = String(flags.get('only') ?? '2,8,32,drop').split(',');
const SCENARIOS: Scenario[] = [
  { name: '2', phases: [{ capacity: 2, seconds }] },
  { name: '8', phases: [{ capacity: 8, seconds }] },
  { name: '32', phases: [{ capacity: 32, seconds }] },
  {
    name: 'drop',
    phases: [
      { capacity: 8, seconds },
      { capacity: 2, seconds },
    ],
  },
].filter((s) => only.includes(s.name));

type Tables = Record<string, { id: number; answer: string | null }>;

watchdog();
const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_adaptive_${process.pid}`);
const log = createLogger(process.env.LOG_LEVEL ?? 'warn');
const figures: Figure[] = [];
const details: Record<string, unknown> = {};
let served = 0;
let totalSeconds = 0;
const rss = sampleRss();
const usage = measureProcess();
try {
  const db = createKysely<Tables>(createPool({ connectionString: database.url, applicationName: 'bench-setup', max: 2 }));
  await migrateToLatest(db);
  for (const [index, scenario] of SCENARIOS.entries()) {
    const result = await runScenario(db, scenario, 9100 + index);
    figures.push(...result.figures);
    details[`C=${scenario.name}`] = result.details;
    served += result.served;
    totalSeconds += result.seconds;
  }
  await db.destroy();
} finally {
  await database.drop().catch((error: Error) => process.stderr.write(`could not drop the database: ${error.message}\n`));
  await server.release();
}
const sampledPeak = rss.stop();
const used = usage.stop();
printResult({
  system: 'workflow-chatops engine',
  config: `concurrency 'auto' (max ${max}) against a server of capacity C, ${SERVICE_MS} ms a call`,
  items: served,
  seconds: totalSeconds,
  itemsPerSecond: served / totalSeconds,
  peakRssMb: peakRssMb(),
  sampledPeakRssMb: sampledPeak,
  cpuSeconds: used.cpuSeconds,
  details: { ...details, figures },
});

async function runScenario(db: ReturnType<typeof createKysely<Tables>>, scenario: Scenario, workflowId: number) {
  const table = `subjects_${workflowId}`;
  const duration = scenario.phases.reduce((s, p) => s + p.seconds, 0);
  const peak = Math.max(...scenario.phases.map((p) => p.capacity));
  const subjects = Math.ceil((peak / (SERVICE_MS / 1000)) * duration * 1.5) + 1000;
  await sql`CREATE TABLE ${sql.table(table)} (id bigint PRIMARY KEY, answer text)`.execute(db);
  await sql`CREATE INDEX ${sql.id(`${table}_pending`)} ON ${sql.table(table)} (id) WHERE answer IS NULL`.execute(db);
  await sql`INSERT INTO ${sql.table(table)} (id) SELECT g FROM generate_series(1, ${subjects}::int) g`.execute(db);
  await sql`VACUUM ANALYZE ${sql.table(table)}`.execute(db);
  await db
    .insertInto('workflows')
    .values({ id: workflowId, name: `bench-adaptive-${workflowId}`, definition: '{}' })
    .execute();

  const standIn = await startCapacityServer({ capacity: scenario.phases[0]!.capacity, serviceMs: SERVICE_MS });
  const client = createOllamaClient({ url: standIn.url, model: 'stand-in', timeoutMs: 10_000 });
  const timeouts: number[] = [];
  const workflow = resolveDefaults(
    defineWorkflow<Tables>({
      id: workflowId,
      name: `bench-adaptive-${workflowId}`,
      subject: 'subject',
      concurrency: 'auto',
      maxConcurrency: max,
      batchSize: 500,
      timeoutMs: 15_000,
      retries: 10,
      retryBackoffMs: 200,
      metrics: (d) => d.selectFrom(table).select([sql<number>`count(*)`.as('total')]),
      steps: [
        defineStep<Tables, object, string>({
          name: 'ask',
          pending: (d) => d.selectFrom(table).select('id as subject_id').where('answer', 'is', null),
          handle: async (_input, ctx) => {
            try {
              return await client.generate(`subject ${ctx.subjectId}`, ctx.signal);
            } catch (error) {
              if (/gave no answer/.test(String(error))) timeouts.push(performance.now());
              throw error;
            }
          },
          save: async (tx, items) => {
            await sql`UPDATE ${sql.table(table)} AS s SET answer = v.answer
                        FROM unnest(${items.map((i) => i.subjectId)}::bigint[], ${items.map((i) => i.output)}::text[]) AS v (id, answer)
                       WHERE s.id = v.id`.execute(tx);
          },
        }),
      ],
    }),
  );
  const engine = new Engine({ connectionString: database.url, workflows: [workflow], log, heartbeatMs: 2_000, forceGraceMs: 2_000 });
  const started = performance.now();
  const outcome = await engine.startRun({ workflow, mode: 'global_batch', force: false, requestedBy: 'bench', source: 'bench' });
  if (!outcome.started) throw new Error(`run refused: ${outcome.refusal.message}`);
  const limits: number[] = [];
  const sampler = setInterval(() => limits.push(outcome.run.progress().ask?.limit ?? 0), 1_000);
  let at = 0;
  const boundaries: number[] = [];
  for (const phase of scenario.phases) {
    standIn.setCapacity(phase.capacity);
    boundaries.push(at);
    at += phase.seconds;
    await new Promise((resolve) => setTimeout(resolve, started + at * 1000 - performance.now()));
  }
  clearInterval(sampler);
  await engine.requestStop(outcome.run.id, 'bench');
  const summary = await outcome.run.done;
  await engine.close();
  await standIn.close();
  assert(summary.outcome === 'stopped', `run ${summary.outcome}, expected stopped by the bench`);

  const rel = (t: number) => (t - started) / 1000;
  const result = {
    figures: [] as Figure[],
    details: { limitsPerSecond: limits, phases: scenario.phases } as Record<string, unknown>,
    served: 0,
    seconds: duration,
  };
  for (const [i, phase] of scenario.phases.entries()) {
    const from = boundaries[i]! + SETTLE_S;
    const to = boundaries[i]! + phase.seconds;
    const ideal = phase.capacity / (SERVICE_MS / 1000);
    const answered = standIn.served.filter((s) => rel(s.arrivedAt + s.queuedMs + SERVICE_MS) >= from && rel(s.arrivedAt + s.queuedMs + SERVICE_MS) < to);
    const share = answered.length / (to - from) / ideal;
    const waits = standIn.served.filter((s) => rel(s.arrivedAt) >= from && rel(s.arrivedAt) < to).map((s) => s.queuedMs);
    const medianWait = median(waits);
    const rejected = standIn.rejected.filter((t) => rel(t) >= from && rel(t) < to).length;
    const timedOut = timeouts.filter((t) => rel(t) >= from && rel(t) < to).length;
    // The first whole second (from the phase's start) at 90% or more.
    let reached: number | null = null;
    for (let s = boundaries[i]!; s < to; s++) {
      const inSecond = standIn.served.filter((c) => {
        const end = rel(c.arrivedAt + c.queuedMs + SERVICE_MS);
        return end >= s && end < s + 1;
      }).length;
      if (inSecond >= 0.9 * ideal) {
        reached = s - boundaries[i]! + 1;
        break;
      }
    }
    const label = scenario.phases.length === 1 ? `C = ${phase.capacity}` : i === 0 ? `C = 8 before the drop` : `C = 8 → 2, after the drop`;
    const limitsInWindow = limits.slice(from, to);
    const met = share >= 0.9 && medianWait <= SERVICE_MS / 2 && rejected === 0 && timedOut === 0;
    result.figures.push({
      figure: `adaptive concurrency, ${label}: throughput over ${from}-${to} s (share of ${ideal}/s), median queued at the server`,
      value: `${(share * 100).toFixed(0)}% (90% first reached ${reached === null ? 'never' : `${reached} s after ${i === 0 ? 'the start' : 'the drop'}`}); median queued ${medianWait.toFixed(0)} ms; 503s ${rejected}, timeouts ${timedOut}; limit ${Math.min(...limitsInWindow)}-${Math.max(...limitsInWindow)}`,
      target: '≥ 90%, ≤ 100 ms, no 503, no timeout',
      met,
    });
    result.details[`phase${i}`] = { from, to, share, medianWaitMs: medianWait, rejected, timedOut, reachedNinetyAfterSeconds: reached };
  }
  result.details.rejectedTotal = standIn.rejected.length;
  result.details.timeoutsTotal = timeouts.length;
  result.details.firstRejectedAtS = standIn.rejected.map(rel);
  result.served = standIn.served.length;
  process.stderr.write(`C=${scenario.name}: limits per second ${limits.join(' ')}\n`);
  return result;
}

function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
