import type { ExpectedWork, RunProgress } from '../db/schema.ts';
import type { PastRun } from '../db/queries/throughput.ts';

// How long work takes: a workflow's pace from its past runs, and a run's
// percentage and time left. Pure functions of counters, so every surface
// (the CLI's bar, the chat's run message, `plan`) says the same.

/** Items per second, per step and overall, over a workflow's latest completed batches. */
export interface Throughput {
  runs: number;
  perSecond: number;
  perStep: Record<string, number>;
}

/** How many past batches the pace is taken from. */
export const PACE_RUNS = 10;

export function throughputFrom(past: readonly PastRun[]): Throughput | null {
  let seconds = 0;
  let items = 0;
  const perStepItems: Record<string, number> = {};
  let runs = 0;
  for (const run of past) {
    if (!run.progress || !(run.seconds > 0)) continue;
    let runItems = 0;
    for (const [step, p] of Object.entries(run.progress)) {
      const n = p.done + p.failed;
      perStepItems[step] = (perStepItems[step] ?? 0) + n;
      runItems += n;
    }
    if (runItems === 0) continue;
    runs++;
    items += runItems;
    seconds += run.seconds;
  }
  if (runs === 0 || seconds <= 0) return null;
  const perStep: Record<string, number> = {};
  for (const [step, n] of Object.entries(perStepItems)) if (n > 0) perStep[step] = n / seconds;
  return { runs, perSecond: items / seconds, perStep };
}

/**
 * Seconds to do `work` at a past pace. Steps run side by side (every wave
 * feeds every step), and each step's past rate was measured over whole runs,
 * so the slowest step sets the time; a step never seen before goes at the
 * overall rate.
 */
export function secondsFor(work: ExpectedWork, pace: Throughput): number {
  let longest = 0;
  for (const [step, n] of Object.entries(work)) {
    if (n <= 0) continue;
    const rate = pace.perStep[step] ?? pace.perSecond;
    longest = Math.max(longest, n / rate);
  }
  return longest;
}

export interface Eta {
  /** Share of the forecast done (finished or failed), 0–100; null when nothing is expected. */
  percent: number | null;
  /** Seconds left; null when there is no rate to go by yet. */
  seconds: number | null;
  /** Where the rate came from: the run's own pace, or past runs' before it has one. */
  basis: 'run' | 'history' | null;
}

export function runEta(input: { forecast: ExpectedWork | null; progress: RunProgress | null; elapsedSeconds: number; history: Throughput | null }): Eta {
  const forecast = input.forecast ?? {};
  const progress = input.progress ?? {};
  let total = 0;
  let done = 0;
  const remaining: ExpectedWork = {};
  for (const [step, expected] of Object.entries(forecast)) {
    const p = progress[step];
    const finished = p ? p.done + p.failed : 0;
    total += expected;
    remaining[step] = Math.max(0, expected - finished);
  }
  for (const p of Object.values(progress)) done += p.done + p.failed;
  const percent = total > 0 ? Math.min(100, (100 * done) / total) : null;
  const left = Object.values(remaining).reduce((n, k) => n + k, 0);
  if (total > 0 && left === 0) return { percent, seconds: 0, basis: done > 0 ? 'run' : null };
  if (done > 0 && input.elapsedSeconds > 0) return { percent, seconds: left / (done / input.elapsedSeconds), basis: 'run' };
  if (input.history && total > 0) return { percent, seconds: secondsFor(remaining, input.history), basis: 'history' };
  return { percent, seconds: null, basis: null };
}
