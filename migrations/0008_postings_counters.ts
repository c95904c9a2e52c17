import { sql, type Kysely } from 'kysely';

// Counters of the example's postings, kept exact by triggers, so that its
// metrics snapshot and expected work are a sum over a few rows instead of a
// scan of postings, which grows with the table (bench/RESULTS.md).
//
// Why this shape:
// - Exact and transactional: a statement's counter change is written in its
//   own transaction, so any snapshot sees postings and counters agree; a
//   rollback takes both back.
// - STATEMENT-level AFTER triggers with transition tables: a 500-row save is
//   one aggregate over the changed rows and one counter UPDATE, not 500.
// - SHARDS rows, not one: every writer would otherwise queue on one row lock
//   until its transaction commits. A writer takes the first shard that nobody
//   else holds (FOR UPDATE SKIP LOCKED), starting from one derived from its
//   backend pid, so concurrent writers spread out and never wait on a
//   counter, and so never deadlock over one; a transaction that writes again
//   finds its own shard first (its own lock does not make it skip the row).
//   Only with more than SHARDS writers at once does one wait.
// - Under REPEATABLE READ or SERIALIZABLE, a write to postings fails with a
//   serialization error when the shard it takes was changed by a transaction
//   that committed after its snapshot; such transactions must be retried, as
//   for any other write conflict.
// - The counted sets are the steps' pending predicates word for word
//   (migrations/0002_postings.ts), so the steps' pendingCount equals
//   count(*) of their pending query.
// - Triggers do not fire when session_replication_role is `replica`
//   (logical replication, pg_restore --disable-triggers of postings alone):
//   after writing postings that way, call postings_counters_recount().

const SHARDS = 16;

// Each counter and the rows it counts. Order matters: it is the column order
// of postings_counters, which the trigger's record is declared as.
const COUNTERS: [name: string, predicate: string][] = [
  ['total', 'true'],
  ['with_summary', 'summary IS NOT NULL'],
  ['with_skills', 'skills IS NOT NULL'],
  ['with_ihl', 'ihl_score IS NOT NULL'],
  ['pending_summary', 'summary IS NULL'],
  ['pending_skills', 'summary IS NOT NULL AND skills IS NULL'],
  ['pending_ihl', 'summary IS NOT NULL AND skills IS NOT NULL AND ihl_score IS NULL'],
];

// Over rows (sign, summary, skills, ihl_score): +1 for a row that is now
// there, -1 for one that was. The counter's change is the signed count of
// its rows.
const deltas = COUNTERS.map(([name, predicate]) => `coalesce(sum(sign) FILTER (WHERE ${predicate}), 0) AS ${name}`).join(',\n           ');
const counted = 'summary, skills, ihl_score';
const isZero = COUNTERS.map(([name]) => `d.${name} = 0`).join(' AND ');
const add = COUNTERS.map(([name]) => `${name} = c.${name} + d.${name}`).join(', ');

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(`
    CREATE TABLE postings_counters (
      shard smallint PRIMARY KEY,
      ${COUNTERS.map(([name]) => `${name} bigint NOT NULL DEFAULT 0`).join(',\n      ')}
    )`)
    .execute(db);
  await sql.raw(`INSERT INTO postings_counters (shard) SELECT generate_series(0, ${SHARDS - 1})`).execute(db);

  // Adds one statement's change to a shard this transaction may hold.
  await sql
    .raw(`
    CREATE FUNCTION postings_counters_add(d postings_counters) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE postings_counters AS c SET ${add}
       WHERE c.shard = (SELECT s.shard FROM postings_counters AS s
                         ORDER BY (s.shard + ${SHARDS} - pg_backend_pid() % ${SHARDS}) % ${SHARDS}
                         LIMIT 1 FOR UPDATE SKIP LOCKED);
      IF NOT FOUND THEN
        -- Every shard is held by another transaction: wait for this backend's.
        UPDATE postings_counters AS c SET ${add} WHERE c.shard = pg_backend_pid() % ${SHARDS};
      END IF;
    END $$`)
    .execute(db);

  // One function for the three triggers; each names only the transition
  // tables its event has, and PL/pgSQL plans only the branch that runs.
  await sql
    .raw(`
    CREATE FUNCTION postings_counters_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      d postings_counters;
    BEGIN
      IF TG_OP = 'INSERT' THEN
        SELECT 0, ${deltas} INTO d
          FROM (SELECT 1 AS sign, ${counted} FROM new_rows) AS r;
      ELSIF TG_OP = 'DELETE' THEN
        SELECT 0, ${deltas} INTO d
          FROM (SELECT -1 AS sign, ${counted} FROM old_rows) AS r;
      ELSE
        SELECT 0, ${deltas} INTO d
          FROM (SELECT 1 AS sign, ${counted} FROM new_rows
                UNION ALL
                SELECT -1, ${counted} FROM old_rows) AS r;
      END IF;
      -- A statement that changed no counted column (or no row: statement
      -- triggers fire for those too) takes no counter lock.
      IF NOT (${isZero}) THEN
        PERFORM postings_counters_add(d);
      END IF;
      RETURN NULL;
    END $$`)
    .execute(db);

  await sql`
    CREATE TRIGGER postings_counters_insert AFTER INSERT ON postings
      REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION postings_counters_changed()`.execute(db);
  await sql`
    CREATE TRIGGER postings_counters_update AFTER UPDATE ON postings
      REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION postings_counters_changed()`.execute(db);
  await sql`
    CREATE TRIGGER postings_counters_delete AFTER DELETE ON postings
      REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION postings_counters_changed()`.execute(db);

  // TRUNCATE has no transition table and fires no DELETE trigger. It holds
  // postings' ACCESS EXCLUSIVE lock, so no other writer holds a shard.
  await sql
    .raw(`
    CREATE FUNCTION postings_counters_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE postings_counters SET ${COUNTERS.map(([name]) => `${name} = 0`).join(', ')};
      RETURN NULL;
    END $$`)
    .execute(db);
  await sql`
    CREATE TRIGGER postings_counters_truncate AFTER TRUNCATE ON postings
      FOR EACH STATEMENT EXECUTE FUNCTION postings_counters_truncated()`.execute(db);

  // Counts postings again, with writers held off (SHARE mode: readers go on)
  // until the caller's transaction ends. Used below, and by hand after
  // writes the triggers did not see. READ COMMITTED only: the count must
  // come from a snapshot taken after the lock, not from the transaction's
  // first statement.
  await sql
    .raw(`
    CREATE FUNCTION postings_counters_recount() RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
      IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'postings_counters_recount() must run in a READ COMMITTED transaction, not %', current_setting('transaction_isolation');
      END IF;
      LOCK TABLE postings IN SHARE MODE;
      UPDATE postings_counters AS c
         SET ${COUNTERS.map(([name]) => `${name} = CASE WHEN c.shard = 0 THEN n.${name} ELSE 0 END`).join(',\n             ')}
        FROM (SELECT ${deltas} FROM (SELECT 1 AS sign, ${counted} FROM postings) AS r) AS n;
    END $$`)
    .execute(db);

  // Existing rows. The migration's transaction already holds a lock that
  // keeps writers out (CREATE TRIGGER's), so nothing written before the
  // triggers existed is missed, and nothing after is counted twice.
  await sql`SELECT postings_counters_recount()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TRIGGER postings_counters_truncate ON postings`.execute(db);
  await sql`DROP TRIGGER postings_counters_delete ON postings`.execute(db);
  await sql`DROP TRIGGER postings_counters_update ON postings`.execute(db);
  await sql`DROP TRIGGER postings_counters_insert ON postings`.execute(db);
  await sql`DROP FUNCTION postings_counters_recount()`.execute(db);
  await sql`DROP FUNCTION postings_counters_truncated()`.execute(db);
  await sql`DROP FUNCTION postings_counters_changed()`.execute(db);
  await sql`DROP FUNCTION postings_counters_add(postings_counters)`.execute(db);
  await sql`DROP TABLE postings_counters`.execute(db);
}
