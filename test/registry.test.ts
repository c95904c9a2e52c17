import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { loadConfig } from '../src/config.ts';
import { createKysely, createPool, type Db } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { createLogger } from '../src/log.ts';
import type { WorkflowEnvironment } from '../src/workflows/define.ts';
import { checkWorkflowQueries, queryProblems } from '../src/workflows/check-queries.ts';
import { migrateWorkflows, workflowMigrationTable } from '../src/workflows/module-migrations.ts';
import { createRegistry, loadWorkflows, storedDefinition, syncWorkflows, WorkflowModuleError, WorkflowSyncError } from '../src/workflows/registry.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const env: WorkflowEnvironment = { config: loadConfig({ LOG_LEVEL: 'silent' }), log: createLogger('silent') };
const FIXTURES = 'test/fixtures/workflows';

describe('loading', () => {
  test('no modules means the built-in example, with defaults filled in', async () => {
    for (const modules of [undefined, '', ' , ']) {
      const registry = await loadWorkflows(modules, env);
      assert.deepEqual(
        registry.all().map((w) => w.id),
        [3001],
      );
    }
    const registry = await loadWorkflows(undefined, env);
    const postings = registry.find(3001);
    assert.ok(postings);
    assert.equal(postings.name, 'postings-enrichment');
    assert.equal(postings.subject, 'posting');
    assert.deepEqual(
      postings.steps.map((s) => s.name),
      ['summary', 'skills', 'ihl'],
    );
    assert.equal(postings.concurrency, 8);
    assert.equal(postings.rateLimitSeconds, 60);
    assert.equal(postings.timeoutMs, 30_000);
    assert.equal(postings.retries, 2);
    assert.equal(postings.batchSize, 500);
    assert.equal(registry.find('3001'), postings);
    assert.equal(registry.find('postings-enrichment'), postings);
    assert.equal(registry.find(' Postings-Enrichment '), postings);
    assert.equal(registry.find(3002), undefined);
    assert.equal(registry.find('nope'), undefined);
  });

  test('modules are paths relative to the working directory; factories get the environment', async () => {
    const registry = await loadWorkflows(`${FIXTURES}/valid.ts, src/workflows/postings/index.ts`, env);
    assert.deepEqual(
      registry.all().map((w) => w.id),
      [3001, 9001],
    );
    const valid = registry.find('valid-example');
    assert.equal(valid?.description, `fixture (model ${env.config.OLLAMA_MODEL})`);
    assert.equal(valid?.retries, 0);
    assert.equal(valid?.concurrency, 2);
  });

  const broken: [string, RegExp][] = [
    ['missing.ts', /file not found/],
    ['syntax-error.js', /does not compile: SyntaxError/],
    ['throws.ts', /threw on import: Error: cannot reach the feature flag service/],
    ['no-default.ts', /has no default export \(it exports workflow\)/],
    ['factory-throws.ts', /factory threw: Error: SOME_API_KEY is required/],
    ['not-a-workflow.ts', /invalid definition/],
    ['missing-migrations.ts', /migrations: folder not found \(looked for \/.*\/test\/fixtures\/workflows\/no-such-folder\)$/],
    [
      'invalid.ts',
      /invalid definition: id: .*; name: must be lowercase.*; steps\.1\.handle: handle must be a function; concurrency: .*; unknown field\(s\) concurency; steps\.1\.name: duplicate step name "one"$/,
    ],
  ];
  for (const [name, problem] of broken) {
    test(`a broken module is refused with its file named: ${name}`, async () => {
      const file = `${FIXTURES}/${name}`;
      await assert.rejects(loadWorkflows(`${FIXTURES}/valid.ts,${file}`, env), (error: unknown) => {
        assert.ok(error instanceof WorkflowModuleError, `expected a WorkflowModuleError, got ${String(error)}`);
        assert.equal(error.file, file);
        assert.ok(error.message.startsWith(`workflow module ${file}: `), error.message);
        assert.match(error.message, problem);
        assert.doesNotMatch(error.message, /\n/);
        return true;
      });
    });
  }

  test('a directory is not a module', async () => {
    await assert.rejects(loadWorkflows(FIXTURES, env), /workflow module test\/fixtures\/workflows: not a file/);
  });

  test('the same id or name in two modules is refused, naming both', async () => {
    await assert.rejects(
      loadWorkflows(`${FIXTURES}/valid.ts,${FIXTURES}/same-id.ts`, env),
      (error: unknown) =>
        error instanceof WorkflowModuleError &&
        error.message === `workflow module ${FIXTURES}/same-id.ts: workflow id 9001 is already defined by ${FIXTURES}/valid.ts (valid-example)`,
    );
    await assert.rejects(
      loadWorkflows(`${FIXTURES}/valid.ts,${FIXTURES}/same-name.ts`, env),
      (error: unknown) =>
        error instanceof WorkflowModuleError &&
        error.message === `workflow module ${FIXTURES}/same-name.ts: workflow name "valid-example" is already defined by ${FIXTURES}/valid.ts (id 9001)`,
    );
  });

  test('definitions built in code are checked the same way', async () => {
    const valid = (await import('./fixtures/workflows/valid.ts')).default(env);
    assert.equal(createRegistry([valid]).find(9001)?.name, 'valid-example');
    assert.throws(() => createRegistry([valid, valid]), /workflow module \(inline\): workflow id 9001 is already defined/);
    assert.throws(() => createRegistry([{ ...valid, steps: [] }]), /workflow module \(inline\): invalid definition: steps: /);
    assert.throws(() => createRegistry([{ ...valid, timeoutMs: 1.5 }]), /timeoutMs: /);
  });

  test('migrations are a folder or an object of migrations; a relative folder needs a module file', async () => {
    const valid = (await import('./fixtures/workflows/valid.ts')).default(env);
    assert.throws(
      () => createRegistry([{ ...valid, migrations: 42 as never }]),
      /invalid definition: migrations: must be a folder \(a path or a file: URL\) or an object of migrations/,
    );
    assert.throws(() => createRegistry([{ ...valid, migrations: { '0001_x': { down: async () => {} } as never } }]), /invalid definition: migrations/);
    assert.throws(
      () => createRegistry([{ ...valid, migrations: './migrations' }]),
      /workflow module \(inline\): migrations: "\.\/migrations" is relative, but there is no module file/,
    );
    const folder = new URL('./fixtures/', import.meta.url);
    assert.deepEqual(createRegistry([{ ...valid, migrations: folder }]).modules()[0]!.migrations, { folder: fileURLToPath(folder) });
    assert.throws(() => createRegistry([{ ...valid, migrations: new URL('https://example.com/m/') }]), /is not a file: URL/);
    // Runs have no use for them: the engine's view of the workflow has none.
    assert.equal('migrations' in createRegistry([{ ...valid, migrations: folder }]).find(9001)!, false);
  });

  test("concurrency 'auto' is accepted with an optional maxConcurrency (default 64); anything else is refused, naming the field", async () => {
    const valid = (await import('./fixtures/workflows/valid.ts')).default(env);
    const auto = createRegistry([{ ...valid, concurrency: 'auto' }]).find(9001)!;
    assert.equal(auto.concurrency, 'auto');
    assert.equal(auto.maxConcurrency, 64);
    assert.equal(createRegistry([{ ...valid, concurrency: 'auto', maxConcurrency: 6 }]).find(9001)?.maxConcurrency, 6);
    assert.equal(storedDefinition(auto).concurrency, 'auto');
    const refused: [unknown, RegExp][] = [
      [{ concurrency: 'Auto' }, /invalid definition: concurrency: must be a positive integer or 'auto'$/],
      [{ concurrency: 0 }, /invalid definition: concurrency: must be a positive integer or 'auto'$/],
      [{ concurrency: 'auto', maxConcurrency: 0 }, /invalid definition: maxConcurrency: /],
      [{ concurrency: 'auto', maxConcurrency: 2.5 }, /invalid definition: maxConcurrency: /],
      [{ concurrency: 4, maxConcurrency: 8 }, /invalid definition: maxConcurrency: applies only with concurrency: 'auto'$/],
      [{ maxConcurrency: 8 }, /invalid definition: maxConcurrency: applies only with concurrency: 'auto'$/],
    ];
    for (const [fields, problem] of refused) {
      assert.throws(() => createRegistry([{ ...valid, ...(fields as object) }]), problem, JSON.stringify(fields));
    }
  });

  test("the example 3001 finds Ollama's capacity itself (concurrency 'auto') when OLLAMA_URL is set, and runs 8 local handlers otherwise", async () => {
    const withModel: WorkflowEnvironment = { ...env, config: loadConfig({ LOG_LEVEL: 'silent', OLLAMA_URL: 'http://127.0.0.1:11434' }) };
    assert.equal((await loadWorkflows(undefined, withModel)).find(3001)?.concurrency, 'auto');
    assert.equal((await loadWorkflows(undefined, env)).find(3001)?.concurrency, 8);
  });
});

describe('syncing to the workflows table', () => {
  let database: TestDatabase;
  let db: Db;

  before(async () => {
    database = await createTestDatabase('registry');
    db = createKysely(createPool({ connectionString: database.url, applicationName: 'registry-test' }));
    await migrateToLatest(db);
  });
  after(async () => {
    await db?.destroy();
    await database?.drop();
  });

  const rows = () => db.selectFrom('workflows').select(['id', 'name', 'description', 'definition', 'synced_at']).orderBy('id').execute();

  test('inserts new workflows and updates known ones', async () => {
    await db
      .insertInto('workflows')
      .values({
        id: 3001,
        name: 'postings-enrichment',
        description: 'old',
        definition: JSON.stringify({ steps: ['summary'] }),
        synced_at: new Date('2020-01-01T00:00:00Z'),
      })
      .execute();
    const registry = await loadWorkflows(`src/workflows/postings/index.ts,${FIXTURES}/valid.ts`, env);
    await syncWorkflows(db, registry);
    await syncWorkflows(db, registry); // idempotent

    const stored = await rows();
    assert.deepEqual(
      stored.map((r) => [r.id, r.name]),
      [
        [3001, 'postings-enrichment'],
        [9001, 'valid-example'],
      ],
    );
    const postings = registry.find(3001)!;
    assert.equal(stored[0]!.description, postings.description);
    assert.deepEqual(stored[0]!.definition, storedDefinition(postings));
    assert.deepEqual(stored[0]!.definition, {
      subject: 'posting',
      steps: ['summary', 'skills', 'ihl'],
      concurrency: 8,
      rate_limit_seconds: 60,
      timeout_ms: 30_000,
      retries: 2,
      retry_backoff_ms: 1_000,
      batch_size: 500,
    });
    assert.ok(stored[0]!.synced_at.getTime() > Date.parse('2020-01-02T00:00:00Z'));
    assert.deepEqual((stored[1]!.definition as { steps: string[] }).steps, ['check']);
  });

  test('an id registered under another name, or a name under another id, is refused and nothing changes', async () => {
    await db
      .insertInto('workflows')
      .values([
        { id: 9100, name: 'someone-else', definition: '{}' },
        { id: 9200, name: 'taken-name', definition: '{}' },
      ])
      .execute();
    const before = await rows();
    const valid = (await import('./fixtures/workflows/valid.ts')).default(env);

    await assert.rejects(
      syncWorkflows(db, createRegistry([valid, { ...valid, id: 9100, name: 'renamed' }])),
      (error: unknown) => error instanceof WorkflowSyncError && /workflow 9100 is registered as "someone-else", not "renamed"/.test(error.message),
    );
    await assert.rejects(
      syncWorkflows(db, createRegistry([valid, { ...valid, id: 9300, name: 'taken-name' }])),
      (error: unknown) => error instanceof WorkflowSyncError && /workflow name "taken-name" is registered to id 9200, not 9300/.test(error.message),
    );
    assert.deepEqual(await rows(), before);
  });

  test("inline migrations are applied once, in the workflow's own history; its queries are checked against their tables", async () => {
    const valid = (await import('./fixtures/workflows/valid.ts')).default(env);
    let applied = 0;
    const registry = createRegistry([
      {
        ...valid,
        id: 9400,
        name: 'gizmos',
        migrations: {
          '0001_gizmos': {
            up: async (db) => {
              applied++;
              await sql`CREATE TABLE gizmos (id bigint PRIMARY KEY, done boolean NOT NULL DEFAULT false)`.execute(db);
            },
          },
        },
        steps: [{ ...valid.steps[0]!, pending: (db) => db.selectFrom('gizmos').select(['id as subject_id']).where('done', '=', false) }],
        metrics: (db) => db.selectFrom('gizmos').select((eb) => eb.fn.countAll<number>().as('gizmos')),
      },
    ]);
    // Before its migration, its queries fail: the table is not there.
    assert.deepEqual(
      (await queryProblems(db, registry.all())).map((p) => [p.where, p.problem]),
      [
        ['metrics', 'relation "gizmos" does not exist'],
        ['step "check": pending', 'relation "gizmos" does not exist'],
      ],
    );
    assert.deepEqual(await migrateWorkflows(db, registry), new Map([[9400, ['0001_gizmos']]]));
    assert.deepEqual(await migrateWorkflows(db, registry), new Map([[9400, []]]));
    assert.equal(applied, 1);
    assert.equal(workflowMigrationTable(9400), 'workflow_9400_migrations');
    const history = await sql<{ name: string }>`SELECT name FROM workflow_9400_migrations`.execute(db);
    assert.deepEqual(history.rows, [{ name: '0001_gizmos' }]);
    await checkWorkflowQueries(db, registry);
  });

  test('the query check writes nothing, even through a query that would', async () => {
    const valid = (await import('./fixtures/workflows/valid.ts')).default(env);
    await sql`CREATE SEQUENCE check_counter`.execute(db);
    const registry = createRegistry([
      {
        ...valid,
        id: 9500,
        name: 'writer',
        // A query that writes when it runs: LIMIT 0 evaluates nothing, and the transaction is read-only and rolled back.
        metrics: (d) => d.selectNoFrom(sql<number>`nextval('check_counter')`.as('n')),
      },
    ]);
    await checkWorkflowQueries(db, registry);
    const counter = await sql<{ last_value: number; is_called: boolean }>`SELECT last_value::int, is_called FROM check_counter`.execute(db);
    assert.deepEqual(counter.rows, [{ last_value: 1, is_called: false }]);
  });

  test('sync does not wait for runs that reference workflows meanwhile', { timeout: 10_000 }, async () => {
    // The table lock taken by sync must not conflict with the FK check of a run insert.
    const registry = await loadWorkflows(undefined, env);
    await db.transaction().execute(async (tx) => {
      await sql`
        INSERT INTO workflow_runs (workflow_id, mode, lock_key, status, action, requested_by, source)
        VALUES (3001, 'global_batch', 1, 'completed', 'run', 'test', 'test')`.execute(tx);
      await syncWorkflows(db, registry);
    });
  });
});
