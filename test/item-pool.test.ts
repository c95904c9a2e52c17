// The runner's item pool (src/engine/item-pool.ts) on its own: concurrency
// bound, deadlines that free the slot of a hung handler, retries, paced
// starts, graceful quiesce and abort. In memory: the pool touches no database.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AdaptiveLimit } from '../src/engine/concurrency-limit.ts';
import { ItemPool, type Outcome, type PoolOptions } from '../src/engine/item-pool.ts';
import { OverloadError } from '../src/lib/overload.ts';
import type { Item, Page, StepRun } from '../src/engine/work.ts';
import type { StepContext } from '../src/workflows/define.ts';
import { quietLog } from './helpers/engine.ts';

function items(n: number): Item[] {
  const step = { name: 'process', counter: { done: 0, failed: 0, running: 0 } } as unknown as StepRun;
  const page = { claimId: 1, step, items: [], open: n } as unknown as Page;
  return Array.from({ length: n }, (_, i) => ({
    page,
    subjectId: i + 1,
    input: {},
    inputJson: '{}',
    pendingId: null,
    claimedAtMs: 0,
    attempts: 0,
    state: 'queued' as const,
    output: undefined,
    outputJson: null,
  }));
}

/** Counts calls per turn of the event loop (a turn ends at each setImmediate) until stopped. */
function countPerTurn(): { count(): void; stop(): number[] } {
  const turns = [0];
  let counting = true;
  const next = () => {
    if (!counting) return;
    turns.push(0);
    setImmediate(next);
  };
  setImmediate(next);
  return {
    count: () => void turns[turns.length - 1]!++,
    stop: () => {
      counting = false;
      return turns;
    },
  };
}

interface Harness {
  pool: ItemPool;
  settled: Map<number, Outcome>;
  controller: AbortController;
  done: Promise<void>;
}

function harness(n: number, options: Partial<PoolOptions> & { call: PoolOptions['call'] }): Harness {
  const settled = new Map<number, Outcome>();
  const controller = new AbortController();
  let allSettled!: () => void;
  const done = new Promise<void>((resolve) => (allSettled = resolve));
  const pool = new ItemPool({
    concurrency: 3,
    timeoutMs: 10_000,
    retries: 0,
    retryBackoffMs: 1,
    startsPerTurn: 1_000,
    log: quietLog,
    signal: controller.signal,
    accept: () => undefined,
    ...options,
    settle: (item, outcome) => {
      assert.equal(settled.has(item.subjectId), false, `item ${item.subjectId} settled twice`);
      settled.set(item.subjectId, outcome);
      if (settled.size === n) allSettled();
    },
  });
  return { pool, settled, controller, done };
}

describe('item pool', () => {
  test('runs every item once, never more than `concurrency` at a time', async () => {
    let running = 0;
    let most = 0;
    const h = harness(40, {
      concurrency: 3,
      call: async (item) => {
        running++;
        most = Math.max(most, running);
        await new Promise((resolve) => setImmediate(resolve));
        running--;
        return item.subjectId;
      },
    });
    h.pool.push(items(40));
    await h.done;
    await h.pool.onIdle();
    assert.equal(most, 3);
    assert.equal(h.settled.size, 40);
    assert.ok([...h.settled.values()].every((o) => o.ok));
  });

  test('a hung call times out and frees its slot at once: the others finish meanwhile; it is retried, then failed with the timeout', async () => {
    const calls = new Map<number, number>();
    const signals: AbortSignal[] = [];
    const h = harness(5, {
      concurrency: 1,
      timeoutMs: 50,
      retries: 1,
      call: (item, ctx: StepContext) => {
        calls.set(item.subjectId, (calls.get(item.subjectId) ?? 0) + 1);
        if (item.subjectId === 1) {
          signals.push(ctx.signal);
          return new Promise(() => {}); // hangs, ignoring its signal
        }
        return Promise.resolve('ok');
      },
    });
    h.pool.push(items(5));
    await h.done;
    assert.deepEqual(h.settled.get(1), { ok: false, error: 'timed out after 50 ms' });
    assert.equal(calls.get(1), 2, 'tried once more after the first timeout');
    for (const id of [2, 3, 4, 5]) assert.deepEqual(h.settled.get(id), { ok: true, value: 'ok' });
    assert.ok(
      signals.every((s) => s.aborted),
      'each timed-out call was told through its signal',
    );
    await h.pool.onIdle();
  });

  test('a failed or rejected call is retried up to `retries`; attempts are counted on the item', async () => {
    const list = items(2);
    const h = harness(2, {
      retries: 2,
      call: async (item) => {
        if (item.subjectId === 1 && item.attempts < 3) throw new Error(`flaky ${item.attempts}`);
        return 'x';
      },
      accept: (item) => (item.subjectId === 2 ? 'output rejected' : undefined),
    });
    h.pool.push(list);
    await h.done;
    assert.deepEqual(h.settled.get(1), { ok: true, value: 'x' });
    assert.deepEqual(h.settled.get(2), { ok: false, error: 'output rejected' });
    assert.deepEqual(
      list.map((i) => i.attempts),
      [3, 3],
    );
  });

  test('at most `startsPerTurn` calls start in one turn of the event loop, also when a worker goes on to its next item', async () => {
    // Handlers that answer at once: without the budget one worker would run
    // through the whole queue in a single turn.
    const quickTurns = countPerTurn();
    const quick = harness(50, { concurrency: 3, startsPerTurn: 2, call: async () => quickTurns.count() });
    quick.pool.push(items(50));
    await quick.done;
    const quickCounts = quickTurns.stop();
    assert.equal(
      quickCounts.reduce((a, b) => a + b, 0),
      50,
    );
    assert.ok(Math.max(...quickCounts) <= 2, `starts per turn: ${quickCounts.filter(Boolean).join(' ')}`);

    const slowTurns = countPerTurn();
    const h = harness(100, {
      concurrency: 100,
      startsPerTurn: 10,
      call: async () => {
        slowTurns.count();
        await new Promise((resolve) => setTimeout(resolve, 20));
        return 'ok';
      },
    });
    h.pool.push(items(100));
    await h.done;
    const slowCounts = slowTurns.stop();
    assert.equal(
      slowCounts.reduce((a, b) => a + b, 0),
      100,
    );
    assert.ok(Math.max(...slowCounts) <= 10, `starts per turn: ${slowCounts.filter(Boolean).join(' ')}`);
  });

  test('quiesce lets the calls in flight finish and starts no more; abort cancels what runs and drops what waits', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const started: number[] = [];
    const h = harness(10, {
      concurrency: 2,
      call: async (item, ctx) => {
        started.push(item.subjectId);
        if (item.subjectId <= 2) await held;
        else await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
        return 'ok';
      },
    });
    h.pool.push(items(10));
    let quiet = false;
    const quiescing = h.pool.quiesce().then(() => (quiet = true));
    for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(quiet, false, 'two calls still in flight');
    release();
    await quiescing;
    assert.deepEqual(started, [1, 2], 'nothing started after quiesce');
    assert.equal(h.pool.size, 8, 'the rest still waits');

    // A second pool, aborted with calls in flight.
    const g = harness(4, {
      concurrency: 2,
      call: (_item, ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true })),
    });
    g.pool.push(items(4));
    await new Promise((resolve) => setImmediate(resolve));
    g.controller.abort(new Error('run stopped'));
    g.pool.abort(new Error('run stopped'));
    await g.pool.onIdle();
    assert.equal(g.settled.size, 0, 'an aborted item has no outcome: it is left unfinished');
    assert.equal(g.pool.size, 0);
  });
});

describe("item pool with concurrency 'auto'", () => {
  test('calls at once follow the adaptive limit: an OverloadError halves it, and the retry waits for its Retry-After', async () => {
    let clock = 0;
    const limiter = new AdaptiveLimit({ max: 8, initial: 8, now: () => clock });
    let running = 0;
    let overLimit = 0;
    let limitAfterOverload: number | undefined;
    let overloadedAt: number | undefined;
    let retriedAfterMs: number | undefined;
    const h = harness(40, {
      concurrency: 'auto',
      limiter,
      retries: 1,
      call: async (item) => {
        running++;
        // Every call starts within the limit as it is then (calls started under a higher one end first).
        overLimit = Math.max(overLimit, running - limiter.limit);
        if (overloadedAt !== undefined) limitAfterOverload ??= limiter.limit;
        try {
          await new Promise((resolve) => setImmediate(resolve));
          clock += 1;
          if (item.subjectId === 1 && item.attempts === 1) {
            overloadedAt = performance.now();
            throw new OverloadError('busy', { retryAfterMs: 100 });
          }
          if (item.subjectId === 1) retriedAfterMs = performance.now() - overloadedAt!;
          return item.subjectId;
        } finally {
          running--;
        }
      },
    });
    assert.equal(h.pool.limit, 8);
    h.pool.push(items(40));
    await h.done;
    await h.pool.onIdle();
    assert.ok([...h.settled.values()].every((o) => o.ok));
    assert.equal(limitAfterOverload, 4, 'halved by the overload');
    assert.equal(overLimit, 0, 'no call started above the limit');
    assert.ok(retriedAfterMs !== undefined && retriedAfterMs >= 100, `retried after ${retriedAfterMs} ms`);
    assert.equal(limiter.inFlight, 0, 'every call reported its end');
  });

  test('a fixed concurrency has no limit to show', () => {
    const h = harness(1, { call: async () => 1 });
    assert.equal(h.pool.limit, undefined);
  });
});
