import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ACTION_IDS, buttonAction } from '../src/chat/blocks/buttons.ts';

// A click's value is untrusted input: anything but exactly what a button
// carries is refused.

describe('buttonAction', () => {
  test('round-trips every button kind', () => {
    assert.deepEqual(buttonAction(ACTION_IDS.stop, JSON.stringify({ runId: 12 })), { type: 'stop', runId: 12 });
    assert.deepEqual(buttonAction(ACTION_IDS.force, JSON.stringify({ runId: 7 })), { type: 'force', runId: 7 });
    assert.deepEqual(buttonAction(ACTION_IDS.forceStart, JSON.stringify({ workflowId: 3001 })), { type: 'force_start', workflowId: 3001 });
  });

  for (const [actionId, value] of [
    ['workflow_nope', '{"runId":12}'],
    [ACTION_IDS.stop, ''],
    [ACTION_IDS.stop, 'not json'],
    [ACTION_IDS.stop, '12'],
    [ACTION_IDS.stop, 'null'],
    [ACTION_IDS.stop, '[12]'],
    [ACTION_IDS.stop, '{"runId":"12"}'],
    [ACTION_IDS.stop, '{"runId":-1}'],
    [ACTION_IDS.stop, '{"runId":0}'],
    [ACTION_IDS.stop, '{"runId":1.5}'],
    [ACTION_IDS.stop, '{"runId":9007199254740993}'],
    [ACTION_IDS.stop, '{"runId":12,"extra":1}'],
    [ACTION_IDS.stop, '{"workflowId":3001}'],
    [ACTION_IDS.forceStart, '{"runId":12}'],
    [ACTION_IDS.force, '{"runId":12'],
    [ACTION_IDS.force, `{"runId":1${'0'.repeat(3000)}}`],
    [ACTION_IDS.stop, '{"__proto__":{"runId":1}}'],
  ] as const) {
    test(`rejects ${actionId} ${value.slice(0, 40)}`, () => assert.equal(buttonAction(actionId, value), undefined));
  }
});
