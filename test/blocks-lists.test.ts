import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { WorkflowView } from '../src/commands/results.ts';
import { buttonAction } from '../src/chat/blocks/buttons.ts';
import { resultMessage } from '../src/chat/blocks/result.ts';
import { plainText } from '../src/chat/plain-text.ts';
import { adversarial, assertValid, buttons, completed, hugeMetrics, NASTY, NOW, view } from './helpers/blocks.ts';

describe('lists', () => {
  test('runs: each running run with its own Stop button; 500 runs stay within 50 blocks', () => {
    const few = resultMessage({ kind: 'runs', runs: [view(), view({ id: 13 })] }, { now: NOW });
    assertValid(few, 'runs');
    assert.deepEqual(
      buttons(few).map((b) => buttonAction(b.action_id, b.value)),
      [
        { type: 'stop', runId: 12 },
        { type: 'stop', runId: 13 },
      ],
    );
    assert.match(buttons(few)[1].confirm.title.text, /Stop run #13\?/);
    const many = resultMessage({ kind: 'runs', runs: Array.from({ length: 500 }, (_, i) => adversarial({ id: i + 1 })) }, { now: NOW });
    assertValid(many, '500 runs');
    assert.match(plainText(many).text, /…and \d+ more running/);
    assertValid(resultMessage({ kind: 'runs', runs: [] }), 'no runs');
  });

  test('history: recent runs with their deltas; 500 adversarial runs stay within limits', () => {
    const message = resultMessage(
      { kind: 'history', runs: [completed(), completed({ id: 11, status: 'failed', delta: { postings_total: -2 } })] },
      { now: NOW },
    );
    assertValid(message, 'history');
    const { text } = plainText(message);
    assert.match(text, /#12 completed/);
    assert.match(text, /Δ postings_with_summary \+300, postings_with_skills \+300, postings_with_ihl \+300/);
    assert.match(text, /Δ postings_total -2/);
    const many = resultMessage(
      { kind: 'history', runs: Array.from({ length: 500 }, (_, i) => adversarial({ id: i + 1, status: 'completed', delta: hugeMetrics })) },
      { now: NOW },
    );
    assertValid(many, '500 history');
    assert.match(plainText(many).text, /…and \d+ more runs/);
    assertValid(resultMessage({ kind: 'history', runs: [] }), 'empty history');
  });

  test('workflows: pending work and running runs; many long ones stay within limits', () => {
    const workflow: WorkflowView = {
      id: 3001,
      name: 'postings-enrichment',
      description: 'd',
      subject: 'posting',
      steps: ['summary', 'skills', 'ihl'],
      pending: { summary: 300, skills: 0, ihl: 0 },
      rateLimitSeconds: 60,
      concurrency: 8,
      running: [12],
    };
    const message = resultMessage({ kind: 'workflows', workflows: [workflow] });
    assertValid(message, 'workflows');
    assert.match(
      plainText(message).text,
      /3001 postings-enrichment \(postings\): summary → skills → ihl\n\s+pending: summary 300, skills 0, ihl 0\n\s+running: #12/,
    );
    const nasty: WorkflowView = {
      ...workflow,
      name: NASTY.repeat(30),
      subject: NASTY,
      steps: Array(100).fill(NASTY),
      pending: hugeMetrics,
      running: Array.from({ length: 500 }, (_, i) => i),
    };
    assertValid(resultMessage({ kind: 'workflows', workflows: Array(500).fill(nasty) }), 'nasty workflows');
  });
});
