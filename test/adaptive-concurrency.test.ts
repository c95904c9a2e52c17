// A workflow with `concurrency: 'auto'` run by the engine against a stand-in
// model server of capacity 3 (test/helpers/capacity-server.ts) that answers
// 503 when its queue is full: every item is completed exactly once (one
// answered call, one completed interaction, one domain write), overloads are
// retried, and the run's progress and /metrics carry the adaptive limit.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { createObservability } from '../src/chat/slack/metrics.ts';
import { createOllamaClient } from '../src/workflows/ollama.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { startCapacityServer, type CapacityServer } from './helpers/capacity-server.ts';
import { testEngine, type TestEngine } from './helpers/engine.ts';

const ITEMS = 120;
const CAPACITY = 3;
const MAX = 12;

describe("concurrency 'auto' against a server of limited capacity", () => {
  let t: TestEngine;
  let server: CapacityServer;

  before(async () => {
    server = await startCapacityServer({ capacity: CAPACITY, serviceMs: 20 });
    const client = createOllamaClient({ url: server.url, model: 'm', timeoutMs: 10_000 });
    const workflow = {
      ...itemsWorkflow({ handle: async ({ id }, ctx) => client.generate(`item ${id}`, ctx.signal), retries: 20, batchSize: 25 }),
      concurrency: 'auto' as const,
      maxConcurrency: MAX,
    };
    t = await testEngine('adaptive', [workflow], (db) => createItems(db, ITEMS));
  });

  after(async () => {
    await t?.close();
    await server?.close();
  });

  test('completes every item exactly once, within maxConcurrency, and shows its limit in the progress and /metrics', async () => {
    const observability = createObservability({ health: t.health, processMetrics: false });
    const outcome = await t.engine.startRun({ workflow: t.workflows[0]!, mode: 'global_batch', force: false, requestedBy: 'test', source: 'test' });
    assert.ok(outcome.started, outcome.started ? '' : outcome.refusal.message);
    const limits = new Set<number>();
    const watching = setInterval(() => {
      const limit = outcome.run.progress().process?.limit;
      if (limit !== undefined) limits.add(limit);
    }, 5);
    // /metrics reads the limit from the run's heartbeat (every 200 ms here) while it runs.
    let gauge: string | undefined;
    let ended = false;
    const ending = outcome.run.done.finally(() => (ended = true));
    while (!ended && gauge === undefined) {
      gauge = (await observability.metrics())
        .split('\n')
        .find((line) => line.startsWith(`workflow_concurrency_limit{workflow_id="9100",run_id="${outcome.run.id}"}`));
      if (gauge === undefined) await Promise.race([ending, new Promise((resolve) => setTimeout(resolve, 20))]);
    }
    const summary = await ending.finally(() => clearInterval(watching));
    assert.ok(gauge, 'workflow_concurrency_limit seen in /metrics while the run ran');
    const shown = Number(gauge.split(' ').at(-1));
    assert.ok(shown >= 1 && shown <= MAX, gauge);
    assert.doesNotMatch(await observability.metrics(), /^workflow_concurrency_limit\{/m, 'gone once the run ended');

    assert.equal(summary.outcome, 'completed');
    assert.equal(summary.progress.process?.done, ITEMS);
    assert.equal(summary.progress.process?.failed, 0);
    const final = summary.progress.process?.limit;
    assert.ok(final !== undefined && final >= 1 && final <= MAX, `final limit ${final}`);
    assert.ok(limits.size > 0 && [...limits].every((l) => l >= 1 && l <= MAX), `limits seen ${[...limits].join(',')}`);

    // Each item: answered once by the server, written once, one completed interaction.
    const prompts = server.served.map((s) => s.prompt).sort();
    assert.deepEqual(prompts, Array.from({ length: ITEMS }, (_, i) => `item ${i + 1}`).sort());
    assert.ok(server.maxInService <= CAPACITY);
    const { rows } = await sql<{ total: number; distinct: number; completed: number; results: number }>`
      SELECT count(*)::int AS total, count(DISTINCT subject_id)::int AS distinct,
             count(*) FILTER (WHERE status = 'completed')::int AS completed,
             (SELECT count(*)::int FROM items WHERE result = 'done: item ' || id) AS results
        FROM interactions WHERE run_id = ${outcome.run.id}`.execute(t.db);
    assert.deepEqual(rows[0], { total: ITEMS, distinct: ITEMS, completed: ITEMS, results: ITEMS });
    // Overloads (503) were retried, and counted as attempts.
    const attempts = await sql<{ n: number }>`SELECT coalesce(sum(attempts), 0)::int AS n FROM interactions WHERE run_id = ${outcome.run.id}`.execute(t.db);
    assert.equal(attempts.rows[0]!.n, ITEMS + server.rejected.length);
  });
});
