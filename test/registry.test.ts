import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { loadConfig } from '../src/config.ts';
import { createKysely, createPool, type Db } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { createLogger } from '../src/log.ts';
import type { WorkflowEnvironment } from '../src/workflows/define.ts';
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
