import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { migrateToLatest } from '../src/db/migrate.ts';
import type { TestDatabase } from './helpers/database.ts';
import { migratedDatabase, type TestDb } from './helpers/engine.ts';

// Every CLI call and every start migrates first; on an up-to-date database
// that must cost one query, and must still refuse a database migrated by
// newer code.

let database: TestDatabase;
let db: TestDb;
before(async () => {
  ({ database, db } = await migratedDatabase('migrate'));
});
after(async () => {
  await db.destroy();
  await database.drop();
});

test('up to date: nothing applied, and the Migrator is not even asked (its lock table stays as it was)', async () => {
  await sql`DROP TABLE kysely_migration_lock`.execute(db);
  assert.deepEqual(await migrateToLatest(db), []);
  const lock = await sql<{ present: boolean }>`SELECT to_regclass('kysely_migration_lock') IS NOT NULL AS present`.execute(db);
  assert.equal(lock.rows[0]!.present, false);
});

test('a migration recorded that this code does not have is refused, as before', async () => {
  await sql`INSERT INTO kysely_migration (name, timestamp) VALUES ('9999_from_newer_code', now()::text)`.execute(db);
  try {
    await assert.rejects(migrateToLatest(db), /9999_from_newer_code/);
  } finally {
    await sql`DELETE FROM kysely_migration WHERE name = '9999_from_newer_code'`.execute(db);
  }
});
