import type { HealthReport, MonitorEvent } from '../../engine/monitor.ts';
import { truncate } from '../../lib/truncate.ts';
import { code, context, esc, formatDuration, formatTime, linesBlocks, message, type Message, section } from './primitives.ts';

// The health monitor: its report (`workflow health`) and the alerts the
// active monitor posts to the notify channel.

/**
 * `workflow health`: who monitors, what the last pass fixed or found, and each
 * external service; when `limited` (a pass started on the database within the
 * interval), why no pass was made now and when the next is allowed, above the
 * latest findings.
 */
export function healthMessage(report: HealthReport, limited?: { message: string; nextAllowedAt: string }, now: Date = new Date()): Message {
  const who = report.active
    ? `active on this instance (${code(report.instanceId, 60)})`
    : report.activeInstance
      ? `standby; active on ${code(report.activeInstance, 60)}`
      : 'no instance is monitoring (start one with `workflow serve`)';
  const fixed: string[] = [];
  for (const r of report.recovered) {
    fixed.push(
      `⚠️ run #${r.runId} (workflow ${r.workflowId}) marked *abandoned*: silent ${formatDuration(r.silentSeconds)} with its lock free; its claims released, ${r.interactionsReleased} unfinished interaction${r.interactionsReleased === 1 ? '' : 's'} left pending`,
    );
  }
  for (const r of report.stuck) {
    fixed.push(
      `🐢 run #${r.runId} (workflow ${r.workflowId}) *stuck*: silent ${formatDuration(r.silentSeconds)} while its owner${r.ownerInstance ? ` ${code(r.ownerInstance, 60)}` : ''} holds its lock (not recovered)`,
    );
  }
  for (const o of report.orphans) fixed.push(`♻️ ${orphanLine(o)}`);
  if (report.error) fixed.push(`❌ the pass failed: ${esc(truncate(report.error, 500))}`);
  const services = report.services.map(serviceLine);
  const summary = `health: ${report.recovered.length} run(s) recovered, ${report.services.filter((s) => s.up === false).length} service(s) down`;
  const when =
    limited && `${formatTime(limited.nextAllowedAt)} (in ${formatDuration(Math.max(0, (Date.parse(limited.nextAllowedAt) - now.getTime()) / 1000))})`;
  return message(limited ? `⏱️ no health pass now; the latest findings: ${summary}` : summary, [
    ...(limited ? [section(`⏱️ *Rate limited.* ${esc(truncate(limited.message, 1_500))}\nThe next pass is allowed ${when}. The latest findings:`)] : []),
    section(`🩺 *Health monitor* ${who}
last pass ${report.lastPassAt ? formatTime(report.lastPassAt) : 'never'}${report.lastPassBy ? ` on ${code(report.lastPassBy, 60)}` : ''}; every ${formatDuration(report.intervalMs / 1000)}, runs silent over ${formatDuration(report.staleAfterMs / 1000)} are checked`),
    ...linesBlocks(fixed.length ? fixed : ['✅ nothing to fix: no stale runs, no orphaned claims'], 10, 'findings'),
    ...(services.length ? linesBlocks(services, 8, 'services') : [context(['no external services declared'])]),
  ]);
}

/** Claims an ended run still held (the health monitor releases them). */
export function orphanLine(o: HealthReport['orphans'][number]): string {
  return `run #${o.runId} (workflow ${o.workflowId}, ${o.status}) still held ${o.claims} claim${o.claims === 1 ? '' : 's'}: released, ${o.interactionsReleased} unfinished interaction${o.interactionsReleased === 1 ? '' : 's'} left pending`;
}

function serviceLine(s: HealthReport['services'][number]): string {
  const used = `workflow${s.workflows.length === 1 ? '' : 's'} ${s.workflows.join(', ')}`;
  if (s.up === null) return `❔ ${code(s.name, 60)} not probed yet (${used})`;
  if (s.up) return `🟢 ${code(s.name, 60)} up${s.latencyMs !== null ? ` (${s.latencyMs} ms)` : ''} (${used})`;
  return `🔴 ${code(s.name, 60)} *down*${s.since ? ` since ${formatTime(s.since)}` : ''}: ${esc(truncate(s.error ?? 'no answer', 300))} (${used})`;
}

/** What the active monitor announces to the notify channel (and the console prints). */
export function monitorEventMessage(event: MonitorEvent): Message {
  switch (event.type) {
    case 'recovered': {
      const runs = event.runs.map(
        (r) =>
          `run #${r.runId} (workflow ${r.workflowId}): owner gone, marked abandoned, ${r.interactionsReleased} unfinished interaction${r.interactionsReleased === 1 ? '' : 's'} left pending`,
      );
      runs.push(...event.orphans.map(orphanLine));
      const summary = event.runs.length ? `recovered ${event.runs.length} abandoned run${event.runs.length === 1 ? '' : 's'}` : 'released orphaned claims';
      return message(
        `🩺 Health monitor ${summary}`,
        [
          section(`🩺 *Health monitor ${summary}*`),
          ...linesBlocks(
            runs.map((line) => `• ${esc(line)}`),
            8,
            'runs',
          ),
          context([`Resume with \`run <workflow> --mode single_run --run <id>\`, or the next batch picks the work up.`]),
        ],
        false,
      );
    }
    case 'stuck':
      return message(
        `🐢 Run #${event.run.runId} looks stuck`,
        [
          section(
            `🐢 *Run #${event.run.runId}* (workflow ${event.run.workflowId}) has not sent a heartbeat for ${formatDuration(event.run.silentSeconds)}, but its owner${event.run.ownerInstance ? ` ${code(event.run.ownerInstance, 60)}` : ''} still holds its lock. Not recovered; \`stop\` or \`force\` it if it does not move.`,
          ),
        ],
        false,
      );
    case 'service_down':
      return message(
        `🔴 ${event.service} is down`,
        [
          section(
            `🔴 *${esc(truncate(event.service, 100))} is down*: ${esc(truncate(event.error, 1_000))}\nWorkflow${event.workflows.length === 1 ? '' : 's'} ${event.workflows.join(', ')} will fail their calls to it until it is back.`,
          ),
        ],
        false,
      );
    case 'service_up':
      return message(
        `🟢 ${event.service} is back`,
        [section(`🟢 *${esc(truncate(event.service, 100))} is back*${event.downSeconds !== null ? ` after ${formatDuration(event.downSeconds)} down` : ''}.`)],
        false,
      );
  }
}
