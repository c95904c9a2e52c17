import type { ActiveRun } from '../engine/engine.ts';
import { showStatusLine } from '../lib/status-line.ts';

/**
 * Shows a foreground run's progress from the runner's own counters: a bar
 * redrawn in place on a terminal, a plain line every few seconds otherwise
 * (logs and pipes do not want carriage returns).
 */
export function showProgress(run: ActiveRun, out: NodeJS.WriteStream): () => void {
  const started = Date.now();
  const tty = out.isTTY === true;
  const line = () => {
    const progress = run.progress();
    let done = 0;
    let failed = 0;
    for (const p of Object.values(progress)) {
      done += p.done;
      failed += p.failed;
    }
    const total = Math.max(run.estimatedInteractions, done + failed);
    const seconds = Math.round((Date.now() - started) / 1000);
    const steps = Object.entries(progress)
      .map(([name, p]) => `${name} ${p.done}`)
      .join(' · ');
    if (!tty) return `run #${run.id}: ${done + failed}/${total} interactions (${failed} failed) · ${steps} · ${seconds}s`;
    const width = 24;
    const filled = total === 0 ? width : Math.round((width * (done + failed)) / total);
    return `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done + failed}/${total} · ${steps} · ${seconds}s\x1b[K`;
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
