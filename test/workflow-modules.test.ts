// Workflow modules of the user's own, loaded by the real CLI (bin/workflow.js
// in its own process): from anywhere on disk, in .ts, .mts and .js, with no
// node_modules of their own; with their own migrations; and refused at load,
// naming file and step, when a query of theirs does not run.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { createKysely, createPool, type Db } from '../src/db/connect.ts';
import { runCli } from './helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

// The test runner points TMPDIR at a scratch folder outside the repository,
// so nothing above these modules is a package or has node_modules.
const root = mkdtempSync(path.join(os.tmpdir(), 'workflow-modules-'));
after(() => rmSync(root, { recursive: true, force: true }));

function write(file: string, text: string): string {
  const full = path.join(root, file);
  mkdirSync(path.dirname(full), { recursive: true });
  writeFileSync(full, text);
  return full;
}

let database: TestDatabase;
let db: Db;
let env: NodeJS.ProcessEnv;

before(async () => {
  database = await createTestDatabase('modules');
  db = createKysely(createPool({ connectionString: database.url, applicationName: 'modules-test' }));
  env = { DATABASE_URL: database.url };
});
after(async () => {
  await db?.destroy();
  await database?.drop();
});

const cli = (modules: string[], args: string[]) => runCli(args, { ...env, WORKFLOW_MODULES: modules.join(',') });

/**
 * A module that imports the package, kysely and zod by name and checks, as
 * it loads, that it got the engine's own instances (the package re-exports
 * `sql` and `z`: a second copy would not be identical).
 */
function esModule(id: number, typed: boolean): string {
  const t = (type: string) => (typed ? type : '');
  return `
import { defineStep, defineWorkflow, sql as packageSql, z as packageZ${t(', type Kysely')} } from 'workflow-chatops';
import { sql } from 'kysely';
import { z } from 'zod';
if (sql !== packageSql || z !== packageZ) throw new Error('a second copy of kysely or zod');
const output = z.object({ ok: z.boolean() });
export default defineWorkflow${t('<any>')}({
  id: ${id},
  name: 'module-${id}',
  subject: 'thing',
  steps: [
    defineStep${t('<any, { title: string }, { ok: boolean }>')}({
      name: 'check',
      pending: (db${t(': Kysely<any>')}) => db.selectFrom('postings').select(['id as subject_id', 'title']).where('summary', 'is', null),
      handle: async () => ({ ok: true }),
      output,
      save: async () => {},
    }),
  ],
  metrics: (db${t(': Kysely<any>')}) => db.selectFrom('postings').select((eb${t(': any')}) => eb.fn.countAll().as('things')),
});
`;
}

function commonJsModule(id: number, typed: boolean): string {
  return `
const { defineStep, defineWorkflow, sql: packageSql, z: packageZ } = require('workflow-chatops');
const { sql } = require('kysely');
const { z } = require('zod');
if (sql !== packageSql || z !== packageZ) throw new Error('a second copy of kysely or zod');
const name${typed ? `: string = require('./helper.ts').moduleName(${id})` : ` = 'module-${id}'`};
module.exports = defineWorkflow({
  id: ${id},
  name,
  subject: 'thing',
  steps: [
    defineStep({
      name: 'check',
      pending: (db${typed ? ': any' : ''}) => db.selectFrom('postings').select(['id as subject_id', 'title']).where('summary', 'is', null),
      handle: async () => ({ ok: true }),
      save: async () => {},
    }),
  ],
  metrics: (db${typed ? ': any' : ''}) => db.selectFrom('postings').select((eb${typed ? ': any' : ''}) => eb.fn.countAll().as('things')),
});
`;
}

describe('modules anywhere on disk', () => {
  test('.ts, .mts and .js modules load outside any package, beside a package.json without "type", and in a CommonJS package', async () => {
    write('typeless/package.json', '{ "name": "typeless" }\n');
    write('commonjs/package.json', '{ "name": "commonjs", "type": "commonjs" }\n');
    // Required by commonjs/wf.ts: TypeScript that the CommonJS loader strips too.
    write('commonjs/helper.ts', 'module.exports = { moduleName: (id: number): string => `module-${id}` };\n');
    const modules = [
      write('loose/wf.ts', esModule(7101, true)),
      write('loose/wf.mts', esModule(7102, true)),
      write('loose/wf.js', esModule(7103, false)),
      write('typeless/wf.ts', esModule(7111, true)),
      write('typeless/wf.mts', esModule(7112, true)),
      write('typeless/wf.js', esModule(7113, false)),
      // In a CommonJS package, .ts and .js are CommonJS, as Node decides; .mts is always an ES module.
      write('commonjs/wf.ts', commonJsModule(7121, true)),
      write('commonjs/wf.mts', esModule(7122, true)),
      write('commonjs/wf.js', commonJsModule(7123, false)),
    ];
    const result = await cli(modules, ['workflows']);
    assert.equal(result.code, 0, result.stderr);
    const listed = [...result.stdout.matchAll(/^(\d+) module-\1 /gm)].map((m) => Number(m[1]));
    assert.deepEqual(listed, [7101, 7102, 7103, 7111, 7112, 7113, 7121, 7122, 7123], result.stdout);
  });

  test('ES syntax in a .ts of a CommonJS package is refused with the way out', async () => {
    const file = write('commonjs/es-syntax.ts', esModule(7131, true));
    const result = await cli([file], ['workflows']);
    assert.equal(result.code, 2, result.stderr);
    assert.match(
      result.stderr,
      new RegExp(`workflow module ${escapeRegExp(file)}: does not compile: .*"type": "commonjs" as CommonJS: name the module \\.mts`),
    );
  });

  test('a module still gets its own dependency first when it has one', async () => {
    // A package of the same name as one of the tool's, in the module's own node_modules.
    write('own-deps/node_modules/zod/package.json', '{ "name": "zod", "type": "module", "exports": "./index.js" }\n');
    write('own-deps/node_modules/zod/index.js', 'export const z = { own: true };\n');
    const file = write(
      'own-deps/wf.mts',
      esModule(7141, true)
        .replace(
          "if (sql !== packageSql || z !== packageZ) throw new Error('a second copy of kysely or zod');",
          "if (!(z as any).own) throw new Error('not the own zod');",
        )
        .replace('const output = z.object({ ok: z.boolean() });', 'const output = packageZ.object({ ok: packageZ.boolean() });'),
    );
    const result = await cli([file], ['workflows']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^7141 module-7141 /m);
  });
});

describe("a module's own migrations", () => {
  const id = 7201;
  const module = () =>
    write(
      'migrating/workflow.ts',
      `
import { defineStep, defineWorkflow, sql, type Kysely } from 'workflow-chatops';
interface Tables { widgets: { id: string; size: number | null } }
export default defineWorkflow<Tables>({
  id: ${id},
  name: 'widgets',
  subject: 'widget',
  migrations: './migrations',
  steps: [
    defineStep<Tables, { id: string }, { size: number }>({
      name: 'measure',
      pending: (db: Kysely<Tables>) => db.selectFrom('widgets').select(['id as subject_id', 'id']).where('size', 'is', null),
      handle: async ({ id }) => ({ size: Number(id) * 10 }),
      save: async (tx, items) => {
        await sql\`UPDATE widgets SET size = v.size FROM unnest(\${items.map((i) => i.subjectId)}::bigint[], \${items.map((i) => i.output.size)}::int[]) v(id, size) WHERE widgets.id = v.id\`.execute(tx);
      },
    }),
  ],
  metrics: (db: Kysely<Tables>) => db.selectFrom('widgets').select((eb) => [eb.fn.countAll<string>().as('widgets'), eb.fn.count<string>('size').as('measured')]),
});
`,
    );
  const migration = (name: string, up: string) =>
    write(
      `migrating/migrations/${name}.ts`,
      `import { sql, type Kysely } from 'workflow-chatops';\nexport async function up(db: Kysely<unknown>) {\n  ${up}\n}\n`,
    );
  const history = async () =>
    (await sql<{ name: string; timestamp: string }>`SELECT name, timestamp FROM ${sql.table(`workflow_${id}_migrations`)} ORDER BY name`.execute(db)).rows;

  test('are applied before the workflow is registered, once, in their own history table, and the workflow runs on their tables', async () => {
    const file = module();
    migration('0001_widgets', 'await sql`CREATE TABLE widgets (id bigserial PRIMARY KEY, size int)`.execute(db);');
    migration('0002_some_widgets', 'await sql`INSERT INTO widgets (size) SELECT NULL FROM generate_series(1, 30)`.execute(db);');

    const first = await cli([file], ['workflows']);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /pending: measure 30/);
    const applied = await history();
    assert.deepEqual(
      applied.map((r) => r.name),
      ['0001_widgets', '0002_some_widgets'],
    );
    // Not in the engine's history.
    const engine = await sql<{ name: string }>`SELECT name FROM kysely_migration WHERE name LIKE '%widgets%'`.execute(db);
    assert.deepEqual(engine.rows, []);

    const run = await cli([file], ['run', String(id)]);
    assert.equal(run.code, 0, run.stderr);
    const sizes = await sql<{ measured: number }>`SELECT count(size)::int AS measured FROM widgets`.execute(db);
    assert.equal(sizes.rows[0]!.measured, 30);

    // Started again: nothing re-applied (the sample rows would double).
    const again = await cli([file], ['workflows']);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(await history(), applied);
    const count = await sql<{ n: number }>`SELECT count(*)::int AS n FROM widgets`.execute(db);
    assert.equal(count.rows[0]!.n, 30);

    // A new migration: only it is applied.
    migration('0003_colour', "await sql`ALTER TABLE widgets ADD COLUMN colour text NOT NULL DEFAULT 'grey'`.execute(db);");
    const third = await cli([file], ['workflows']);
    assert.equal(third.code, 0, third.stderr);
    const after = await history();
    assert.deepEqual(
      after.map((r) => r.name),
      ['0001_widgets', '0002_some_widgets', '0003_colour'],
    );
    assert.deepEqual(after.slice(0, 2), applied);
  });

  test('a failing migration stops start-up with exit 2, naming the module and the migration; it is rolled back', async () => {
    const file = module();
    migration('0004_broken', 'await sql`ALTER TABLE widgets ADD COLUMN weight int`.execute(db);\n  await sql`SELECT no_such_function()`.execute(db);');
    const result = await cli([file], ['workflows']);
    assert.equal(result.code, 2, result.stderr);
    assert.match(
      result.stderr,
      new RegExp(`workflow module ${escapeRegExp(file)}: migration 0004_broken failed: function no_such_function\\(\\) does not exist`),
    );
    const columns = await sql<{
      column_name: string;
    }>`SELECT column_name FROM information_schema.columns WHERE table_name = 'widgets' AND column_name = 'weight'`.execute(db);
    assert.deepEqual(columns.rows, []);
    assert.ok(!(await history()).some((r) => r.name === '0004_broken'));
    rmSync(path.join(root, 'migrating/migrations/0004_broken.ts'));
  });

  test("`workflow migrate` names the module's migrations it applied, then says the schema is up to date", async () => {
    const file = module();
    migration('0005_labels', 'await sql`ALTER TABLE widgets ADD COLUMN label text`.execute(db);');
    const first = await cli([file], ['migrate']);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout.trim(), `applied for workflow ${id} (widgets): 0005_labels`);
    assert.ok((await history()).some((r) => r.name === '0005_labels'));
    const again = await cli([file], ['migrate']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.trim(), 'schema is up to date (the engine and every workflow module)');
  });
});

describe('a broken module is refused at load', () => {
  let fresh: TestDatabase;
  let freshDb: Db;
  before(async () => {
    fresh = await createTestDatabase('modules_broken');
    freshDb = createKysely(createPool({ connectionString: fresh.url, applicationName: 'modules-test' }));
  });
  after(async () => {
    await freshDb?.destroy();
    await fresh?.drop();
  });

  test('a pending query without subject_id: exit 2, file and step named, no workflow, run or audit entry written', async () => {
    const file = write(
      'broken/workflow.ts',
      `
import { defineStep, defineWorkflow, type Kysely } from 'workflow-chatops';
export default defineWorkflow<any>({
  id: 7301,
  name: 'broken',
  subject: 'thing',
  migrations: './migrations',
  steps: [
    defineStep<any, {}, {}>({ name: 'fine', pending: (db: Kysely<any>) => db.selectFrom('gadgets').select(['id as subject_id']), handle: async () => ({}), save: async () => {} }),
    defineStep<any, {}, {}>({ name: 'no_subject', pending: (db: Kysely<any>) => db.selectFrom('gadgets').select(['id']), handle: async () => ({}), save: async () => {} }),
  ],
  metrics: (db: Kysely<any>) => db.selectFrom('gadgets').select((eb) => eb.fn.countAll().as('gadgets')),
});
`,
    );
    write(
      'broken/migrations/0001_gadgets.ts',
      "import { sql, type Kysely } from 'workflow-chatops';\nexport const up = (db: Kysely<unknown>) => sql`CREATE TABLE gadgets (id bigint)`.execute(db);\n",
    );

    const result = await runCli(['run', '7301'], { DATABASE_URL: fresh.url, WORKFLOW_MODULES: file });
    assert.equal(result.code, 2, result.stderr);
    assert.equal(
      result.stderr,
      `error: workflow module ${file}: a query fails against the database: workflow 7301 (broken): step "no_subject": pending: selects no subject_id column\n`,
    );
    for (const table of ['workflows', 'workflow_runs', 'audit_log'] as const) {
      const rows = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.table(table)}`.execute(freshDb);
      assert.equal(rows.rows[0]!.n, 0, `${table} is empty`);
    }
    // The one write before the check: the module's own migrations, which its queries need.
    const gadgets = await sql<{ name: string }>`SELECT name FROM workflow_7301_migrations`.execute(freshDb);
    assert.deepEqual(gadgets.rows, [{ name: '0001_gadgets' }]);
  });

  test('every failing query of the module is named: metrics, a missing table, an id that is no integer', async () => {
    const file = write(
      'broken/several.mts',
      `
import { defineStep, defineWorkflow } from 'workflow-chatops';
export default defineWorkflow<any>({
  id: 7302,
  name: 'several',
  subject: 'thing',
  steps: [
    defineStep<any, {}, {}>({ name: 'text_id', pending: (db) => db.selectFrom('postings').select(['title as subject_id']), handle: async () => ({}), save: async () => {} }),
    defineStep<any, {}, {}>({ name: 'no_table', pending: (db) => db.selectFrom('nowhere').select(['id as subject_id']), handle: async () => ({}), save: async () => {} }),
  ],
  metrics: (db) => db.selectFrom('postings').select((eb) => eb.fn.sum('no_such_column').as('n')),
});
`,
    );
    const result = await runCli(['workflows'], { DATABASE_URL: fresh.url, WORKFLOW_MODULES: file });
    assert.equal(result.code, 2, result.stderr);
    assert.equal(
      result.stderr,
      `error: workflow module ${file}: a query fails against the database: workflow 7302 (several): metrics: column "no_such_column" does not exist; ` +
        'step "text_id": pending: subject_id is text, not an integer (the engine pages subjects by a bigint id); step "no_table": pending: relation "nowhere" does not exist\n',
    );
    const rows = await sql<{ n: number }>`SELECT count(*)::int AS n FROM workflows`.execute(freshDb);
    assert.equal(rows.rows[0]!.n, 0);
  });
});

describe('the setup fingerprint', () => {
  let fresh: TestDatabase;
  before(async () => {
    fresh = await createTestDatabase('modules_fingerprint');
  });
  after(async () => {
    await fresh?.drop();
  });

  const module = (pending: string) => `
import { defineStep, defineWorkflow, type Kysely } from 'workflow-chatops';
export default defineWorkflow<any>({
  id: 7401,
  name: 'fingerprinted',
  subject: 'thing',
  migrations: './migrations',
  steps: [defineStep<any, {}, {}>({ name: 'only', pending: (db: Kysely<any>) => ${pending}, handle: async () => ({}), save: async () => {} })],
  metrics: (db: Kysely<any>) => db.selectFrom('widgets').select((eb) => eb.fn.countAll().as('widgets')),
});
`;
  /** What openApp said about the setup, at debug level. */
  const setupOf = async (file: string) => {
    const result = await runCli(['workflows'], { DATABASE_URL: fresh.url, WORKFLOW_MODULES: file, LOG_LEVEL: 'debug', LOG_FORMAT: 'json' });
    const said = result.stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => (JSON.parse(line) as { msg: string }).msg);
    const skipped = said.some((m) => m.startsWith('setup fingerprint matches'));
    const ran = said.some((m) => m.startsWith('setup fingerprint differs'));
    assert.notEqual(skipped, ran, result.stderr);
    return { result, skipped };
  };

  test('an unchanged module skips the setup; a changed one runs it again, and a broken one is still refused, its file and step named', async () => {
    const file = write('fingerprint/workflow.ts', module("db.selectFrom('widgets').select(['id as subject_id'])"));
    write(
      'fingerprint/migrations/0001_widgets.ts',
      "import { sql, type Kysely } from 'workflow-chatops';\nexport const up = (db: Kysely<unknown>) => sql`CREATE TABLE widgets (id bigint, done boolean)`.execute(db);\n",
    );
    const first = await setupOf(file);
    assert.equal(first.result.code, 0, first.result.stderr);
    assert.equal(first.skipped, false, 'the first start sets the database up');
    const second = await setupOf(file);
    assert.equal(second.result.code, 0, second.result.stderr);
    assert.equal(second.skipped, true, 'the same code on the same database skips it');

    // The same module with a query that no longer runs: checked again, and refused.
    write('fingerprint/workflow.ts', module("db.selectFrom('widgets').select(['id'])"));
    for (let i = 0; i < 2; i++) {
      const broken = await setupOf(file);
      assert.equal(broken.skipped, false);
      assert.equal(broken.result.code, 2, broken.result.stderr);
      assert.match(broken.result.stderr, new RegExp(`workflow module ${escapeRegExp(file)}: .*step "only": pending: selects no subject_id column`));
    }

    // Changed again, and fine: checked once, then skipped.
    write('fingerprint/workflow.ts', module("db.selectFrom('widgets').select(['id as subject_id']).where('done', 'is not', true)"));
    assert.equal((await setupOf(file)).skipped, false);
    assert.equal((await setupOf(file)).skipped, true);

    // A new migration of the module's: applied, so the setup runs.
    write(
      'fingerprint/migrations/0002_widget_names.ts',
      "import { sql, type Kysely } from 'workflow-chatops';\nexport const up = (db: Kysely<unknown>) => sql`ALTER TABLE widgets ADD COLUMN name text`.execute(db);\n",
    );
    const migrated = await setupOf(file);
    assert.equal(migrated.skipped, false);
    assert.equal(migrated.result.code, 0, migrated.result.stderr);
    const applied = await runCli(['workflows'], { DATABASE_URL: fresh.url, WORKFLOW_MODULES: file });
    assert.equal(applied.code, 0, applied.stderr);
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
