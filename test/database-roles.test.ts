// Two roles (docs/security.md, The database): the owner migrates, the app
// runs as a role that may only append to audit_log. As that role, every way
// to change or remove an audit row must fail, and the app must still work.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { openApp, type App } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { grantStatements } from '../src/db/grants.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import type { PostingsTables } from '../src/workflows/postings/schema.ts';
import { runCli } from './helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { quietLog } from './helpers/engine.ts';

const tag = randomBytes(4).toString('hex');
const OWNER = `wf_owner_${tag}`;
const APP = `wf_app_${tag}`;
const PASSWORD = randomBytes(12).toString('hex');

async function asSuperuser<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => {});
  }
}

function as(url: string, role: string): string {
  const parsed = new URL(url);
  parsed.username = role;
  parsed.password = PASSWORD;
  return parsed.toString();
}

describe('the app runs as a role that may only append to the audit log', () => {
  let database: TestDatabase;
  let app: App;
  let appUrl: string;
  let ownerUrl: string;
  let client: pg.Client;

  before(async () => {
    database = await createTestDatabase('roles');
    await asSuperuser(database.url, async (c) => {
      await c.query(`CREATE ROLE ${OWNER} LOGIN PASSWORD '${PASSWORD}'`);
      await c.query(`CREATE ROLE ${APP} LOGIN PASSWORD '${PASSWORD}'`);
      // The owner of the database owns its public schema (pg_database_owner).
      await c.query(`ALTER DATABASE ${c.escapeIdentifier(database.name)} OWNER TO ${OWNER}`);
      await c.query(`GRANT CREATE ON SCHEMA public TO ${OWNER}`);
    });
    appUrl = as(database.url, APP);
    ownerUrl = as(database.url, OWNER);
    app = await openApp(loadConfig({ DATABASE_URL: appUrl, DATABASE_MIGRATION_URL: ownerUrl, LOG_LEVEL: 'silent' }), quietLog);
    client = new pg.Client({ connectionString: appUrl });
    client.on('error', () => {});
    await client.connect();
  });

  after(async () => {
    await client?.end().catch(() => {});
    await app?.close();
    await database?.drop();
    await asSuperuser(process.env.DATABASE_URL!, async (c) => {
      await c.query(`DROP ROLE IF EXISTS ${APP}`);
      await c.query(`DROP ROLE IF EXISTS ${OWNER}`);
    });
  });

  test('the migrations ran as the owner, and the app works as its own role', async () => {
    const owners = await client.query<{ owner: string }>(
      "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname IN ('audit_log', 'workflow_runs', 'interactions')",
    );
    assert.deepEqual(owners.rows, [{ owner: OWNER }]);
    assert.equal((await client.query<{ u: string }>('SELECT current_user AS u')).rows[0]!.u, APP);
    // A command, audited; the demo data reloaded; a run to its end.
    const invalid = await app.service.handle('stop 999', { id: 'tester', source: 'test' }, 'chat');
    assert.equal(invalid.result.kind, 'not_found');
    assert.equal(await replaceDemoPostings(app.db.withTables<PostingsTables>(), 20), 20);
    assert.equal(await replaceDemoPostings(app.db.withTables<PostingsTables>(), 20), 20, 'twice: ids restart without owning the sequence');
    const { result } = await app.service.handle('run 3001', { id: 'tester', source: 'test' }, 'chat');
    assert.equal(result.kind, 'run_started', JSON.stringify(result));
    const summary = await (result as { run: { done: Promise<{ outcome: string }> } }).run.done;
    assert.equal(summary.outcome, 'completed');
  });

  test("`health` takes its turn and records its findings as the app's role, which cannot remove the limit", async () => {
    const actor = { id: 'tester', source: 'test' };
    const first = await app.service.handle('health', actor, 'chat');
    assert.ok(first.result.kind === 'health' && !first.result.limited, JSON.stringify(first.result));
    const second = await app.service.handle('health', actor, 'chat');
    assert.ok(second.result.kind === 'health' && second.result.limited, 'the next within the interval is refused');
    for (const statement of ['DELETE FROM health_checks', 'TRUNCATE health_checks', 'INSERT INTO health_checks (only_row) VALUES (false)']) {
      await assert.rejects(client.query(statement), (error: { code?: string }) => error.code === '42501', statement);
    }
    assert.equal((await client.query('SELECT 1 FROM health_checks')).rowCount, 1);
  });

  test('every way to change or remove an audit row fails', async () => {
    const before = await client.query('SELECT * FROM audit_log ORDER BY id');
    assert.ok(before.rows.length > 0, 'there is history to protect');
    await client.query(`INSERT INTO audit_log (actor, source, action, outcome) VALUES ('tester', 'test', 'append', 'event')`);

    const attempts = [
      "UPDATE audit_log SET actor = 'someone else'",
      'DELETE FROM audit_log',
      'TRUNCATE audit_log',
      'ALTER TABLE audit_log DISABLE TRIGGER USER',
      'ALTER TABLE audit_log DISABLE TRIGGER ALL',
      'DROP TRIGGER audit_log_no_update_delete ON audit_log',
      'DROP TABLE audit_log',
      'ALTER TABLE audit_log RENAME TO audit_log_old',
      `ALTER TABLE audit_log OWNER TO ${APP}`,
      `REASSIGN OWNED BY ${OWNER} TO ${APP}`,
      `SET ROLE ${OWNER}`,
      `GRANT ${OWNER} TO ${APP}`,
      'CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$',
      'CREATE RULE no_audit AS ON INSERT TO audit_log DO INSTEAD NOTHING',
      "SELECT setval(pg_get_serial_sequence('audit_log', 'id'), 1)",
      'ALTER TABLE audit_log DROP COLUMN actor',
      'CREATE TRIGGER sneaky BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()',
    ];
    for (const statement of attempts) {
      await assert.rejects(
        client.query(statement),
        (error: { code?: string }) => {
          assert.match(error.code ?? '', /^(42501|42P01|0LP01|2BP01)$/, `${statement}: ${String(error.code)}`);
          return true;
        },
        statement,
      );
    }
    const afterRows = await client.query('SELECT * FROM audit_log ORDER BY id');
    assert.deepEqual(afterRows.rows.slice(0, before.rows.length), before.rows, 'history unchanged');
    assert.equal(afterRows.rows.length, before.rows.length + 1, 'and appending still works');
  });

  test('`workflow db grants` prints the statements, and --apply gives a fresh role exactly them', async () => {
    const env = { DATABASE_URL: appUrl, DATABASE_MIGRATION_URL: ownerUrl };
    const printed = await runCli(['db', 'grants'], env);
    assert.equal(printed.code, 0, printed.stderr);
    assert.equal(printed.stdout.trim(), `${grantStatements(APP, 'public').join(';\n')};`);
    assert.doesNotMatch(printed.stdout, /GRANT[^;]*(UPDATE|DELETE|TRUNCATE)[^;]* ON "public"\.audit_log/);

    const fresh = `wf_fresh_${tag}`;
    await asSuperuser(database.url, (c) => c.query(`CREATE ROLE ${fresh} LOGIN PASSWORD '${PASSWORD}'`));
    try {
      const applied = await runCli(['db', 'grants', '--role', fresh, '--apply'], env);
      assert.equal(applied.code, 0, applied.stderr);
      const privileges = await client.query<{ t: string; p: string }>(
        `SELECT t, string_agg(p, ',' ORDER BY p) AS p
           FROM unnest(ARRAY['audit_log', 'health_checks', 'interactions', 'setup_fingerprint']) t, unnest(ARRAY['DELETE', 'INSERT', 'SELECT', 'TRIGGER', 'TRUNCATE', 'UPDATE']) p
          WHERE has_table_privilege($1, t, p) GROUP BY t ORDER BY t`,
        [fresh],
      );
      assert.deepEqual(privileges.rows, [
        { t: 'audit_log', p: 'INSERT,SELECT' },
        { t: 'health_checks', p: 'SELECT,UPDATE' },
        { t: 'interactions', p: 'DELETE,INSERT,SELECT,TRUNCATE,UPDATE' },
      ]);
      const refused = await runCli(['db', 'grants', '--role', OWNER], env);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /owner/);
    } finally {
      await asSuperuser(database.url, async (c) => {
        await c.query(`DROP OWNED BY ${fresh}`);
        await c.query(`DROP ROLE ${fresh}`);
      });
    }
  });
});
