// I/O-bound work: one step whose handler asks an Ollama stand-in over HTTP
// (bench/io-server.ts in a child process, answering after 200 ms),
// concurrency 500, 20,000 subjects. By default the handler is what workflow
// 3001 does with OLLAMA_URL set: src/workflows/ollama.ts's client (undici's
// request() on a keep-alive Agent of its own, the caller's signal passed
// through, the Agent's headers/body timeouts), JSON in and out.
//
//   node bench/io-bound.ts [--subjects 20000] [--concurrency 500] [--delay-ms 200]
//       [--client undici|fetch|http] [--server raw|http|stub] [--no-engine]
//
// --client undici (default) is the shipped client, capped at `concurrency`
// connections (see `connections` in ollama.ts). The others make the same
// request, parse the same answer and honour the same signals, for comparison:
//   fetch: global fetch (undici's default agent) with AbortSignal.any([item
//     signal, AbortSignal.timeout]): the example's earlier client. On Node 20
//     it costs several times request()'s CPU per call (web streams, Request and
//     Response objects, two signals per call), and at 2,500 calls/s that CPU
//     was the bound, not the engine.
//   http: node:http with a keep-alive Agent and AbortSignal.any, the built-in
//     alternative.
//
// --no-engine makes the same calls with the same client from `concurrency`
// plain async loops, without the engine or the database: the ceiling this
// process reaches with that HTTP client alone.
//
// --server picks the stand-in (bench/io-server.ts). It shares the CPUs with
// this process, so by default it is `raw`, a minimal HTTP/1.1 responder over
// node:net that keeps nothing per request (~40-55 µs of CPU a request here,
// half of node:http's); `http` is the same over node:http, `stub` the tests'
// recording stub (test/helpers/ollama-stub.ts). Its CPU time and the
// connections it accepted during the timed part are reported.
//
// Ideal: concurrency / delay = 2,500 items/s. Reported: items/s as a share of
// the ideal (over the whole run, start request → done, and over the steady
// middle: from the 10th to the 90th percentile of completions), and the
// event-loop delay of this process (monitorEventLoopDelay) during the run.
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { sql } from 'kysely';
import { createKysely, createPool } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { Engine } from '../src/engine/engine.ts';
import { createLogger } from '../src/log.ts';
import { defineStep, defineWorkflow, resolveDefaults } from '../src/workflows/define.ts';
import { createOllamaClient } from '../src/workflows/ollama.ts';
import { assert, freshDatabase, intFlag, measureProcess, openServer, parseFlags, peakRssMb, printResult, REPO_ROOT, sampleRss, watchdog } from './lib.ts';

const WORKFLOW_ID = 9003;

interface BenchTables {
  subjects: { id: number; done: boolean; answer: string | null };
}

const flags = parseFlags(process.argv.slice(2));
const subjects = intFlag(flags, 'subjects', 20_000);
const concurrency = intFlag(flags, 'concurrency', 500);
const delayMs = intFlag(flags, 'delay-ms', 200);
const ideal = (concurrency * 1000) / delayMs;
const client = String(flags.get('client') ?? 'undici');
if (client !== 'undici' && client !== 'fetch' && client !== 'http') throw new Error('--client must be undici, fetch or http');
const serverKind = String(flags.get('server') ?? 'raw');
const CLIENT_NAMES: Record<string, string> = {
  undici: 'src/workflows/ollama.ts (undici request(), own Agent)',
  fetch: 'global fetch + AbortSignal.any',
  http: 'node:http keep-alive Agent',
};

if (flags.has('no-engine')) {
  await ceiling();
  process.exit(0);
}

watchdog();
const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_io_${process.pid}`);
const log = createLogger(process.env.LOG_LEVEL ?? 'warn');
const standIn = startStandIn();
try {
  const stubUrl = await standIn.url;

  // --- setup (not timed) ---------------------------------------------------
  const db = createKysely<BenchTables>(createPool({ connectionString: database.url, applicationName: 'bench-setup', max: 2 }));
  await migrateToLatest(db);
  await sql`CREATE TABLE subjects (id bigint PRIMARY KEY, done boolean NOT NULL DEFAULT false, answer text)`.execute(db);
  await sql`CREATE INDEX subjects_pending ON subjects (id) WHERE NOT done`.execute(db);
  await sql`INSERT INTO subjects (id) SELECT g FROM generate_series(1, ${subjects}::int) g`.execute(db);
  await sql`VACUUM ANALYZE subjects`.execute(db);
  await db.insertInto('workflows').values({ id: WORKFLOW_ID, name: 'bench-io', definition: '{}' }).execute();

  const ollama = makeClient(stubUrl);
  const completions: number[] = [];
  const workflow = resolveDefaults(
    defineWorkflow<BenchTables>({
      id: WORKFLOW_ID,
      name: 'bench-io',
      subject: 'subject',
      concurrency,
      batchSize: 500,
      timeoutMs: 35_000,
      retries: 0,
      metrics: (d) => d.selectFrom('subjects').select([sql<number>`count(*)`.as('total'), sql<number>`count(*) FILTER (WHERE done)`.as('done')]),
      steps: [
        defineStep<BenchTables, object, { answer: string }>({
          name: 'ask',
          pending: (d) => d.selectFrom('subjects').select('id as subject_id').where('done', '=', false),
          handle: async (_input, ctx) => {
            const answer = await ollama.generate(`Summarise posting ${ctx.subjectId}`, ctx.signal);
            completions.push(performance.now());
            return { answer };
          },
          save: async (tx, items) => {
            await sql`
              UPDATE subjects AS s SET done = true, answer = v.answer
                FROM unnest(${items.map((i) => i.subjectId)}::bigint[], ${items.map((i) => i.output.answer)}::text[]) AS v (id, answer)
               WHERE s.id = v.id`.execute(tx);
          },
        }),
      ],
    }),
  );
  const engine = new Engine({ connectionString: database.url, workflows: [workflow], log, heartbeatMs: 2_000, forceGraceMs: 2_000 });

  // --- timed: start request → done ---------------------------------------------
  await standIn.stats(); // from here on
  const rss = sampleRss();
  const usage = measureProcess();
  const started = performance.now();
  const outcome = await engine.startRun({ workflow, mode: 'global_batch', force: false, requestedBy: 'bench', source: 'bench' });
  if (!outcome.started) throw new Error(`run refused: ${outcome.refusal.message}`);
  const summary = await outcome.run.done;
  const finished = performance.now();
  const seconds = (finished - started) / 1000;
  const sampledPeak = rss.stop();
  const used = usage.stop();
  const served = await standIn.stats();
  await engine.close();

  // --- checks ------------------------------------------------------------------
  if (summary.outcome !== 'completed') {
    const errors = await sql<{ error: string | null; n: number }>`
      SELECT error, count(*)::int AS n FROM interactions WHERE run_id = ${outcome.run.id} AND status <> 'completed' GROUP BY error ORDER BY n DESC LIMIT 5`.execute(
      db,
    );
    assert(
      false,
      `run outcome ${summary.outcome} (${JSON.stringify(summary.run.error ?? null)}), progress ${JSON.stringify(summary.progress)}; unfinished interactions: ${JSON.stringify(errors.rows)}`,
    );
  }
  assert(summary.progress.ask?.done === subjects, `progress ${JSON.stringify(summary.progress)}, expected ${subjects} done`);
  const left = (await sql<{ n: number }>`SELECT count(*)::int AS n FROM subjects WHERE NOT done OR answer IS NULL`.execute(db)).rows[0]!.n;
  assert(left === 0, `${left} subjects without an answer`);
  const version = (await sql<{ v: string }>`SELECT current_setting('server_version') AS v`.execute(db)).rows[0]!.v;
  await db.destroy();

  const itemsPerSecond = subjects / seconds;
  const lo = completions[Math.floor(completions.length * 0.1)]!;
  const hi = completions[Math.floor(completions.length * 0.9)]!;
  const steadyPerSecond = (Math.floor(completions.length * 0.9) - Math.floor(completions.length * 0.1)) / ((hi - lo) / 1000);
  printResult({
    system: 'workflow-chatops engine',
    config: `HTTP stand-in answering after ${delayMs} ms (child process, ${serverKind} server), ${CLIENT_NAMES[client]}, concurrency ${concurrency}, batch 500`,
    items: subjects,
    seconds,
    itemsPerSecond,
    peakRssMb: peakRssMb(),
    sampledPeakRssMb: sampledPeak,
    cpuSeconds: used.cpuSeconds,
    details: {
      client,
      idealPerSecond: ideal,
      shareOfIdeal: itemsPerSecond / ideal,
      steadyPerSecond,
      steadyShareOfIdeal: steadyPerSecond / ideal,
      eventLoopDelayMs: used.eventLoopDelayMs,
      // The run's fixed costs at either end (lock, snapshot, expected work and the first
      // claims; the last completions, snapshot and audit), which the steady share leaves out.
      firstAnswerAfterMs: completions[0]! - started,
      doneAfterLastAnswerMs: finished - completions.at(-1)!,
      standIn: served,
      serverVersion: version,
    },
  });
} finally {
  standIn.stop();
  await database.drop().catch((error: Error) => process.stderr.write(`could not drop the database: ${error.message}\n`));
  await server.release();
}

interface Generator {
  generate(prompt: string, signal: AbortSignal): Promise<string>;
}

/** The example's earlier client: global fetch, the item's signal combined with a timeout per call. */
function fetchClient(base: string, timeoutMs: number): Generator {
  const url = new URL('/api/generate', base).href;
  return {
    async generate(prompt, signal) {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'llama3.2', prompt, stream: false }),
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`answered ${response.status}`);
      return (JSON.parse(text) as { response: string }).response;
    },
  };
}

/** The Ollama call over node:http with a keep-alive agent: same body, same answer parsing, same signals. */
function httpClient(base: string, timeoutMs: number): Generator {
  const url = new URL('/api/generate', base);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  return {
    generate: (prompt, signal) =>
      new Promise<string>((resolve, reject) => {
        const body = JSON.stringify({ model: 'llama3.2', prompt, stream: false });
        const request = http.request(
          url,
          {
            method: 'POST',
            agent,
            signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          },
          (response) => {
            let text = '';
            response.setEncoding('utf8');
            response.on('data', (chunk: string) => (text += chunk));
            response.on('end', () => {
              try {
                if (response.statusCode !== 200) throw new Error(`answered ${response.statusCode}`);
                resolve((JSON.parse(text) as { response: string }).response);
              } catch (error) {
                reject(error as Error);
              }
            });
            response.on('error', reject);
          },
        );
        request.on('error', reject);
        request.end(body);
      }),
  };
}

function makeClient(stubUrl: string): Generator {
  if (client === 'fetch') return fetchClient(stubUrl, 30_000);
  if (client === 'http') return httpClient(stubUrl, 30_000);
  // As many connections as calls in flight: uncapped, undici opens about twice as many (see ollama.ts).
  return createOllamaClient({ url: stubUrl, model: 'llama3.2', timeoutMs: 30_000, connections: concurrency });
}

interface StandInStats {
  requests: number;
  connections: number;
  cpuSeconds: number;
}

function startStandIn(): { url: Promise<string>; stats(): Promise<StandInStats>; stop(): void } {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bench/io-server.ts'), '--delay-ms', String(delayMs), '--server', serverKind], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const waiting: ((stats: StandInStats) => void)[] = [];
  const url = new Promise<string>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => reject(new Error(`stand-in server exited ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('LISTENING ')) resolve(line.slice('LISTENING '.length));
      else if (line.startsWith('STATS ')) waiting.shift()?.(JSON.parse(line.slice('STATS '.length)) as StandInStats);
    });
  });
  return {
    url,
    stats: () =>
      new Promise<StandInStats>((resolve) => {
        waiting.push(resolve);
        child.stdin!.write('stats\n');
      }),
    stop() {
      child.stdin?.end();
      child.kill('SIGTERM');
    },
  };
}

/** The same calls from plain async loops: no engine, no database. */
async function ceiling(): Promise<void> {
  const standIn = startStandIn();
  try {
    const ollama = makeClient(await standIn.url);
    const signal = new AbortController().signal;
    let next = 0;
    let firstAnswer = 0;
    await standIn.stats();
    const rss = sampleRss();
    const usage = measureProcess();
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < subjects) {
          next++;
          await ollama.generate(`Summarise posting ${next}`, signal);
          firstAnswer ||= performance.now();
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const sampledPeak = rss.stop();
    const used = usage.stop();
    const served = await standIn.stats();
    const itemsPerSecond = subjects / seconds;
    printResult({
      system: `${CLIENT_NAMES[client]} alone (no engine, no database)`,
      config: `HTTP stand-in answering after ${delayMs} ms (child process, ${serverKind} server), ${concurrency} loops`,
      items: subjects,
      seconds,
      itemsPerSecond,
      peakRssMb: peakRssMb(),
      sampledPeakRssMb: sampledPeak,
      cpuSeconds: used.cpuSeconds,
      details: {
        client,
        idealPerSecond: ideal,
        shareOfIdeal: itemsPerSecond / ideal,
        steadyShareOfIdeal: itemsPerSecond / ideal,
        eventLoopDelayMs: used.eventLoopDelayMs,
        firstAnswerAfterMs: firstAnswer - started,
        standIn: served,
      },
    });
  } finally {
    standIn.stop();
  }
}
