import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SLACK_LIMITS } from '../src/chat/block-limits.ts';
import { buttonAction } from '../src/chat/blocks/buttons.ts';
import { homeView } from '../src/chat/blocks/home.ts';
import { plainText } from '../src/chat/plain-text.ts';
import { adversarial, assertValid, buttons, completed, hugeMetrics, NOW, view } from './helpers/blocks.ts';

describe('homeView', () => {
  test('running runs with Stop buttons, then the last ten runs with their deltas', () => {
    const home = homeView(
      [view(), view({ id: 14, workflowId: 4001, workflowName: 'invoices' })],
      Array.from({ length: 15 }, (_, i) => completed({ id: 100 - i })),
      { now: NOW },
    );
    assertValid(home, 'home');
    assert.equal(home.type, 'home');
    assert.deepEqual(
      buttons(home).map((b) => buttonAction(b.action_id, b.value)),
      [
        { type: 'stop', runId: 12 },
        { type: 'stop', runId: 14 },
      ],
    );
    const { text } = plainText(home);
    assert.ok(text.indexOf('#12') < text.indexOf('Recent runs'));
    assert.equal((text.match(/Δ postings_with_summary \+300/g) ?? []).length, 10);
    assert.match(text, /#91 completed/);
    assert.doesNotMatch(text, /#90 completed/);
  });

  test('empty, and 500 adversarial running runs, stay valid', () => {
    assertValid(homeView([], []), 'empty home');
    const home = homeView(
      Array.from({ length: 500 }, (_, i) => adversarial({ id: i })),
      Array.from({ length: 500 }, (_, i) => adversarial({ id: i, status: 'completed', delta: hugeMetrics })),
      { now: NOW },
    );
    assertValid(home, 'huge home');
    assert.ok(home.blocks.length <= SLACK_LIMITS.viewBlocks);
    assert.match(plainText(home).text, /…and 440 more running/);
  });
});
