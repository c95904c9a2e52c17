import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { loadConfig } from '../src/config.ts';
import { createKysely, createPool, type Db } from '../src/db/connect.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { createLogger } from '../src/log.ts';
import { resolveDefaults, type AnyStep, type StepContext, type WorkflowEnvironment } from '../src/workflows/define.ts';
import { OllamaError } from '../src/workflows/ollama.ts';
import { countPostings, generatePostings, replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import { ihlOutput } from '../src/workflows/postings/ihl.ts';
import postingsWorkflow from '../src/workflows/postings/index.ts';
import { extractSkills, scoreIhl, summarize, SUMMARY_MAX_CHARS } from '../src/workflows/postings/local.ts';
import { parseSkills } from '../src/workflows/postings/model.ts';
import type { PostingsTables } from '../src/workflows/postings/schema.ts';
import { skillsOutput } from '../src/workflows/postings/skills.ts';
import { summaryOutput } from '../src/workflows/postings/summary.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const log = createLogger('silent');
const environment = (vars: Record<string, string> = {}): WorkflowEnvironment => ({ config: loadConfig({ LOG_LEVEL: 'silent', ...vars }), log });
const context = (signal: AbortSignal = new AbortController().signal): StepContext => ({ signal, subjectId: 1, attempt: 1, log });

const local = resolveDefaults(postingsWorkflow(environment()));
const step = (name: string): AnyStep<PostingsTables> => local.steps.find((s) => s.name === name)!;

describe('local handlers', () => {
  test('summary: the first two sentences, "node.js" kept whole, capped at a word boundary', () => {
    assert.equal(summarize('  We build  Node.js services.\nYou know Rust! Nice to have: Go. More.'), 'We build Node.js services. You know Rust!');
    assert.equal(summarize(''), '');
    const long = summarize(`${'word '.repeat(200)}.`);
    assert.ok(long.length <= SUMMARY_MAX_CHARS && long.endsWith('word…'), long);
  });

  test('skills: vocabulary and aliases, whole words only, in vocabulary order', () => {
    assert.deepEqual(extractSkills('K8s, Node.js, C++ and Postgres with TypeScript'), ['typescript', 'node.js', 'c++', 'postgresql', 'kubernetes']);
    assert.deepEqual(extractSkills('JavaScript and PostgreSQL and MySQL'), ['javascript', 'postgresql']);
    assert.deepEqual(extractSkills('Golang, Java; SQL.'), ['go', 'java', 'sql']);
    assert.deepEqual(extractSkills('We value kind code review.'), []);
  });

  test('ihl: 0–100, more for weightier skills and seniority', () => {
    assert.equal(scoreIhl([], ''), 0);
    const junior = scoreIhl(['sql'], 'Acme is hiring a Junior Data Engineer in Berlin to build the data platform. You know SQL.');
    const senior = scoreIhl(['rust', 'kubernetes'], 'Acme is hiring a Senior Platform Engineer in Berlin to run our infrastructure. You know Rust.');
    assert.ok(junior < senior, `${junior} < ${senior}`);
    assert.equal(scoreIhl(SKILLS_ALL, 'Principal engineer, remote. '.repeat(5)), 100);
    assert.equal(scoreIhl(['Unknown Thing'], 'x'), 5 + 8 + 5);
  });

  test('over demo postings: deterministic, valid under the step schemas, and varied', async () => {
    const skillLists = new Set<string>();
    const scores = new Set<number>();
    let withoutSkills = 0;
    for (const posting of generatePostings(500, 7)) {
      const { summary } = await step('summary').handle({ description: posting.description }, context());
      assert.deepEqual(summaryOutput.parse({ summary }), { summary });
      assert.equal(summary, summarize(posting.description));
      const { skills } = await step('skills').handle({ summary }, context());
      assert.deepEqual(skillsOutput.parse({ skills }), { skills });
      assert.deepEqual(skills, extractSkills(summary));
      const { ihl_score } = await step('ihl').handle({ summary, skills }, context());
      assert.deepEqual(ihlOutput.parse({ ihl_score }), { ihl_score });
      assert.equal(ihl_score, scoreIhl(skills, summary));
      skillLists.add(skills.join(','));
      scores.add(ihl_score);
      if (skills.length === 0) withoutSkills++;
    }
    assert.ok(skillLists.size > 50, `${skillLists.size} distinct skill lists`);
    assert.ok(scores.size > 20, `${scores.size} distinct scores`);
    assert.ok(withoutSkills > 0 && withoutSkills < 250, `${withoutSkills} postings without skills`);
  });
});

const SKILLS_ALL = extractSkills('typescript rust pytorch kubernetes machine learning python golang postgresql');

describe('with PostgreSQL', () => {
  let database: TestDatabase;
  let db: Db<PostingsTables>;

  before(async () => {
    database = await createTestDatabase('postings');
    db = createKysely<PostingsTables>(createPool({ connectionString: database.url, applicationName: 'postings-test' }));
    await migrateToLatest(db);
  });
  after(async () => {
    await db?.destroy();
    await database?.drop();
  });

  const pendingIds = async (name: string) => (await step(name).pending(db).execute()).map((row) => Number(row.subject_id)).sort((a, b) => a - b);

  /** Handles the given subjects as the engine would (input = the pending row without subject_id) and saves them in one transaction. */
  async function process(name: string, ids: number[]): Promise<unknown[]> {
    const rows = (await step(name).pending(db).execute()).filter((row) => ids.includes(Number(row.subject_id)));
    assert.equal(rows.length, ids.length, `all of ${ids} pending for ${name}`);
    const items = await Promise.all(
      rows.map(async ({ subject_id, ...input }, index) => ({
        subjectId: Number(subject_id),
        interactionId: index + 1,
        output: step(name).output!.parse(await step(name).handle(input, context())),
      })),
    );
    await db.transaction().execute((tx) => step(name).save(tx, items));
    return items.map((item) => item.output);
  }

  const metrics = async () => {
    const row = (await local.metrics(db).executeTakeFirstOrThrow()) as Record<string, unknown>;
    return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v)]));
  };

  test('demo data: exact count, ids from 1, same seed same rows, other seed other rows', async () => {
    const read = () => db.selectFrom('postings').select(['id', 'title', 'company', 'location', 'description']).orderBy('id').execute();
    assert.equal(await replaceDemoPostings(db, 200, 42), 200);
    assert.equal(await countPostings(db), 200);
    const first = await read();
    assert.deepEqual(
      first.map((r) => r.id),
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    assert.deepEqual(
      first.map(({ id, ...rest }) => rest),
      [...generatePostings(200, 42)],
    );
    assert.ok(new Set(first.map((r) => r.description)).size > 190, 'descriptions vary');
    assert.ok(new Set(first.map((r) => r.title)).size > 20, 'titles vary');

    await replaceDemoPostings(db, 200, 42);
    assert.deepEqual(await read(), first);
    await replaceDemoPostings(db, 200, 43);
    assert.notDeepEqual(await read(), first);

    assert.equal(await replaceDemoPostings(db, 25_001), 25_001, 'more than one insert chunk');
    assert.equal(await countPostings(db), 25_001);
    assert.equal(await replaceDemoPostings(db, 0), 0);
    assert.equal(await countPostings(db), 0);
    await assert.rejects(replaceDemoPostings(db, -1), RangeError);
  });

  test('each save moves exactly its batch from its step to the next; metrics follow', async () => {
    await replaceDemoPostings(db, 30, 11);
    const all = Array.from({ length: 30 }, (_, i) => i + 1);
    assert.deepEqual(await metrics(), { postings_total: 30, postings_with_summary: 0, postings_with_skills: 0, postings_with_ihl: 0 });
    assert.deepEqual(await pendingIds('summary'), all);
    assert.deepEqual(await pendingIds('skills'), []);

    const summarised = [2, 3, 5, 8, 13, 21, 29, 30];
    await process('summary', summarised);
    assert.deepEqual(
      await pendingIds('summary'),
      all.filter((id) => !summarised.includes(id)),
    );
    assert.deepEqual(await pendingIds('skills'), summarised);
    assert.deepEqual(await pendingIds('ihl'), []);

    const extracted = [3, 8, 21, 30];
    const skillOutputs = await process('skills', extracted);
    assert.deepEqual(
      await pendingIds('skills'),
      summarised.filter((id) => !extracted.includes(id)),
    );
    assert.deepEqual(await pendingIds('ihl'), extracted);

    const scored = [8, 30];
    await process('ihl', scored);
    assert.deepEqual(await pendingIds('ihl'), [3, 21]);
    assert.deepEqual(await metrics(), { postings_total: 30, postings_with_summary: 8, postings_with_skills: 4, postings_with_ihl: 2 });

    const saved = await db.selectFrom('postings').selectAll().where('id', 'in', extracted).orderBy('id').execute();
    assert.deepEqual(
      saved.map((r) => ({ skills: r.skills })),
      skillOutputs,
    );
    for (const row of saved) {
      assert.equal(row.summary, summarize(row.description));
      assert.ok(row.summarized_at instanceof Date && row.skills_extracted_at instanceof Date);
      assert.equal(row.ihl_score, scored.includes(row.id) ? scoreIhl(row.skills!, row.summary!) : null);
    }
  });

  test('save is one statement per batch, idempotent, and keeps awkward skill names intact', async () => {
    await replaceDemoPostings(db, 3, 5);
    const summaries = [1, 2, 3].map((id) => ({ subjectId: id, interactionId: id, output: { summary: `summary ${id}` } }));
    await db.transaction().execute((tx) => step('summary').save(tx, summaries));
    const awkward = ['c++', 'a "quoted", skill', 'back\\slash', '{braces}', 'ünïcode'];
    const items = [
      { subjectId: 1, interactionId: 11, output: { skills: awkward } },
      { subjectId: 2, interactionId: 12, output: { skills: [] } },
    ];
    for (let i = 0; i < 2; i++) {
      // Twice: delivery is at-least-once, so a repeated save must land the same.
      const statements: string[] = [];
      const counting = db.withPlugin({
        transformQuery: (args) => {
          statements.push(args.queryId.queryId);
          return args.node;
        },
        transformResult: async (args) => args.result,
      });
      await counting.transaction().execute((tx) => step('skills').save(tx, items));
      assert.equal(statements.length, 1);
    }
    const rows = await db.selectFrom('postings').select(['id', 'skills']).orderBy('id').execute();
    assert.deepEqual(rows, [
      { id: 1, skills: awkward },
      { id: 2, skills: [] },
      { id: 3, skills: null },
    ]);
    assert.deepEqual(await pendingIds('ihl'), [1, 2]);
    await db.transaction().execute((tx) => step('summary').save(tx, []));
  });

  test("each step's pending query, wrapped as the engine claims, scans its partial index", async () => {
    await replaceDemoPostings(db, 2_000, 9);
    await db.transaction().execute((tx) =>
      step('summary').save(
        tx,
        Array.from({ length: 1_500 }, (_, i) => ({ subjectId: i + 1, interactionId: 0, output: { summary: 'x' } })),
      ),
    );
    await db.transaction().execute((tx) =>
      step('skills').save(
        tx,
        Array.from({ length: 1_000 }, (_, i) => ({ subjectId: i + 1, interactionId: 0, output: { skills: ['sql'] } })),
      ),
    );
    await sql`ANALYZE postings`.execute(db);
    for (const name of ['summary', 'skills', 'ihl']) {
      const plan = await db.transaction().execute(async (tx) => {
        // Only to make the plan independent of table size: the question is
        // whether the index is usable at all (its predicate matches the query's).
        await sql`SET LOCAL enable_seqscan = off`.execute(tx);
        await sql`SET LOCAL enable_bitmapscan = off`.execute(tx);
        const { rows } = await sql<{ 'QUERY PLAN': unknown }>`
          EXPLAIN (FORMAT JSON)
          SELECT p.subject_id FROM (${step(name).pending(db)}) AS p
           WHERE p.subject_id > ${100} ORDER BY p.subject_id LIMIT ${500}`.execute(tx);
        return JSON.stringify(rows[0]!['QUERY PLAN']);
      });
      assert.match(plan, new RegExp(`"Index Name":"postings_pending_${name}"`), `${name}: ${plan}`);
      assert.doesNotMatch(plan, /"Node Type":"Sort"/, `${name} needs no sort: ${plan}`);
    }
  });
});

// ---- Ollama ------------------------------------------------------------------

interface Recorded {
  method: string;
  url: string;
  body: { model?: unknown; prompt?: unknown; stream?: unknown };
}

/** A stand-in for Ollama on a free local port; `answer` decides each reply. */
async function fakeOllama(answer: (recorded: Recorded, res: http.ServerResponse) => void) {
  const requests: Recorded[] = [];
  const server = http.createServer(async (req, res) => {
    let text = '';
    try {
      for await (const chunk of req) text += chunk;
    } catch {
      return; // the client gave up before sending it all
    }
    const recorded = { method: req.method ?? '', url: req.url ?? '', body: JSON.parse(text) };
    requests.push(recorded);
    server.emit('recorded', recorded, res);
    answer(recorded, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    requests,
    server,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

const json = (res: http.ServerResponse, status: number, body: string) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(body);
};

describe('with Ollama', () => {
  test('summary and skills ask /api/generate with the configured model; ihl stays local', async () => {
    const ollama = await fakeOllama((recorded, res) => {
      const prompt = String(recorded.body.prompt);
      if (prompt.includes('Job posting:')) json(res, 200, JSON.stringify({ model: 'm', response: ' Summary: "A senior Rust role in Berlin." ', done: true }));
      else json(res, 200, JSON.stringify({ response: 'Here you go:\n```json\n["Rust", "PostgreSQL", "rust", " "]\n```', done: true }));
    });
    try {
      const workflow = resolveDefaults(postingsWorkflow(environment({ OLLAMA_URL: `${ollama.url}/`, OLLAMA_MODEL: 'test-model', OLLAMA_TIMEOUT_MS: '40000' })));
      assert.ok(workflow.timeoutMs > 40_000, 'the item timeout outlasts the HTTP timeout');
      const [summary, skills, ihl] = workflow.steps;

      const description = 'Acme is hiring a Senior Rust Engineer in Berlin. You know Postgres.';
      assert.deepEqual(await summary!.handle({ description }, context()), { summary: 'A senior Rust role in Berlin.' });
      assert.deepEqual(await skills!.handle({ summary: 'A senior Rust role in Berlin.' }, context()), { skills: ['rust', 'postgresql'] });
      assert.deepEqual(await ihl!.handle({ summary: 'x', skills: ['rust'] }, context()), { ihl_score: scoreIhl(['rust'], 'x') });

      assert.equal(ollama.requests.length, 2);
      for (const request of ollama.requests) {
        assert.equal(request.method, 'POST');
        assert.equal(request.url, '/api/generate');
        assert.equal(request.body.model, 'test-model');
        assert.equal(request.body.stream, false);
        assert.deepEqual(Object.keys(request.body).sort(), ['model', 'prompt', 'stream']);
      }
      assert.match(String(ollama.requests[0]!.body.prompt), /^Summarise this job posting/);
      assert.ok(String(ollama.requests[0]!.body.prompt).endsWith(`Job posting:\n${description}`));
      assert.match(String(ollama.requests[1]!.body.prompt), /JSON array/);
      assert.ok(String(ollama.requests[1]!.body.prompt).endsWith('Job summary:\nA senior Rust role in Berlin.'));
    } finally {
      await ollama.close();
    }
  });

  const failures: [string, (res: http.ServerResponse) => void, RegExp][] = [
    ['a 500', (res) => json(res, 500, '{"error":"model \'test-model\' not found"}'), /answered 500 Internal Server Error: model 'test-model' not found/],
    [
      'a 502 with an HTML page',
      (res) => {
        res.writeHead(502, { 'content-type': 'text/html' });
        res.end('<html>\n<b>Bad gateway</b></html>');
      },
      /answered 502 Bad Gateway: <html> <b>Bad gateway<\/b><\/html>/,
    ],
    ['bad JSON', (res) => json(res, 200, '{"response": "trunc'), /answered with a body that is not JSON: \{"response": "trunc/],
    ['no response field', (res) => json(res, 200, '{"done":true}'), /answered without a "response" string \(model test-model\)/],
    ['an empty summary', (res) => json(res, 200, '{"response":"  "}'), /model test-model answered with an empty summary/],
  ];
  for (const [what, reply, message] of failures) {
    test(`${what} makes the handler throw a clear error`, async () => {
      const ollama = await fakeOllama((_, res) => reply(res));
      try {
        const [summary] = postingsWorkflow(environment({ OLLAMA_URL: ollama.url, OLLAMA_MODEL: 'test-model' })).steps;
        await assert.rejects(summary!.handle({ description: 'A job.' }, context()), (error: unknown) => {
          assert.ok(error instanceof OllamaError, String(error));
          assert.match(error.message, message);
          if (!/empty summary/.test(error.message)) assert.ok(error.message.includes(`${ollama.url}/api/generate`), error.message);
          return true;
        });
      } finally {
        await ollama.close();
      }
    });
  }

  test('an unreachable server is reported as such', async () => {
    const ollama = await fakeOllama(() => {});
    await ollama.close(); // the port is now free, and nothing listens on it
    const [, skills] = postingsWorkflow(environment({ OLLAMA_URL: ollama.url })).steps;
    await assert.rejects(skills!.handle({ summary: 'x' }, context()), new RegExp(`cannot reach ollama at ${ollama.url}/api/generate: .*ECONNREFUSED`));
  });

  test('a server that never answers: the step signal aborts the request', async () => {
    const ollama = await fakeOllama(() => {}); // never answers
    try {
      const [summary] = postingsWorkflow(environment({ OLLAMA_URL: ollama.url })).steps;
      const controller = new AbortController();
      const arrived = once(ollama.server, 'recorded') as Promise<[Recorded, http.ServerResponse]>;
      const handled = summary!.handle({ description: 'A job.' }, context(controller.signal));
      const [, res] = await arrived;
      const closed = once(res, 'close');
      const reason = new Error('stopped by test');
      controller.abort(reason);
      await assert.rejects(handled, (error) => error === reason);
      await closed; // the connection was really dropped, not left hanging
    } finally {
      await ollama.close();
    }
  });

  test('a server that never answers: OLLAMA_TIMEOUT_MS aborts the request', async () => {
    const ollama = await fakeOllama(() => {});
    try {
      const [, skills] = postingsWorkflow(environment({ OLLAMA_URL: ollama.url, OLLAMA_TIMEOUT_MS: '50', OLLAMA_MODEL: 'slow' })).steps;
      // Watched from the connection, which exists before the request is sent,
      // since a 50 ms timeout may fire before the server has read the body.
      const closed = once(ollama.server, 'connection').then(([socket]) => once(socket as Socket, 'close'));
      await assert.rejects(
        skills!.handle({ summary: 'x' }, context()),
        (error: unknown) => error instanceof OllamaError && /gave no answer within 50 ms \(OLLAMA_TIMEOUT_MS, model slow\)/.test(error.message),
      );
      await closed;
    } finally {
      await ollama.close();
    }
  });

  test('model answers are parsed forgivingly into skill lists', () => {
    assert.deepEqual(parseSkills('["TypeScript", "SQL", 3, "typescript"]'), ['typescript', 'sql']);
    assert.deepEqual(parseSkills('- Python\n- Apache Spark\n1. Airflow.'), ['python', 'apache spark', 'airflow']);
    assert.deepEqual(parseSkills('rust, go, "k8s"'), ['rust', 'go', 'k8s']);
    assert.deepEqual(parseSkills('[]'), []);
    assert.deepEqual(parseSkills('None'), []);
    assert.ok(skillsOutput.safeParse({ skills: parseSkills(Array.from({ length: 50 }, (_, i) => `s${i}`).join(',')) }).success);
  });
});
