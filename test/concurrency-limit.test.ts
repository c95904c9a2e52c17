// The adaptive limit of `concurrency: 'auto'` (src/engine/concurrency-limit.ts),
// driven by an injected clock: its rules one by one, then against a simulated
// model server (C calls served at once, 200 ms each, the rest queued in order,
// 503 past a queue of 2C), advanced millisecond by millisecond without waiting.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AdaptiveLimit } from '../src/engine/concurrency-limit.ts';

class Clock {
  t = 0;
  now = () => this.t;
}

/** `n` calls of `ms` each, started together and answered together. */
function round(limiter: AdaptiveLimit, clock: Clock, n: number, ms: number, step = 'model'): void {
  const started = Array.from({ length: n }, () => limiter.start());
  clock.t += ms;
  for (const at of started) limiter.answered(at, step);
}

describe('AdaptiveLimit rules', () => {
  test('starts at its minimum and doubles while latency stays flat and the limit is used', () => {
    const clock = new Clock();
    const limiter = new AdaptiveLimit({ max: 64, now: clock.now });
    assert.equal(limiter.limit, 1);
    const seen = [limiter.limit];
    for (let i = 0; i < 200 && limiter.limit < 64; i++) {
      round(limiter, clock, limiter.limit, 200);
      if (limiter.limit !== seen.at(-1)) seen.push(limiter.limit);
    }
    assert.deepEqual(seen, [1, 2, 4, 8, 16, 32, 64]);
    assert.equal(limiter.last.change, 'probe');
  });

  test('comes back to limit ÷ (latency / no-load latency) when calls queue, then steps up by √limit/2', () => {
    const clock = new Clock();
    const limiter = new AdaptiveLimit({ max: 100, initial: 1, now: clock.now });
    // No-load latency 200 ms, learnt at 1; doubling to 8, 16.
    while (limiter.limit < 16) round(limiter, clock, limiter.limit, 200);
    // A capacity of 8: 16 at once take twice as long.
    round(limiter, clock, 16, 400);
    assert.equal(limiter.limit, 8);
    assert.equal(limiter.last.change, 'latency');
    round(limiter, clock, 8, 200);
    assert.equal(limiter.limit, 9, 'after the first sign of queueing it steps, no longer doubles');
    assert.equal(limiter.last.change, 'increase');
  });

  test('an overload halves the limit once: overloads of calls sent under the old limit are not counted again', () => {
    const clock = new Clock();
    const limiter = new AdaptiveLimit({ max: 64, initial: 16, now: clock.now });
    const started = Array.from({ length: 16 }, () => limiter.start());
    clock.t += 10;
    limiter.overloaded(started[0]!);
    assert.equal(limiter.limit, 8);
    for (const at of started.slice(1)) limiter.overloaded(at);
    assert.equal(limiter.limit, 8);
    assert.equal(limiter.inFlight, 0);
    const next = limiter.start();
    clock.t += 10;
    limiter.overloaded(next);
    assert.equal(limiter.limit, 4, 'a call sent after the change reports a new overload');
  });

  test('answers of calls sent before a change are not samples of the new limit', () => {
    const clock = new Clock();
    const limiter = new AdaptiveLimit({ max: 64, initial: 8, now: clock.now });
    const old = Array.from({ length: 8 }, () => limiter.start());
    clock.t += 1;
    limiter.overloaded(limiter.start()); // 8 → 4
    assert.equal(limiter.limit, 4);
    clock.t += 5_000; // very slow answers, all from before the change
    for (const at of old) limiter.answered(at, 'model');
    assert.equal(limiter.limit, 4);
    assert.equal(limiter.windowSize() > 0, true);
  });

  test('does not raise a limit it does not use (too little work to tell)', () => {
    const clock = new Clock();
    const limiter = new AdaptiveLimit({ max: 64, initial: 8, now: clock.now });
    for (let i = 0; i < 20; i++) round(limiter, clock, 3, 200);
    assert.equal(limiter.limit, 8);
  });

  test('steps are compared with their own no-load latency, weighted by time: a step of local code does not hold the limit down', () => {
    const clock = new Clock();
    const limiter = new AdaptiveLimit({ max: 64, initial: 1, now: clock.now });
    for (let i = 0; i < 100 && limiter.limit < 32; i++) {
      // Each round: the model calls at 200 ms, then as many local calls whose
      // time varies 50-fold (0.01 to 0.5 ms) with nothing queued anywhere.
      round(limiter, clock, limiter.limit, 200, 'model');
      for (let k = 0; k < limiter.limit; k++) round(limiter, clock, 1, k % 2 === 0 ? 0.01 : 0.5, 'local');
    }
    assert.equal(limiter.limit >= 32, true, `limit ${limiter.limit}`);
  });

  test('released calls free their slot and give no sample', () => {
    const clock = new Clock();
    const limiter = new AdaptiveLimit({ max: 8, initial: 2, now: clock.now });
    limiter.start();
    limiter.start();
    clock.t += 10_000;
    limiter.released();
    limiter.released();
    assert.equal(limiter.inFlight, 0);
    assert.equal(limiter.limit, 2);
  });

  test('stays within [min, max]', () => {
    const clock = new Clock();
    const limiter = new AdaptiveLimit({ max: 3, min: 2, now: clock.now });
    assert.equal(limiter.limit, 2);
    for (let i = 0; i < 50; i++) round(limiter, clock, limiter.limit, 200);
    assert.equal(limiter.limit, 3);
    for (let i = 0; i < 5; i++) limiter.overloaded(limiter.start());
    assert.equal(limiter.limit, 2);
  });
});

// ---- against a simulated model server ----------------------------------------

interface Simulation {
  /** Completions per second, by second. */
  perSecond: number[];
  /** Time each call waited in the server's queue, with the second it was sent in. */
  waits: { at: number; ms: number }[];
  /** Second of each 503. */
  rejected: number[];
  /** The limit at the end of each second. */
  limits: number[];
}

/**
 * A client that always has work and keeps `limit` calls in flight, against a
 * server serving `capacity(t)` calls at once for `serviceMs` each, queueing
 * the rest in order, and answering 503 past a queue of 2 × capacity.
 */
function simulate(options: { seconds: number; capacity: (ms: number) => number; max: number; serviceMs?: number }): Simulation {
  const serviceMs = options.serviceMs ?? 200;
  const clock = new Clock();
  const limiter = new AdaptiveLimit({ max: options.max, now: clock.now });
  const serving: { startedAt: number; endsAt: number }[] = [];
  const queue: { startedAt: number; queuedAt: number }[] = [];
  const result: Simulation = { perSecond: [], waits: [], rejected: [], limits: [] };
  for (let t = 0; t < options.seconds * 1000; t++) {
    clock.t = t;
    const second = Math.floor(t / 1000);
    result.perSecond[second] ??= 0;
    for (let i = serving.length - 1; i >= 0; i--) {
      if (serving[i]!.endsAt > t) continue;
      limiter.answered(serving[i]!.startedAt, 'model');
      serving.splice(i, 1);
      result.perSecond[second]!++;
    }
    const capacity = options.capacity(t);
    while (serving.length < capacity && queue.length > 0) {
      const call = queue.shift()!;
      result.waits.push({ at: Math.floor(call.startedAt / 1000), ms: t - call.queuedAt });
      serving.push({ startedAt: call.startedAt, endsAt: t + serviceMs });
    }
    while (limiter.inFlight < limiter.limit) {
      const startedAt = limiter.start();
      if (serving.length < capacity) {
        result.waits.push({ at: second, ms: 0 });
        serving.push({ startedAt, endsAt: t + serviceMs });
      } else if (queue.length < 2 * capacity) {
        queue.push({ startedAt, queuedAt: t });
      } else {
        result.rejected.push(second);
        limiter.overloaded(startedAt);
      }
    }
    if (t % 1000 === 999) result.limits[second] = limiter.limit;
  }
  return result;
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/** The bench's bounds over seconds [from, to): throughput ≥ 90% of C / 0.2 s, median queueing ≤ half the service time, no 503. */
function assertWithinBounds(sim: Simulation, capacity: number, from: number, to: number): void {
  const ideal = capacity / 0.2;
  const rate = sim.perSecond.slice(from, to).reduce((a, b) => a + b, 0) / (to - from);
  const waits = sim.waits.filter((w) => w.at >= from && w.at < to).map((w) => w.ms);
  const limits = sim.limits.slice(from, to).join(',');
  assert.ok(rate >= 0.9 * ideal, `C=${capacity}, seconds ${from}-${to}: ${rate.toFixed(1)}/s, ideal ${ideal}/s (limits ${limits})`);
  assert.ok(median(waits) <= 100, `C=${capacity}, seconds ${from}-${to}: median queueing ${median(waits)} ms (limits ${limits})`);
  const late = sim.rejected.filter((s) => s >= from && s < to);
  assert.equal(late.length, 0, `C=${capacity}: 503 in seconds ${late.join(',')} (limits ${limits})`);
}

describe('AdaptiveLimit against a simulated model server', () => {
  for (const capacity of [1, 2, 8, 32]) {
    test(`capacity ${capacity}: within bounds from 10 s on`, () => {
      const sim = simulate({ seconds: 60, capacity: () => capacity, max: 128 });
      assertWithinBounds(sim, capacity, 10, 60);
    });
  }

  test('capacity falling from 8 to 2 at 30 s: within bounds again 10 s later', () => {
    const sim = simulate({ seconds: 80, capacity: (t) => (t < 30_000 ? 8 : 2), max: 64 });
    assertWithinBounds(sim, 8, 10, 30);
    assertWithinBounds(sim, 2, 40, 80);
  });

  test('capacity rising from 2 to 16 at 30 s: found again within 10 s', () => {
    const sim = simulate({ seconds: 80, capacity: (t) => (t < 30_000 ? 2 : 16), max: 64 });
    assertWithinBounds(sim, 2, 10, 30);
    assertWithinBounds(sim, 16, 40, 80);
  });

  test('never above maxConcurrency, even with room to spare', () => {
    const sim = simulate({ seconds: 30, capacity: () => 64, max: 6 });
    assert.ok(Math.max(...sim.limits) <= 6, `limits ${sim.limits.join(',')}`);
    assert.deepEqual(new Set(sim.limits.slice(10)), new Set([6]));
  });
});
