// The limit of `concurrency: 'auto'`: how many handler calls a run lets run at
// once, found from the calls' latency the way TCP Vegas finds a link's window
// (and Netflix's concurrency-limits Vegas/Gradient2 and Envoy's adaptive
// concurrency filter find a server's): while latency stays at its no-load
// level, more calls at once means more throughput, so the limit goes up; once
// calls start waiting in the server's queue, latency grows in proportion to
// the excess (limit / capacity), so the limit goes back to about
// limit ÷ (latency / no-load latency), the capacity. An overload reported by a
// handler (429, 503, a timeout) halves it at once.
//
// No npm library does this for a promise pool: the adaptive ones limit
// request rate (bottleneck) or trip a breaker (opossum, cockatiel), and none
// takes latency samples per kind of call, which a run of several steps needs.
//
// How it decides, per window of samples:
// - A window is enough answered calls to average out one call's noise: at
//   least the limit (about one round of calls), at least MIN_WINDOW, and more
//   when calls vary a lot (see windowSize); and at least as long as the
//   slowest step's no-load latency, so that a burst of fast calls alone never
//   decides. Calls started before the limit last changed are not counted:
//   they ran under the old limit.
// - Latency is compared step by step: a run's steps can take microseconds
//   (local code) or seconds (a model), so each step's window mean is divided
//   by that step's own no-load latency, and the steps are combined weighted by
//   their time, so a step of local code weighs nothing. A step's no-load
//   latency is the lowest of its last BASELINE_WINDOWS window means: since the
//   limit keeps returning to about the capacity, recent windows include
//   unqueued ones.
// - ratio > 1 + tolerance: calls queue at the server; limit ÷ ratio.
//   ratio < 1 + tolerance/2, and the limit was used in full: one more step up
//   (doubling until the first sign of queueing, then √limit/2 at a time).
//   In between: hold.
//
// Time comes from an injected clock, so tests drive it without waiting.

/** Answers to average before a decision, at least. */
const MIN_WINDOW = 6;
/** ... and at most, however noisy the calls (a window must end in reasonable time). */
const MAX_WINDOW = 200;
/** Enough samples that a window's mean is within this share of the truth (one standard error). */
const NOISE_TARGET = 0.1;
/** Window means kept per step for its no-load latency. */
const BASELINE_WINDOWS = 10;
/** Latency this much above no-load means queueing (raised for noisy calls). */
const TOLERANCE = 0.2;
/** What an overload leaves of the limit. */
const OVERLOAD_FACTOR = 0.5;
/**
 * Latencies below this count as this: under a millisecond a call's time is
 * the event loop's scheduling, not the service's queue.
 */
const FLOOR_MS = 1;

export interface AdaptiveLimitOptions {
  /** The most calls at once (the workflow's maxConcurrency). */
  max: number;
  /** Default 1. */
  min?: number;
  /** Default `min`: start from no queueing, so the first windows measure the no-load latency. */
  initial?: number;
  /** Milliseconds, monotonic. Default performance.now. */
  now?: () => number;
}

/** Why the limit last changed, for logs and tests. */
export type LimitChange = 'probe' | 'increase' | 'latency' | 'overload';

interface StepWindow {
  n: number;
  sum: number;
  sumSq: number;
  /** Means of the last windows, oldest first. */
  means: number[];
}

export class AdaptiveLimit {
  readonly min: number;
  readonly max: number;
  #limit: number;
  readonly #now: () => number;
  #inFlight = 0;
  /** Most calls in flight at once during this window. */
  #busiest = 0;
  /** When the limit last changed: calls started before say nothing about it. */
  #since: number;
  #steps = new Map<string, StepWindow>();
  #samples = 0;
  #windowStart: number;
  /** The slowest step's no-load latency: the shortest a window may last. */
  #slowest = 0;
  /** No queueing seen yet: double instead of stepping (slow start). */
  #probing = true;
  /** One call's relative spread around its step's mean, smoothed over windows. */
  #noise = 0;
  #lastChange: LimitChange | undefined;
  #lastRatio: number | undefined;

  constructor(options: AdaptiveLimitOptions) {
    this.min = Math.max(1, Math.floor(options.min ?? 1));
    this.max = Math.max(this.min, Math.floor(options.max));
    this.#limit = clamp(Math.floor(options.initial ?? this.min), this.min, this.max);
    this.#now = options.now ?? (() => performance.now());
    this.#since = this.#now();
    this.#windowStart = this.#since;
  }

  get limit(): number {
    return this.#limit;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** The last decision and the latency ratio it saw (for logs). */
  get last(): { change: LimitChange | undefined; ratio: number | undefined } {
    return { change: this.#lastChange, ratio: this.#lastRatio };
  }

  /** A call starts; hand the returned time back with its outcome. */
  start(): number {
    this.#inFlight++;
    if (this.#inFlight > this.#busiest) this.#busiest = this.#inFlight;
    return this.#now();
  }

  /** A call answered (its value was accepted or not): its latency is a sample of `step`. */
  answered(startedAt: number, step: string): void {
    this.#inFlight--;
    if (startedAt < this.#since) return;
    const now = this.#now();
    const rtt = Math.max(FLOOR_MS, now - startedAt);
    let window = this.#steps.get(step);
    if (!window) this.#steps.set(step, (window = { n: 0, sum: 0, sumSq: 0, means: [] }));
    window.n++;
    window.sum += rtt;
    window.sumSq += rtt * rtt;
    if (++this.#samples >= this.windowSize() && now - this.#windowStart >= this.#slowest) this.#decide();
  }

  /** The service said it is overloaded (429, 503, a timeout): halve the limit, once per change. */
  overloaded(startedAt: number): void {
    this.#inFlight--;
    // Calls that went out before the last change were sent under a higher
    // limit: their overloads are the one already reacted to.
    if (startedAt < this.#since) return;
    this.#probing = false;
    this.#set(Math.floor(this.#limit * OVERLOAD_FACTOR), 'overload');
  }

  /** A call ended without telling anything about the service (it failed on its own, or the run stopped it). */
  released(): void {
    this.#inFlight--;
  }

  /** Answers that make up the current window. */
  windowSize(): number {
    const forNoise = Math.ceil((this.#noise / NOISE_TARGET) ** 2);
    return Math.max(MIN_WINDOW, this.#limit, Math.min(MAX_WINDOW, forNoise));
  }

  #decide(): void {
    let observed = 0;
    let expected = 0;
    let deviation = 0;
    let magnitude = 0;
    this.#slowest = 0;
    for (const window of this.#steps.values()) {
      if (window.n === 0) continue;
      const mean = window.sum / window.n;
      window.means.push(mean);
      if (window.means.length > BASELINE_WINDOWS) window.means.shift();
      const base = Math.min(...window.means);
      if (base > this.#slowest) this.#slowest = base;
      observed += window.sum;
      expected += base * window.n;
      deviation += Math.max(0, window.sumSq - window.n * mean * mean);
      magnitude += window.n * mean * mean;
    }
    const samples = this.#samples;
    this.#resetWindow();
    if (expected <= 0) return;
    const ratio = observed / expected;
    const cv = magnitude > 0 ? Math.sqrt(deviation / magnitude) : 0;
    this.#noise = this.#noise === 0 ? cv : 0.7 * this.#noise + 0.3 * cv;
    const tolerance = Math.max(TOLERANCE, (3 * cv) / Math.sqrt(samples));
    this.#lastRatio = ratio;
    if (ratio > 1 + tolerance) {
      this.#probing = false;
      this.#set(Math.floor(this.#limit / ratio), 'latency');
    } else if (ratio < 1 + tolerance / 2 && this.#busiest >= this.#limit) {
      const up = this.#probing ? this.#limit * 2 : this.#limit + Math.max(1, Math.floor(Math.sqrt(this.#limit) / 2));
      this.#set(up, this.#probing ? 'probe' : 'increase');
    }
    this.#busiest = this.#inFlight;
  }

  #set(limit: number, why: LimitChange): void {
    const next = clamp(limit, this.min, this.max);
    this.#lastChange = why;
    if (next === this.#limit) return;
    this.#limit = next;
    this.#since = this.#now();
    this.#resetWindow();
    this.#busiest = this.#inFlight;
  }

  #resetWindow(): void {
    this.#samples = 0;
    this.#windowStart = this.#now();
    for (const window of this.#steps.values()) {
      window.n = 0;
      window.sum = 0;
      window.sumSq = 0;
    }
  }
}

function clamp(n: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, n));
}
