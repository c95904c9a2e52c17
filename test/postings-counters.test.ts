// The postings' counters (migrations/0008_postings_counters.ts): after every
// kind of write, in and out of transactions, and from many connections at
// once, they equal a direct count of postings; and a run of 3001 that reads
// them still records exact state, delta and expected work.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import * as counters from '../migrations/0008_postings_counters.ts';
import { loadConfig } from '../src/config.ts';
import { createKysely, createPool, type Db } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { countPending } from '../src/db/queries/claim-interactions.ts';
import type { CommandResult } from '../src/commands/results.ts';
import { expectedWork, takeSnapshot } from '../src/engine/snapshot.ts';
import { createLogger } from '../src/log.ts';
import { defineStep, resolveDefaults, type AnyStep, type CompletedItem } from '../src/workflows/define.ts';
import { createRegistry } from '../src/workflows/registry.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import postingsWorkflow from '../src/workflows/postings/index.ts';
import type { PostingsTables } from '../src/workflows/postings/schema.ts';
import { eventually } from './helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { testEngine, type TestEngine } from './helpers/engine.ts';

const log = createLogger('silent');
const workflow = resolveDefaults(postingsWorkflow({ config: loadConfig({ LOG_LEVEL: 'silent' }), log }));
const step = (name: string): AnyStep<PostingsTables> => workflow.steps.find((s) => s.name === name)!;
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

// Both sides in one statement, so they come from one snapshot: under
// concurrent writers this is the only comparison that means anything. The
// direct side is written out here, independently of the migration.
const COMPARE = `
  SELECT (SELECT json_build_object(
            'total', sum(total), 'with_summary', sum(with_summary), 'with_skills', sum(with_skills), 'with_ihl', sum(with_ihl),
            'pending_summary', sum(pending_summary), 'pending_skills', sum(pending_skills), 'pending_ihl', sum(pending_ihl))
            FROM postings_counters) AS counters,
         (SELECT json_build_object(
            'total', count(*), 'with_summary', count(summary), 'with_skills', count(skills), 'with_ihl', count(ihl_score),
            'pending_summary', count(*) FILTER (WHERE summary IS NULL),
            'pending_skills', count(*) FILTER (WHERE summary IS NOT NULL AND skills IS NULL),
            'pending_ihl', count(*) FILTER (WHERE summary IS NOT NULL AND skills IS NOT NULL AND ihl_score IS NULL))
            FROM postings) AS direct`;

type Counts = Record<string, number>;
type Queryable = { query: (text: string) => Promise<{ rows: any[] }> };

/** Counters and a direct count, from one snapshot of `on`; asserts they agree and returns the count. */
async function exact(on: Queryable, what: string): Promise<Counts> {
  const { rows } = await on.query(COMPARE);
  const { counters: fromCounters, direct } = rows[0] as { counters: Counts; direct: Counts };
  assert.deepEqual(fromCounters, direct, `counters vs a direct count: ${what}`);
  return direct;
}

describe('postings counters', () => {
  let database: TestDatabase;
  let db: Db<PostingsTables>;
  const raw: Queryable = { query: async (text) => sql.raw(text).execute(db) };
  const clients: pg.Client[] = [];

  /** A connection of its own: its own backend, its own transactions. */
  async function connection(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: database.url, application_name: 'counters-test' });
    client.on('error', () => {});
    await client.connect();
    clients.push(client);
    return client;
  }

  /** Everything a direct look at the table and the engine's readings of the counters must agree on. */
  async function check(what: string): Promise<Counts> {
    const direct = await exact(raw, what);
    assert.deepEqual(
      await takeSnapshot(db, workflow),
      {
        postings_total: direct.total,
        postings_with_summary: direct.with_summary,
        postings_with_skills: direct.with_skills,
        postings_with_ihl: direct.with_ihl,
      },
      `metrics: ${what}`,
    );
    const counted: Record<string, number> = {};
    for (const s of workflow.steps) counted[s.name] = await countPending(db, s.pending(db), null);
    assert.deepEqual(await expectedWork(db, workflow, null), counted, `expected work: ${what}`);
    return direct;
  }

  const items = <O>(ids: number[], output: (id: number) => O): CompletedItem<O>[] =>
    ids.map((id) => ({ subjectId: id, interactionId: id, output: output(id) }));
  /** The steps' own saves, each in its own transaction as the completer commits them. */
  const saveSummaries = (ids: number[]) =>
    db.transaction().execute((tx) =>
      step('summary').save(
        tx,
        items(ids, (id) => ({ summary: `summary ${id}` })),
      ),
    );
  const saveSkills = (ids: number[]) =>
    db.transaction().execute((tx) =>
      step('skills').save(
        tx,
        items(ids, (id) => ({ skills: id % 4 === 0 ? [] : ['sql'] })),
      ),
    );
  const saveScores = (ids: number[]) =>
    db.transaction().execute((tx) =>
      step('ihl').save(
        tx,
        items(ids, (id) => ({ ihl_score: id % 101 })),
      ),
    );
  const counterVersions = async () =>
    (await sql<{ v: string }>`SELECT string_agg(xmin::text, ',' ORDER BY shard) AS v FROM postings_counters`.execute(db)).rows[0]!.v;

  before(async () => {
    database = await createTestDatabase('counters');
    db = createKysely<PostingsTables>(createPool({ connectionString: database.url, applicationName: 'counters-test', max: 4 }));
    await migrateToLatest(db);
  });
  // Closing a test's connections ends their transactions, so a failed test
  // leaves no lock behind for the next one to wait on.
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.end().catch(() => {})));
  });
  after(async () => {
    await db?.destroy();
    await database?.drop();
  });

  test("inserts, the steps' saves, updates that clear a column, deletes, upserts and MERGE", async () => {
    await replaceDemoPostings(db, 400, 1);
    assert.equal((await check('after loading demo postings')).total, 400);

    await saveSummaries(range(1, 300));
    await check('summary saved for 1..300');
    await saveSkills(range(1, 200));
    await check('skills saved for 1..200');
    await saveScores(range(1, 120));
    const scored = await check('ihl saved for 1..120');
    assert.deepEqual([scored.with_summary, scored.pending_skills, scored.pending_ihl], [300, 100, 80]);

    // Delivery is at-least-once: a repeated save changes no count.
    const versions = await counterVersions();
    await saveSummaries(range(1, 50));
    await sql`UPDATE postings SET title = title || '!' WHERE id <= 200`.execute(db);
    assert.deepEqual(await check('a repeated save, an update of an uncounted column'), scored);
    assert.equal(await counterVersions(), versions, 'writes that change no count leave the counter rows alone');

    await sql`UPDATE postings SET summary = NULL WHERE id % 7 = 0`.execute(db);
    await check('summary cleared where skills and scores remain');
    await sql`UPDATE postings SET skills = NULL, ihl_score = NULL WHERE id % 5 = 0`.execute(db);
    await check('skills and score cleared');
    await sql`UPDATE postings SET summary = 'again', skills = '{x}', ihl_score = 1 WHERE id % 11 = 0`.execute(db);
    await check('rows set done in one update');
    await sql`UPDATE postings SET summary = NULL, skills = NULL, ihl_score = NULL WHERE id BETWEEN 100 AND 150`.execute(db);
    await check('rows set back to nothing');

    await sql`DELETE FROM postings WHERE id % 3 = 0`.execute(db);
    await check('a third deleted');
    await sql`DELETE FROM postings WHERE id > 390`.execute(db);
    await check('the last rows deleted');

    await sql`INSERT INTO postings (title, description, summary, skills, ihl_score) VALUES ('done', 'd', 's', '{a}', 50), ('half', 'd', 's', NULL, NULL)`.execute(
      db,
    );
    await check('rows inserted already processed');

    // One statement that inserts some rows and updates others fires both triggers.
    await sql`
      INSERT INTO postings (id, title, description, summary) OVERRIDING SYSTEM VALUE
      SELECT g, 'upsert', 'd', 'upserted' FROM generate_series(380, 395) g
      ON CONFLICT (id) DO UPDATE SET summary = excluded.summary, skills = NULL`.execute(db);
    await check('INSERT … ON CONFLICT DO UPDATE');

    await sql`
      MERGE INTO postings p
      USING (SELECT g AS id FROM generate_series(1, 60) g) v ON p.id = v.id
      WHEN MATCHED AND p.id % 2 = 0 THEN DELETE
      WHEN MATCHED THEN UPDATE SET ihl_score = 99, skills = coalesce(p.skills, '{m}'), summary = coalesce(p.summary, 'm')
      WHEN NOT MATCHED THEN INSERT (title, description) VALUES ('merged', 'd')`.execute(db);
    await check('MERGE');
  });

  test('TRUNCATE: zero, also inside a transaction and with RESTART IDENTITY; rolled back, the counts come back', async () => {
    await replaceDemoPostings(db, 300, 2);
    await saveSummaries(range(1, 100));
    const loaded = await check('loaded');

    const client = await connection();
    await client.query('BEGIN');
    await client.query('TRUNCATE postings');
    assert.equal((await exact(client, 'inside, after TRUNCATE')).total, 0);
    await client.query(`INSERT INTO postings (title, description, summary) VALUES ('a', 'd', NULL), ('b', 'd', 's')`);
    assert.deepEqual((await exact(client, 'inside, after TRUNCATE and INSERT')).with_summary, 1);
    await client.query('ROLLBACK');
    assert.deepEqual(await check('TRUNCATE rolled back'), loaded);

    await sql`TRUNCATE postings RESTART IDENTITY`.execute(db);
    assert.equal((await check('truncated')).total, 0);
    // replaceDemoPostings truncates and inserts in one transaction.
    await replaceDemoPostings(db, 250, 3);
    assert.equal((await check('replaced')).total, 250);
    await replaceDemoPostings(db, 0);
    assert.equal((await check('replaced by none')).total, 0);
  });

  test('a rolled-back transaction and a rolled-back savepoint leave the counts as they were', async () => {
    await replaceDemoPostings(db, 200, 4);
    await saveSummaries(range(1, 150));
    await saveSkills(range(1, 90));
    const committed = await check('before');

    const client = await connection();
    await client.query('BEGIN');
    await client.query(`INSERT INTO postings (title, description) SELECT 't', 'd' FROM generate_series(1, 25)`);
    await client.query(`UPDATE postings SET ihl_score = 10 WHERE id <= 60`);
    const inside = await exact(client, 'inside the transaction');
    assert.deepEqual([inside.total, inside.with_ihl], [225, 60]);
    assert.deepEqual(await exact(raw, 'from outside, during it'), committed);
    await client.query('SAVEPOINT s');
    await client.query(`DELETE FROM postings WHERE id <= 100`);
    await client.query(`UPDATE postings SET summary = NULL WHERE id > 100`);
    assert.equal((await exact(client, 'inside the savepoint')).with_summary, 0);
    await client.query('ROLLBACK TO SAVEPOINT s');
    assert.deepEqual(await exact(client, 'after ROLLBACK TO SAVEPOINT'), inside);
    await client.query('ROLLBACK');
    assert.deepEqual(await check('after ROLLBACK'), committed);

    // A failed statement rolls its own counter change back with it.
    await assert.rejects(sql`UPDATE postings SET ihl_score = CASE WHEN id < 150 THEN 5 ELSE 1000 END`.execute(db), /ihl_score_check|check constraint/);
    assert.deepEqual(await check('after a failed UPDATE'), committed);
  });

  test('concurrent transactions on eight connections: none waits on the counters, each sees its own changes, commits and rollbacks add up', async () => {
    await replaceDemoPostings(db, 800, 5);
    const start = await check('before');
    const writers = await Promise.all(Array.from({ length: 8 }, () => connection()));
    // A writer that queued on a counter row behind an open transaction would
    // wait forever here; lock_timeout turns that into a failure.
    for (const [i, client] of writers.entries()) {
      await client.query('BEGIN');
      await client.query(`SET LOCAL lock_timeout = '2s'`);
      const from = i * 100 + 1;
      await client.query(`UPDATE postings SET summary = 's' WHERE id BETWEEN ${from} AND ${from + 59}`);
      await client.query(`UPDATE postings SET skills = '{k}' WHERE id BETWEEN ${from} AND ${from + 29}`);
      await client.query(`DELETE FROM postings WHERE id BETWEEN ${from + 90} AND ${from + 99}`);
      await client.query(`INSERT INTO postings (title, description, summary) SELECT 'w${i}', 'd', 's' FROM generate_series(1, ${i + 1})`);
    }
    // All eight are open at once, each holding the one shard its four writes went to.
    for (const [i, client] of writers.entries()) {
      const { rows } = await client.query('SELECT count(*)::int AS n FROM postings_counters WHERE xmin = pg_current_xact_id()::xid');
      assert.equal(rows[0].n, 1, `writer ${i} changed one shard`);
      const own = await exact(client, `writer ${i}, all open`);
      assert.deepEqual([own.total, own.with_summary, own.pending_skills], [800 - 10 + i + 1, 60 + i + 1, 30 + i + 1], `writer ${i} sees only its own changes`);
    }
    assert.deepEqual(await exact(raw, 'from outside, all open'), start);
    for (const [i, client] of writers.entries()) await client.query(i % 2 === 0 ? 'COMMIT' : 'ROLLBACK');
    const end = await check('four committed, four rolled back');
    // Writers 0, 2, 4, 6 committed: 60 summaries, 10 deletions and i + 1 insertions each.
    assert.deepEqual([end.total, end.with_summary, end.with_skills], [800 - 40 + 1 + 3 + 5 + 7, 240 + 16, 120]);
  });

  test('two writers whose backends start from the same shard: the second takes another instead of waiting', async () => {
    await replaceDemoPostings(db, 100, 11);
    // Of any 17 backends, two have pids equal modulo the 16 shards.
    const opened: { client: pg.Client; pid: number }[] = [];
    let pair: [pg.Client, pg.Client] | undefined;
    while (!pair) {
      const client = await connection();
      const pid: number = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const twin = opened.find((o) => o.pid % 16 === pid % 16);
      if (twin) pair = [twin.client, client];
      opened.push({ client, pid });
    }
    const [first, second] = pair;
    for (const client of pair) {
      await client.query('BEGIN');
      await client.query(`SET LOCAL lock_timeout = '2s'`);
      await client.query(`UPDATE postings SET summary = 'x' WHERE id = ${client === first ? 1 : 2}`);
    }
    const shard = async (client: pg.Client) =>
      (await client.query('SELECT shard FROM postings_counters WHERE xmin = pg_current_xact_id()::xid')).rows.map((r) => r.shard);
    const [a, b] = [await shard(first), await shard(second)];
    assert.equal(a.length, 1);
    assert.equal(b.length, 1);
    assert.notEqual(a[0], b[0]);
    await first.query('COMMIT');
    await second.query('COMMIT');
    assert.equal((await check('both committed')).with_summary, 2);
  });

  test('more open writers than shards: the extra ones wait for a shard, none is lost', async () => {
    await replaceDemoPostings(db, 400, 6);
    await check('before');
    const writers = await Promise.all(Array.from({ length: 20 }, () => connection()));
    const pids: number[] = [];
    for (const client of writers) pids.push((await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
    for (const client of writers.slice(0, 16)) {
      await client.query('BEGIN');
      await client.query(`SET LOCAL lock_timeout = '2s'`);
      await client.query(`INSERT INTO postings (title, description) VALUES ('held', 'd')`);
    }
    // Every shard is now held; the next four have nowhere to go but their own backend's shard, and wait for it.
    const late = writers.slice(16).map(async (client) => {
      await client.query('BEGIN');
      await client.query(`INSERT INTO postings (title, description, summary) VALUES ('late', 'd', 's')`);
      await client.query('COMMIT');
    });
    await eventually(async () => {
      const { rows } = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY(${pids.slice(16)}) AND wait_event_type = 'Lock'`.execute(db);
      return rows[0]!.n === 4;
    }, 'the four extra writers to wait for a lock');
    assert.equal((await exact(raw, 'while they wait')).total, 400);
    for (const client of writers.slice(0, 16)) await client.query('COMMIT');
    await Promise.all(late);
    const end = await check('all committed');
    assert.deepEqual([end.total, end.with_summary], [420, 4]);
  });

  test('many writers committing at once, and a reader that always sees counters equal to a direct count', async () => {
    await replaceDemoPostings(db, 3_000, 7);
    await check('before');
    const workers = await Promise.all(Array.from({ length: 6 }, () => connection()));
    const reader = await connection();
    let writing = true;
    let readings = 0;
    const reading = (async () => {
      while (writing) {
        await exact(reader, `reading ${readings}`);
        readings++;
      }
    })();
    // Each worker owns 500 ids, so the workers never wait on each other's rows;
    // they take turns through the steps' saves and raw writes.
    const work = workers.map(async (client, w) => {
      const base = w * 500;
      for (let round = 0; round < 10; round++) {
        const ids = range(base + round * 50 + 1, base + round * 50 + 50);
        await client.query('BEGIN');
        await client.query(`UPDATE postings SET summary = 'c' || id WHERE id = ANY($1)`, [ids]);
        await client.query(`UPDATE postings SET skills = '{a}' WHERE id = ANY($1) AND id % 2 = 0`, [ids]);
        await client.query(`UPDATE postings SET ihl_score = 3 WHERE id = ANY($1) AND id % 4 = 0`, [ids]);
        if (round % 3 === 0) await client.query(`DELETE FROM postings WHERE id = ANY($1) AND id % 5 = 0`, [ids]);
        await client.query(`INSERT INTO postings (title, description, summary) VALUES ('n', 'd', CASE WHEN $1 % 2 = 0 THEN 's' END)`, [round]);
        await client.query(round % 4 === 3 ? 'ROLLBACK' : 'COMMIT');
      }
    });
    await Promise.all(work).finally(() => (writing = false));
    await reading;
    assert.ok(readings > 0, 'the reader read while the writers wrote');
    await check('after the writers');
    // And the steps' own saves, concurrently.
    await Promise.all([saveSummaries(range(2_001, 2_500)), saveSummaries(range(2_501, 3_000)), saveSkills(range(1, 500).filter((id) => id % 2 === 1))]);
    await check('after concurrent saves');
  });

  test('a database that already has postings gets its counters from a count when the migration runs', async () => {
    await counters.down(db as Kysely<any>);
    // Written with no triggers to see them.
    await replaceDemoPostings(db, 500, 8);
    await saveSummaries(range(1, 320));
    await saveSkills(range(1, 200));
    await sql`DELETE FROM postings WHERE id % 9 = 0`.execute(db);
    // As the Migrator runs it: in one transaction.
    await db.transaction().execute((tx) => counters.up(tx as Kysely<any>));
    const direct = await check('after the migration');
    assert.equal(direct.total, 500 - 55);
    await saveScores(range(1, 100));
    await check('writes after the migration');
  });

  test('writes the triggers did not see (session_replication_role = replica) are put right by postings_counters_recount()', async (t) => {
    const superuser = (await sql<{ s: boolean }>`SELECT rolsuper AS s FROM pg_roles WHERE rolname = current_user`.execute(db)).rows[0]!.s;
    if (!superuser) return t.skip('needs a superuser to set session_replication_role');
    await replaceDemoPostings(db, 100, 9);
    const client = await connection();
    await client.query(`SET session_replication_role = replica`);
    await client.query(`UPDATE postings SET summary = 'unseen' WHERE id <= 40`);
    await client.query(`SET session_replication_role = origin`);
    const { rows } = await client.query(COMPARE);
    assert.notDeepEqual(rows[0].counters, rows[0].direct, 'the triggers did not fire');
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await assert.rejects(client.query('SELECT postings_counters_recount()'), /must run in a READ COMMITTED transaction, not repeatable read/);
    await client.query('ROLLBACK');
    await sql`SELECT postings_counters_recount()`.execute(db);
    assert.equal((await check('after the recount')).with_summary, 40);
  });
});

describe("expected work from a step's pendingCount", () => {
  // A workflow over no table at all: the counts say which path was taken.
  const counted = defineStep<any, object, null>({
    name: 'counted',
    pending: (db) => db.selectFrom(sql<{ subject_id: number }>`(SELECT generate_series(1, 3) AS subject_id)`.as('v')).select('subject_id'),
    pendingCount: (db) => db.selectNoFrom(sql<string>`'42'::bigint`.as('pending')),
    handle: async () => null,
    save: async () => {},
  });
  const plain = defineStep<any, object, null>({ ...counted, name: 'plain', pendingCount: undefined });
  const definition = { id: 9100, name: 'counted', subject: 'thing', steps: [counted, plain], metrics: (db: any) => db.selectNoFrom(sql<number>`1`.as('one')) };

  test('global scope reads pendingCount; a subject, or a step without it, counts pending', async () => {
    const database = await createTestDatabase('counted');
    const db = createKysely(createPool({ connectionString: database.url, applicationName: 'counted-test', max: 2 }));
    try {
      const resolved = resolveDefaults(definition);
      assert.deepEqual(await expectedWork(db, resolved, null), { counted: 42, plain: 3 });
      assert.deepEqual(await expectedWork(db, resolved, 2), { counted: 1, plain: 1 });
      assert.deepEqual(await expectedWork(db, resolved, 7), { counted: 0, plain: 0 });
    } finally {
      await db.destroy();
      await database.drop();
    }
  });

  test('the registry accepts pendingCount as a function and names it when it is not one', () => {
    assert.equal(createRegistry([definition]).find(9100)?.steps[0]?.pendingCount, counted.pendingCount);
    assert.throws(
      () => createRegistry([{ ...definition, steps: [{ ...counted, pendingCount: 'SELECT 1' as any }] }]),
      /steps\.0\.pendingCount: pendingCount must be a function/,
    );
  });
});

describe('a run of 3001 on the counters', () => {
  let t: TestEngine;
  const actor = { id: 'tester', source: 'test' };
  const direct = async () => {
    const { rows } = await sql<Counts>`
      SELECT count(*)::int AS postings_total, count(summary)::int AS postings_with_summary,
             count(skills)::int AS postings_with_skills, count(ihl_score)::int AS postings_with_ihl FROM postings`.execute(t.db);
    return rows[0]!;
  };
  const generic = async () => {
    const work: Counts = {};
    for (const s of t.workflows[0]!.steps) work[s.name] = await countPending(t.db, s.pending(t.db), null);
    return work;
  };
  async function runToEnd(text: string) {
    const { result } = await t.service.handle(text, actor, 'chat');
    assert.equal(result.kind, 'run_started', JSON.stringify(result));
    return (result as Extract<CommandResult, { kind: 'run_started' }>).run.done;
  }

  before(async () => {
    t = await testEngine('counters_run', [workflow], async (db) => {
      await replaceDemoPostings(db, 300, 10);
      // Part of the work done already, so every step has some left.
      await db.transaction().execute((tx) =>
        step('summary').save(
          tx,
          range(1, 120).map((id) => ({ subjectId: id, interactionId: 0, output: { summary: `s ${id}` } })),
        ),
      );
      await db.transaction().execute((tx) =>
        step('skills').save(
          tx,
          range(1, 50).map((id) => ({ subjectId: id, interactionId: 0, output: { skills: ['sql'] } })),
        ),
      );
      await db.transaction().execute((tx) =>
        step('ihl').save(
          tx,
          range(1, 20).map((id) => ({ subjectId: id, interactionId: 0, output: { ihl_score: 7 } })),
        ),
      );
    });
  });
  after(() => t.close());

  test('global_batch: state before and after, delta and expected work equal direct counts', async () => {
    const before = await direct();
    const pending = await generic();
    assert.deepEqual(pending, { summary: 180, skills: 70, ihl: 30 });
    const summary = await runToEnd('run 3001');
    assert.equal(summary.outcome, 'completed');
    const afterCounts = await direct();
    assert.deepEqual(summary.stateBefore, before);
    assert.deepEqual(summary.stateAfter, afterCounts);
    assert.deepEqual(summary.delta, { postings_total: 0, postings_with_summary: 180, postings_with_skills: 250, postings_with_ihl: 280 });
    assert.deepEqual(summary.run.pending_work, pending);
    assert.deepEqual(summary.run.expected_work, { summary: 180, skills: 250, ihl: 280 });
    assert.equal(summary.run.interactions_completed, 180 * 3 + 70 * 2 + 30);
  });

  test('single_subject: expected work counts the subject, not the whole table', async () => {
    await sql`INSERT INTO postings (title, description) VALUES ('a', 'one'), ('b', 'two'), ('c', 'three')`.execute(t.db);
    const [id] = (await sql<{ id: number }>`SELECT max(id)::int AS id FROM postings`.execute(t.db)).rows.map((r) => r.id);
    const summary = await runToEnd(`run 3001 --mode single_subject --subject ${id}`);
    assert.equal(summary.outcome, 'completed');
    assert.deepEqual(summary.run.expected_work, { summary: 1, skills: 1, ihl: 1 });
    assert.deepEqual(summary.run.pending_work, { summary: 1, skills: 0, ihl: 0 });
    assert.deepEqual(summary.delta, { postings_total: 0, postings_with_summary: 1, postings_with_skills: 1, postings_with_ihl: 1 });
    assert.deepEqual(await generic(), { summary: 2, skills: 0, ihl: 0 });
  });
});
