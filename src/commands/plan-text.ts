import { personLabel } from '../lib/person.ts';
import { relativeTime, spanText, utcText } from '../lib/relative-time.ts';
import type { PlanView, ScheduleView, WhoamiView } from './results.ts';

// `plan` and `whoami` in words, the same on every surface: the CLI prints
// these lines, the chat sets them in blocks (src/chat/blocks/plan.ts).

/** The estimate: "about 1 min 05 s (at the pace of the last 3 runs)", or that there is none. */
export function estimateText(plan: PlanView): string {
  if (plan.interactions === 0) return 'nothing pending: a run would end at once';
  if (!plan.estimate) return 'no history yet: no estimate until a batch of this workflow has completed';
  const runs = plan.estimate.fromRuns;
  return `about ${spanText(plan.estimate.seconds)} (at the per-step pace of the last ${runs === 1 ? 'run' : `${runs} runs`})`;
}

/** Whether a run would start now, or why not and until when. `who` names people as the surface does. */
export function verdictText(plan: PlanView, now: Date = new Date(), who: (stored: string) => string = personLabel): string {
  const v = plan.verdict;
  if (v.start) return 'a run would start now';
  switch (v.reason) {
    case 'duplicate': {
      const since = v.running.startedAt ? ` ${relativeTime(v.running.startedAt, now)}` : '';
      return `a run would be refused: run #${v.running.id} is running (started by ${who(v.running.requestedBy)}${since}); \`force\` would take over`;
    }
    case 'rate_limited':
      return `a run would be refused by the rate limit until ${utcText(v.nextAllowedAt)} (${relativeTime(v.nextAllowedAt, now)}); the last batch started ${relativeTime(v.lastStartAt, now)}`;
    case 'paused':
      return `new work starts no run: paused${v.by ? ` by ${who(v.by)}` : ''} (\`resume ${plan.workflowId}\`); a typed \`run\` would still start`;
  }
}

/** The per-step table: pending now and expected by a run. */
export function planTable(plan: PlanView): string[] {
  const width = Math.max(4, ...plan.steps.map((s) => s.length));
  return [
    `${'step'.padEnd(width)} ${'pending'.padStart(9)} ${'expected'.padStart(9)}`,
    ...plan.steps.map((step) => `${step.padEnd(width)} ${String(plan.pending[step] ?? 0).padStart(9)} ${String(plan.forecast[step] ?? 0).padStart(9)}`),
  ];
}

export function renderPlan(plan: PlanView, now: Date = new Date()): string {
  return [
    `plan for workflow ${plan.workflowId} (${plan.workflowName}): a global_batch now (a dry run: nothing was started)`,
    ...planTable(plan),
    `${plan.interactions} interactions; ${estimateText(plan)}`,
    verdictText(plan, now),
  ].join('\n');
}

/** `whoami`: the role and the grants that give it. */
export function whoamiLines(w: WhoamiView, who: (stored: string) => string = personLabel): string[] {
  if (w.role === 'unrestricted') {
    return [`you are ${who(w.actor)} on the ${w.source}: unrestricted (this terminal has the database's own credentials; WORKFLOW_ACCESS governs chat users)`];
  }
  const lines = [`you are ${who(w.actor)} (${w.source}): ${w.role ? `${w.role}` : 'no role'}`];
  if (w.grants === null) lines.push('granted by this surface, not by WORKFLOW_ACCESS');
  else if (w.grants.length === 0) lines.push('no grant of WORKFLOW_ACCESS names you here; ask an admin to add one');
  else {
    for (const g of w.grants) {
      const to = g.to.includes('*') ? 'everyone (*)' : g.to.join(', ');
      lines.push(`• ${g.role} to ${to}${g.channels ? ` in ${g.channels.join(', ')}` : ''}`);
    }
  }
  return lines;
}

/** One scheduled workflow: its cron in its zone, the next start (absolute and relative), paused or not. */
export function scheduleLine(s: ScheduleView, now: Date = new Date(), who: (stored: string) => string = personLabel): string {
  const next =
    s.next === null
      ? 'never again'
      : s.overdue
        ? `overdue since ${utcText(s.next)}: the leading instance starts its catch-up run`
        : `${utcText(s.next)} (${relativeTime(s.next, now)})`;
  const paused = s.paused ? `; paused${s.paused.by ? ` by ${who(s.paused.by)}` : ''}: its ticks start nothing until \`resume ${s.workflowId}\`` : '';
  return `${s.workflowId} ${s.workflowName}: "${s.cron}" in ${s.timezone}; next start ${next}${paused}`;
}
