// Runs as the chat messages show them, realistic and adversarial, and the
// checks every test/blocks-*.test.ts makes of a message: Slack's limits
// (src/chat/block-limits.ts, written apart from the builders) and its buttons.
import assert from 'node:assert/strict';
import type { RunView } from '../../src/commands/results.ts';
import { blockKitProblems } from '../../src/chat/block-limits.ts';

export const NOW = new Date('2025-05-01T12:00:30Z');

export function view(overrides: Partial<RunView> = {}): RunView {
  return {
    id: 12,
    workflowId: 3001,
    workflowName: 'postings-enrichment',
    mode: 'global_batch',
    subjectId: null,
    resumesRunId: null,
    status: 'running',
    action: 'run',
    requestedBy: 'U024BE7LH',
    source: 'slack',
    startedAt: '2025-05-01T12:00:00.000Z',
    endedAt: null,
    durationSeconds: 30,
    steps: ['summary', 'skills', 'ihl'],
    expectedWork: { summary: 300, skills: 300, ihl: 300 },
    pendingAtStart: { summary: 300, skills: 0, ihl: 0 },
    metricNames: ['postings_total', 'postings_with_summary', 'postings_with_skills', 'postings_with_ihl'],
    progress: { summary: { done: 120, failed: 2, running: 8 }, skills: { done: 40, failed: 0, running: 4 }, ihl: { done: 10, failed: 0, running: 0 } },
    interactionsCompleted: 170,
    interactionsFailed: 2,
    stateBefore: { postings_total: 300, postings_with_summary: 0, postings_with_skills: 0, postings_with_ihl: 0 },
    stateAfter: null,
    delta: null,
    stopRequestedBy: null,
    stoppedBy: null,
    forcedBy: null,
    forcedRunId: null,
    takenOverByRunId: null,
    adoptions: [],
    awaitingOwner: false,
    endedReason: null,
    error: null,
    ...overrides,
  };
}

export function completed(overrides: Partial<RunView> = {}): RunView {
  return view({
    status: 'completed',
    endedAt: '2025-05-01T12:00:31.100Z',
    durationSeconds: 31.1,
    progress: { summary: { done: 300, failed: 0, running: 0 }, skills: { done: 300, failed: 0, running: 0 }, ihl: { done: 300, failed: 0, running: 0 } },
    interactionsCompleted: 900,
    interactionsFailed: 0,
    stateAfter: { postings_total: 300, postings_with_summary: 300, postings_with_skills: 300, postings_with_ihl: 300 },
    delta: { postings_total: 0, postings_with_summary: 300, postings_with_skills: 300, postings_with_ihl: 300 },
    endedReason: 'no_work',
    ...overrides,
  });
}

export const NASTY = 'nasty *bold* _it_ ~s~ `code` <!channel> <@U123|x> &amp; ```fence``` ünïcødé 🚀 名前';
export const longName = (i: number) => `metric_${i}_${'x'.repeat(190)}`.slice(0, 200);
export const hugeMetrics = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [longName(i), i * 1_000]));
export const hugeAfter = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [longName(i), i * 1_000 + i - 50]));
export const errorText = `Error: boom ${NASTY}\n${'stack line at somewhere (file.ts:1:2)\n'.repeat(300)}`.slice(0, 10_240);

export function adversarial(overrides: Partial<RunView> = {}): RunView {
  return view({
    workflowName: `${NASTY} ${'n'.repeat(500)}`,
    requestedBy: `console:${NASTY}${'u'.repeat(300)}`,
    source: `src ${NASTY}`,
    subjectId: 9_007_199_254_740_991,
    expectedWork: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`step_${i}_${NASTY}${'s'.repeat(150)}`, i * 7])),
    progress: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`step_${i}_${NASTY}${'s'.repeat(150)}`, { done: i, failed: i % 3, running: 1 }])),
    stateBefore: hugeMetrics,
    stopRequestedBy: `U${'A'.repeat(20)}`,
    forcedBy: NASTY.repeat(20),
    forcedRunId: 11,
    ...overrides,
  });
}

export function assertValid(message: unknown, what: string): void {
  assert.deepEqual(blockKitProblems(message), [], `${what}: ${JSON.stringify(message).slice(0, 300)}`);
}

export function allText(message: { text?: string; blocks: unknown[] }): string {
  return JSON.stringify(message.blocks);
}

export function mrkdwnTexts(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(mrkdwnTexts);
  if (!value || typeof value !== 'object') return [];
  const o = value as Record<string, unknown>;
  if (o.type === 'mrkdwn' && typeof o.text === 'string') return [o.text];
  return Object.values(o).flatMap(mrkdwnTexts);
}

export function buttons(message: { blocks: unknown[] }): any[] {
  const found: any[] = [];
  for (const block of message.blocks as any[]) {
    if (block.accessory?.type === 'button') found.push(block.accessory);
    for (const el of block.elements ?? []) if (el.type === 'button') found.push(el);
  }
  return found;
}
