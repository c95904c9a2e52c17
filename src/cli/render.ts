import { summariseProgress } from '../engine/engine.ts';
import { isActive } from '../db/run-states.ts';
import { formatDelta, formatNumber, formatWork, metricChanges, numeric, statusWords } from '../commands/format.ts';
import type { FailedItem } from '../engine/store.ts';
import { oneLine } from '../lib/one-line.ts';
import { personLabel } from '../lib/person.ts';
import { renderPlan, scheduleLine, whoamiLines } from '../commands/plan-text.ts';
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
      return `run #${result.view.id} started: ${describeRun(result.view)}\nexpected work: ${formatWork(result.run.expectedWork, result.view.steps)}${result.view.pendingAtStart ? ` (pending now: ${formatWork(result.view.pendingAtStart, result.view.steps)})` : ''}`;
    case 'run_queued':
      return result.view.status === 'queued'
        ? `run #${result.view.id} is still queued: no serving instance has taken it yet, and one will when it can: ${describeRun(result.view)}`
        : `run #${result.view.id} ${result.view.status === 'running' ? 'started' : statusWords(result.view)} on a serving instance: ${describeRun(result.view)}\nfollow it with: workflow status ${result.view.id}`;
    case 'run_finished':
      return renderSummary(result.view);
    case 'runs':
      return result.runs.length === 0 ? 'no runs are running' : result.runs.map(runLine).join('\n');
    case 'history':
      return result.runs.length === 0
        ? 'no runs yet'
        : result.runs.map((r) => `${runLine(r)}${r.delta ? `  Δ ${formatDelta(r.delta, r.metricNames)}` : ''}`).join('\n');
    case 'run':
      return `${renderSummary(result.run)}\n\naudit record:\n${JSON.stringify(result.audit, null, 2)}`;
    case 'stop':
      return result.message;
    case 'workflows':
      return result.workflows
        .map(
          (w) =>
            `${w.id} ${w.name} (${w.subject}s): ${w.steps.join(' → ')}${continuousNote(w)}\n  pending: ${formatWork(w.pending, w.steps)}${w.running.length ? `\n  running: ${w.running.map((id) => `#${id}`).join(', ')}` : ''}`,
        )
        .join('\n');
    case 'health':
      return result.limited
        ? `refused: ${result.limited.message}\nno pass now; the latest findings:\n${renderHealth(result.report, false)}`
        : renderHealth(result.report);
    case 'plan':
      return renderPlan(result.plan);
    case 'whoami':
      return whoamiLines(result.whoami).join('\n');
    case 'force_request':
      return result.outcome === 'filed' ? result.message.replace(/`/g, '') : result.message;
    case 'schedules':
      return result.schedules.length === 0
        ? "no workflow is scheduled (a module's `schedule`, or WORKFLOW_SCHEDULES)"
        : result.schedules.map((s) => scheduleLine(s)).join('\n');
  }
}

/**
 * `workflow health`: the monitor's findings after the pass it just made, or
 * (`passedHere` false: refused a pass) the latest pass's, made by `lastPassBy`.
 */
export function renderHealth(report: HealthReport, passedHere = true): string {
  const who = report.active
    ? `active on this instance (${report.instanceId})`
    : report.activeInstance
      ? `standby; active on ${report.activeInstance}`
      : `no serving instance is monitoring${passedHere ? '; this pass ran here' : ''}`;
  const lines = [
    `health monitor: ${who}`,
    `last pass: ${report.lastPassAt ?? 'never'}${report.lastPassBy ? ` on instance ${report.lastPassBy}` : ''} (every ${report.intervalMs / 1000} s; runs silent over ${report.staleAfterMs / 1000} s are checked)`,
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
  return `workflow ${run.workflowId}${run.workflowName ? ` (${run.workflowName})` : ''}, ${run.mode}${scope}${resumes}, requested by ${personLabel(run.requestedBy)}${forced}`;
}

export function runLine(run: RunView): string {
  const progress = run.progress ? ` — ${summariseProgress(run.progress, run.steps)}` : '';
  const when = run.startedAt ?? '';
  return `#${run.id} ${statusWords(run).padEnd(9)} workflow ${run.workflowId} ${run.mode} by ${personLabel(run.requestedBy)} ${when}${progress}`;
}

/** The audit summary a run ends with: status in words, duration, counts, the metrics it changed, then those it did not. */
export function renderSummary(run: RunView): string {
  const lines = [
    `run #${run.id} ${statusWords(run)}${run.durationSeconds !== null ? ` in ${run.durationSeconds.toFixed(1)} s` : ''} — ${describeRun(run)}`,
    interactionsLine(run),
  ];
  if (run.status === 'completed' && run.interactionsCompleted + run.interactionsFailed === 0) lines.push('no pending work: nothing to do');
  if (run.takenOverByRunId !== null) lines.push(`replaced by run #${run.takenOverByRunId}, which carries on with the unfinished work`);
  if (run.forcedBy) lines.push(`forced by ${personLabel(run.forcedBy)}${run.forcedRunId ? ` over run #${run.forcedRunId}` : ''}`);
  if (run.error) lines.push(`${run.endedReason === 'refused' ? 'refused' : 'error'}: ${run.error}`);
  if (run.stateBefore) lines.push(metricsTable(run));
  return lines.join('\n');
}

/**
 * A run's interaction counters are written when it ends; until then its
 * progress (the owner's heartbeat, its participants' work included) is what
 * it has done so far.
 */
function interactionsLine(run: RunView): string {
  if (!isActive(run.status) || !run.progress) return `interactions: ${run.interactionsCompleted} done, ${run.interactionsFailed} failed`;
  const steps = Object.values(run.progress);
  const done = steps.reduce((n, p) => n + p.done, 0);
  const failed = steps.reduce((n, p) => n + p.failed, 0);
  return `interactions so far: ${done} done, ${failed} failed (${summariseProgress(run.progress, run.steps)})`;
}

/** Changed metrics as a table (before, after, delta), in the declared order; the unchanged ones on one line after it. */
export function metricsTable(run: Pick<RunView, 'metricNames' | 'stateBefore' | 'stateAfter' | 'delta'>): string {
  const { changed, unchanged } = metricChanges(run);
  const before = run.stateBefore ?? {};
  const after = run.stateAfter;
  const rows: string[] = [];
  if (changed.length) {
    const width = Math.max(6, ...changed.map((n) => n.length));
    const cell = (v: unknown, signed = false) => formatNumber(numeric(v), signed).padStart(10);
    rows.push(`${'metric'.padEnd(width)} ${'before'.padStart(10)} ${'after'.padStart(10)} ${'delta'.padStart(10)}`);
    for (const name of changed) rows.push(`${name.padEnd(width)} ${cell(before[name])} ${cell(after?.[name])} ${cell(run.delta?.[name], true)}`);
  }
  if (unchanged.length) {
    rows.push(`unchanged: ${unchanged.map((name) => `${name} ${formatNumber(numeric(after?.[name]) ?? numeric(before[name]))}`).join(', ')}`);
  }
  return rows.join('\n');
}

/** A finished run's first failed items with their errors, after its summary. */
export function renderFailures(run: RunView, failures: readonly FailedItem[]): string {
  const more = run.interactionsFailed - failures.length;
  return [
    `failed items${more > 0 ? ` (the first ${failures.length} of ${run.interactionsFailed})` : ''}:`,
    ...failures.map((f) => `  ${f.step} · subject ${f.subjectId}: ${oneLine(f.error ?? 'no error recorded', { max: 300 })}`),
  ].join('\n');
}
