import type { RunProgress } from '../db/schema.ts';
import type { ActiveRun } from '../engine/engine.ts';
import { runEta, type Throughput } from '../engine/estimates.ts';
import { spanText } from '../lib/relative-time.ts';
import { showStatusLine } from '../lib/status-line.ts';

/**
 * Shows a foreground run's progress from the runner's own counters: a bar
 * redrawn in place on a terminal, a plain line every few seconds otherwise
 * (logs and pipes do not want carriage returns). The share done is of the
 * run's forecast; the time left comes from the run's own pace once it has
 * one, from `history` (past runs' pace) before.
 */
export function showProgress(run: ActiveRun, out: NodeJS.WriteStream, history: Throughput | null = null): () => void {
  const started = Date.now();
  const tty = out.isTTY === true;
  const steps = run.workflow.steps.map((s) => s.name);
  const line = () => {
    const progress = run.progress();
    let done = 0;
    let failed = 0;
    for (const p of Object.values(progress)) {
      done += p.done;
      failed += p.failed;
    }
    const total = Math.max(run.estimatedInteractions, done + failed);
    const elapsed = (Date.now() - started) / 1000;
    const eta = runEta({ forecast: run.expectedWork, progress, elapsedSeconds: elapsed, history });
    const percent = eta.percent === null ? '' : ` ${Math.floor(eta.percent)}%`;
    const left = eta.seconds !== null && eta.seconds > 0 ? ` · ~${spanText(eta.seconds)} left${eta.basis === 'history' ? ' (past runs)' : ''}` : '';
    const perStep = steps
      .filter((name) => progress[name])
      .map((name) => `${name} ${progress[name]!.done}`)
      .join(' · ')
      .concat(autoLimit(progress));
    const seconds = Math.round(elapsed);
    if (!tty) return `run #${run.id}: ${done + failed}/${total} interactions${percent} (${failed} failed) · ${perStep} · ${seconds}s${left}`;
    const width = 24;
    const filled = total === 0 ? width : Math.min(width, Math.round((width * (done + failed)) / total));
    return `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]${percent} ${done + failed}/${total} · ${perStep} · ${seconds}s${left}\x1b[K`;
  };
  // On a terminal the bar is a status line: a log line meanwhile is written above it, and the bar redrawn.
  let drawn = '';
  const draw = () => {
    drawn = line();
    out.write(drawn);
  };
  const release = tty ? showStatusLine({ clear: () => out.write('\r\x1b[K'), redraw: () => out.write(drawn) }) : () => {};
  const timer = setInterval(() => (tty ? draw() : out.write(`${line()}\n`)), tty ? 200 : 2_000);
  timer.unref();
  return () => {
    clearInterval(timer);
    release();
    if (tty) out.write(`${line()}\n`);
  };
}

/** concurrency 'auto': the limit the run has found (the same on every step), after the steps. */
function autoLimit(progress: RunProgress): string {
  const limit = Object.values(progress).find((p) => p.limit !== undefined)?.limit;
  return limit === undefined ? '' : ` · ${limit} at once (auto)`;
}
