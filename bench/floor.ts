// The engine's own limit on no-op work: plain SQL doing only what the engine
// must do per batch, and nothing else. The same `subjects` table and the
// engine's own `interactions` table (migrated, with its indexes and foreign
// keys) as bench/noop-engine.ts; then, per batch of 500 subjects, one
// transaction that inserts 500 finished interaction rows and marks the 500
// subjects done, from several connections at once, each taking the next batch
// of ids as soon as its last commits. No claims, no fence, no reading of
// pending rows, no handler, no JSON: what is left when everything the engine
// adds around those two writes is gone.
//
//   node bench/floor.ts [--subjects 100000] [--batch 500] [--connections 4] [--form tx|statement]
//
// --form tx (default): BEGIN, the INSERT, the UPDATE, COMMIT: four round trips,
//   as the engine must do it, since the domain write is the workflow's own
//   `save`, a statement of its own in the transaction of the interaction rows.
// --form statement: both writes in one statement (a CTE), one round trip: the
//   floor of any design, one that could not run a workflow's own save.
// --form engine-sql: the engine's own statements per page, called as the
//   runner calls them (src/db/queries: the claim, the page read, the fenced
//   completion with the page's claim released, the save's UPDATE, in one
//   transaction), each connection walking its own slice of the subjects,
//   with no runner around them: no handler calls, no item pool, no
//   completer. What the engine's SQL costs by itself; the gap between it and
//   the engine is the runner's, the gap between it and `tx` the statements'.
//
// The engine's no-op figure divided by this one is its share of its own limit.
import pg from 'pg';
import { sql } from 'kysely';
import { createKysely, createPool } from '../src/db/connect.ts';
import { claimPage, readClaimedPage } from '../src/db/queries/claim-interactions.ts';
import { recordResults, type FinishedItem } from '../src/db/queries/complete-interactions.ts';
import type { WorkFence } from '../src/db/queries/fence.ts';
import type { EngineTables } from '../src/db/schema.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { assert, freshDatabase, intFlag, measureProcess, measureServer, openServer, parseFlags, peakRssMb, printResult, sampleRss, watchdog } from './lib.ts';

const WORKFLOW_ID = 9001;

const flags = parseFlags(process.argv.slice(2));
const subjects = intFlag(flags, 'subjects', 100_000);
const batchSize = intFlag(flags, 'batch', 500);
const connections = intFlag(flags, 'connections', 4);
const form = String(flags.get('form') ?? 'tx');
if (form !== 'tx' && form !== 'statement' && form !== 'engine-sql') throw new Error('--form must be tx, statement or engine-sql');

interface BenchTables {
  subjects: { id: number; done: boolean };
}

watchdog();
const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_floor_${process.pid}`);
try {
  // --- setup (not timed): as bench/noop-engine.ts ------------------------------
  const db = createKysely<BenchTables>(createPool({ connectionString: database.url, applicationName: 'bench-setup', max: 2 }));
  await migrateToLatest(db);
  await sql`CREATE TABLE subjects (id bigint PRIMARY KEY, done boolean NOT NULL DEFAULT false)`.execute(db);
  await sql`CREATE INDEX subjects_pending ON subjects (id) WHERE NOT done`.execute(db);
  await sql`INSERT INTO subjects (id) SELECT g FROM generate_series(1, ${subjects}::int) g`.execute(db);
  await sql`VACUUM ANALYZE subjects`.execute(db);
  await sql`CHECKPOINT`.execute(db);
  await sql`INSERT INTO workflows (id, name, definition) VALUES (${WORKFLOW_ID}, 'bench-floor', '{}')`.execute(db);
  // engine-sql writes behind the fence of a running run, as the engine does.
  const ownerToken = crypto.randomUUID();
  const run = await sql<{ id: number }>`
    INSERT INTO workflow_runs (workflow_id, mode, lock_key, status, requested_by, source, action, started_at, owner_token)
    VALUES (${WORKFLOW_ID}, 'global_batch', ${WORKFLOW_ID}, ${form === 'engine-sql' ? 'running' : 'completed'}, 'bench', 'bench', 'run', now(), ${ownerToken})
    RETURNING id`.execute(db);
  const runId = run.rows[0]!.id;
  const fence: WorkFence = { runId, ownerToken };

  const pool = new pg.Pool({ connectionString: database.url, application_name: 'bench-floor', max: connections });
  // Warm the connections, so that connecting is not timed.
  await Promise.all(Array.from({ length: connections }, () => pool.query('SELECT 1')));
  const insert = `
    INSERT INTO interactions (run_id, workflow_id, step, subject_id, status, attempts, input, output, claimed_at, finished_at)
    SELECT $1, $2, 'noop', s, 'completed', 1, '{}'::jsonb, 'null'::jsonb, now(), now() FROM unnest($3::bigint[]) AS s`;
  const update = 'UPDATE subjects SET done = true WHERE id = ANY($1::bigint[])';
  const statement = `
    WITH written AS (
      INSERT INTO interactions (run_id, workflow_id, step, subject_id, status, attempts, input, output, claimed_at, finished_at)
      SELECT $1, $2, 'noop', s, 'completed', 1, '{}'::jsonb, 'null'::jsonb, now(), now() FROM unnest($3::bigint[]) AS s
      RETURNING 1
    )
    UPDATE subjects SET done = true WHERE id = ANY($3::bigint[])`;

  // --- timed: every batch committed ----------------------------------------------
  let next = 1;
  const take = (): number[] | undefined => {
    if (next > subjects) return undefined;
    const ids: number[] = [];
    for (let id = next; id < Math.min(next + batchSize, subjects + 1); id++) ids.push(id);
    next += batchSize;
    return ids;
  };
  // engine-sql: one connection per slice, as the engine's pool hands one to
  // each statement in turn (its clients prepare the hot statements); opened
  // here, so that connecting is not timed.
  const engineDbs =
    form === 'engine-sql'
      ? Array.from({ length: connections }, () =>
          createKysely<EngineTables & BenchTables>(createPool({ connectionString: database.url, applicationName: 'bench-floor', max: 1 })),
        )
      : [];
  await Promise.all(engineDbs.map((d) => sql`SELECT 1`.execute(d)));
  const rss = sampleRss();
  const serverUsage = await measureServer(database.url);
  const usage = measureProcess();
  const started = performance.now();
  const engineSlice = async (connection: number): Promise<void> => {
    const one = engineDbs[connection]!;
    const size = Math.ceil(subjects / connections);
    let after = connection * size;
    const upTo = Math.min(subjects, (connection + 1) * size);
    const pending = one.selectFrom('subjects').select('id as subject_id').where('done', '=', false);
    for (;;) {
      const claim = await claimPage(one, {
        fence,
        workflowId: WORKFLOW_ID,
        step: 'noop',
        pending,
        after,
        upTo,
        limit: batchSize,
        subjectId: null,
        exclude: [],
      });
      if (claim.kind !== 'claimed') {
        assert(claim.kind === 'empty', `claim: ${claim.kind}`);
        return;
      }
      after = claim.last;
      const page = await readClaimedPage(one, {
        workflowId: WORKFLOW_ID,
        step: 'noop',
        pending,
        first: claim.first,
        last: claim.last,
        subjectId: null,
        exclude: [],
      });
      const items: FinishedItem[] = page.map((subject) => ({
        status: 'completed',
        error: null,
        item: {
          subjectId: subject.subjectId,
          pendingId: null,
          attempts: 1,
          inputJson: subject.inputJson,
          outputJson: 'null',
          claimedAtMs: claim.claimedAtMs,
        },
      }));
      await one.transaction().execute(async (tx) => {
        const recorded = await recordResults(tx, fence, { workflowId: WORKFLOW_ID, step: 'noop', previousStep: null, items, releaseClaims: [claim.claimId] });
        assert(recorded.owned, 'the bench run was fenced');
        await sql`UPDATE subjects SET done = true WHERE id = ANY(${items.map((i) => i.item.subjectId)}::bigint[])`.execute(tx);
      });
    }
  };
  await Promise.all(
    Array.from({ length: connections }, async (_, connection) => {
      if (form === 'engine-sql') return engineSlice(connection);
      const client = await pool.connect();
      try {
        for (let ids = take(); ids; ids = take()) {
          if (form === 'statement') {
            await client.query({ name: 'floor', text: statement, values: [runId, WORKFLOW_ID, ids] });
            continue;
          }
          await client.query('BEGIN');
          await client.query({ name: 'insert', text: insert, values: [runId, WORKFLOW_ID, ids] });
          await client.query({ name: 'update', text: update, values: [ids] });
          await client.query('COMMIT');
        }
      } finally {
        client.release();
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const sampledPeak = rss.stop();
  const used = usage.stop();
  const serverCpuSeconds = await serverUsage.stop();
  await pool.end();
  await Promise.all(engineDbs.map((d) => d.destroy()));

  // --- checks ----------------------------------------------------------------------
  const counts = await sql<{ rows: number; done: number }>`
    SELECT (SELECT count(*)::int FROM interactions WHERE workflow_id = ${WORKFLOW_ID} AND status = 'completed') AS rows,
           (SELECT count(*)::int FROM subjects WHERE done) AS done`.execute(db);
  const version = await sql<{ v: string }>`SELECT current_setting('server_version') AS v`.execute(db);
  await db.destroy();
  assert(counts.rows[0]!.rows === subjects && counts.rows[0]!.done === subjects, `floor wrote ${JSON.stringify(counts.rows[0])}, expected ${subjects} each`);

  printResult({
    system: { tx: 'plain SQL floor', statement: 'plain SQL floor, one statement', 'engine-sql': "the engine's statements, no runner" }[form],
    config: {
      tx: `BEGIN, INSERT ${batchSize} interaction rows, UPDATE ${batchSize} domain rows, COMMIT; ${connections} connections`,
      statement: `one statement: INSERT ${batchSize} interaction rows + UPDATE ${batchSize} domain rows; ${connections} connections`,
      'engine-sql': `per ${batchSize}: claim, page read, BEGIN, fenced completion, UPDATE domain rows, COMMIT; ${connections} connections`,
    }[form],
    items: subjects,
    seconds,
    itemsPerSecond: subjects / seconds,
    peakRssMb: peakRssMb(),
    sampledPeakRssMb: sampledPeak,
    cpuSeconds: used.cpuSeconds,
    serverCpuSeconds,
    details: { batchSize, connections, form, serverVersion: version.rows[0]!.v },
  });
} finally {
  await database.drop().catch((error: Error) => process.stderr.write(`could not drop the database: ${error.message}\n`));
  await server.release();
}
