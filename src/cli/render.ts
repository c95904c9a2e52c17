import type { Metrics } from '../db/schema.ts';
import { summariseProgress } from '../engine/engine.ts';
import { formatDelta, formatNumber, formatWork, numeric } from '../commands/format.ts';
import type { CommandResult, RunFinished, RunView, WorkflowView } from '../commands/results.ts';
import type { HealthReport } from '../engine/monitor.ts';

// Results as terminal text. Plain functions of data, so tests read them
// directly and the console chat can reuse them.

export function renderResult(result: CommandResult | RunFinished): string {
  switch (result.kind) {
    case 'invalid':
      return `error: ${result.message}\n\n${result.usage}`;
    case 'not_found':
      return `error: ${result.message}`;
    case 'refused':
      return `refused: ${result.message}${result.running ? `\n${runLine(result.running)}` : ''}`;
    case 'help':
      return result.text;
    case 'done':
      return result.message;
    case 'run_started':
      return `run #${result.view.id} started: ${describeRun(result.view)}\nexpected work: ${formatWork(result.run.expectedWork)}`;
    case 'run_queued':
      return `run #${result.view.id} queued for a serving instance: ${describeRun(result.view)}`;
    case 'run_finished':
      return renderSummary(result.view);
    case 'runs':
      return result.runs.length === 0 ? 'no runs are running' : result.runs.map(runLine).join('\n');
    case 'history':
      return result.runs.length === 0 ? 'no runs yet' : result.runs.map((r) => `${runLine(r)}${r.delta ? `  Δ ${formatDelta(r.delta)}` : ''}`).join('\n');
    case 'run':
      return `${renderSummary(result.run)}\n\naudit record:\n${JSON.stringify(result.audit, null, 2)}`;
    case 'stop':
      return result.message;
    case 'workflows':
      return result.workflows
        .map(
          (w) =>
            `${w.id} ${w.name} (${w.subject}s): ${w.steps.join(' → ')}${continuousNote(w)}\n  pending: ${formatWork(w.pending)}${w.running.length ? `\n  running: ${w.running.map((id) => `#${id}`).join(', ')}` : ''}`,
        )
        .join('\n');
    case 'health':
      return renderHealth(result.report);
  }
}

/** `workflow health`: the monitor's findings after the pass it just made. */
export function renderHealth(report: HealthReport): string {
  const who = report.active
    ? `active on this instance (${report.instanceId})`
    : report.activeInstance
      ? `standby; active on ${report.activeInstance}`
      : 'no serving instance is monitoring; this pass ran here';
  const lines = [
    `health monitor: ${who}`,
    `last pass: ${report.lastPassAt ?? 'never'} (every ${report.intervalMs / 1000} s; runs silent over ${report.staleAfterMs / 1000} s are checked)`,
  ];
  for (const r of report.recovered) {
    lines.push(
      `recovered: run #${r.runId} (workflow ${r.workflowId}) marked abandoned — silent ${r.silentSeconds} s, lock free; its claims released, ${r.interactionsReleased} unfinished interactions left pending`,
    );
  }
  for (const r of report.stuck) {
    lines.push(
      `stuck: run #${r.runId} (workflow ${r.workflowId}) silent ${r.silentSeconds} s while its owner${r.ownerInstance ? ` ${r.ownerInstance}` : ''} holds its lock (not recovered)`,
    );
  }
  for (const o of report.orphans) {
    lines.push(
      `orphaned claims: run #${o.runId} (workflow ${o.workflowId}, ${o.status}) still held ${o.claims}: released, ${o.interactionsReleased} unfinished interactions left pending`,
    );
  }
  if (report.recovered.length + report.stuck.length + report.orphans.length === 0) lines.push('nothing to fix: no stale runs, no orphaned claims');
  if (report.error) lines.push(`error: the pass failed: ${report.error}`);
  if (report.services.length === 0) lines.push('services: none declared');
  for (const s of report.services) {
    const state = s.up === null ? 'not probed' : s.up ? `up (${s.latencyMs} ms)` : `DOWN since ${s.since}: ${s.error}`;
    lines.push(`service ${s.name}: ${state} — used by workflow ${s.workflows.join(', ')}`);
  }
  return lines.join('\n');
}

/** `workflows`: whether new work starts runs by itself (continuous), and whether an operator paused that. */
export function continuousNote(w: WorkflowView): string {
  if (!w.continuous) return '';
  return w.paused ? ` [continuous, paused${w.paused.by ? ` by ${w.paused.by}` : ''}${w.paused.at ? ` at ${w.paused.at}` : ''}]` : ' [continuous]';
}

export function describeRun(run: RunView): string {
  const scope = run.subjectId !== null ? ` subject ${run.subjectId}` : '';
  const resumes = run.resumesRunId !== null ? ` resuming #${run.resumesRunId}` : '';
  const forced = run.forcedRunId !== null ? ` (forced over #${run.forcedRunId})` : '';
  return `workflow ${run.workflowId}${run.workflowName ? ` (${run.workflowName})` : ''}, ${run.mode}${scope}${resumes}, requested by ${run.requestedBy}${forced}`;
}

export function runLine(run: RunView): string {
  const progress = run.progress ? ` — ${summariseProgress(run.progress)}` : '';
  const when = run.startedAt ?? '';
  return `#${run.id} ${run.status.padEnd(9)} workflow ${run.workflowId} ${run.mode} by ${run.requestedBy} ${when}${progress}`;
}

/** The audit summary a run ends with: status, duration, counts, state before → after with the delta. */
export function renderSummary(run: RunView): string {
  const lines = [
    `run #${run.id} ${run.status}${run.durationSeconds !== null ? ` in ${run.durationSeconds.toFixed(1)} s` : ''} — ${describeRun(run)}`,
    `interactions: ${run.interactionsCompleted} done, ${run.interactionsFailed} failed`,
  ];
  if (run.status === 'completed' && run.interactionsCompleted + run.interactionsFailed === 0) lines.push('no pending work: nothing to do');
  if (run.stoppedBy) lines.push(`stopped by ${run.stoppedBy}${run.takenOverByRunId ? ` (taken over by run #${run.takenOverByRunId})` : ''}`);
  if (run.forcedBy) lines.push(`forced by ${run.forcedBy}${run.forcedRunId ? ` over run #${run.forcedRunId}` : ''}`);
  if (run.error) lines.push(`error: ${run.error}`);
  if (run.stateBefore) lines.push(metricsTable(run.stateBefore, run.stateAfter, run.delta));
  return lines.join('\n');
}

export function metricsTable(before: Metrics, after: Metrics | null, delta: Metrics | null): string {
  const names = Object.keys(before);
  const width = Math.max(6, ...names.map((n) => n.length));
  const cell = (v: unknown, signed = false) => formatNumber(numeric(v), signed).padStart(10);
  const rows = [`${'metric'.padEnd(width)} ${'before'.padStart(10)} ${'after'.padStart(10)} ${'delta'.padStart(10)}`];
  for (const name of names) rows.push(`${name.padEnd(width)} ${cell(before[name])} ${cell(after?.[name])} ${cell(delta?.[name], true)}`);
  return rows.join('\n');
}
