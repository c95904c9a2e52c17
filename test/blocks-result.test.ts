import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CommandResult } from '../src/commands/results.ts';
import { resultMessage } from '../src/chat/blocks/result.ts';
import { runMessage } from '../src/chat/blocks/run.ts';
import { plainText } from '../src/chat/plain-text.ts';
import { adversarial, assertValid, completed, errorText, hugeAfter, NASTY, NOW, view } from './helpers/blocks.ts';

// Every command result as a message: valid Block Kit whatever the text, and
// ephemeral unless it changes a run.

describe('resultMessage', () => {
  const results: [string, CommandResult][] = [
    ['invalid', { kind: 'invalid', message: 'unknown verb "launch"', usage: 'usage: /workflow run <workflow> …\n  help' }],
    ['not_found', { kind: 'not_found', message: 'run 999 does not exist' }],
    ['help', { kind: 'help', text: 'usage:\n  run <workflow>\n  list\n' }],
    ['done', { kind: 'done', message: 'that click was already handled' }],
    ['run', { kind: 'run', run: completed(), audit: { input: {}, output: {} } }],
    ['stop', { kind: 'stop', outcome: 'stopped', run: completed({ status: 'stopped', stoppedBy: 'U1' }), message: 'run 12 stopped' }],
    ['run_queued', { kind: 'run_queued', view: view({ status: 'queued', startedAt: null }) }],
    [
      'permission',
      {
        kind: 'refused',
        reason: 'permission',
        message: '`force` needs the admin role; you have viewer, operator. Ask an admin to grant it (WORKFLOW_ACCESS).',
      },
    ],
    ['busy', { kind: 'refused', reason: 'busy', message: 'workflow 3001 is starting or ending a run; try again in a moment' }],
  ];
  for (const [name, result] of results) {
    test(`${name} is valid Block Kit`, () => assertValid(resultMessage(result, { now: NOW }), name));
  }

  test('refusals, errors and help are ephemeral; a started run is the run message for the channel', () => {
    for (const [name, result] of results) {
      if (['invalid', 'not_found', 'help', 'permission', 'busy'].includes(name)) assert.equal(resultMessage(result).ephemeral, true, name);
    }
    const started = resultMessage({ kind: 'run_started', run: {} as any, view: view({ progress: null }) }, { now: NOW });
    assertValid(started, 'run_started');
    assert.equal(started.ephemeral, false);
    assert.deepEqual(started, runMessage(view({ progress: null }), { now: NOW }));
  });

  test('invalid: the one-line error and the usage', () => {
    const { text } = plainText(resultMessage(results[0]![1]));
    assert.match(text, /unknown verb "launch"/);
    assert.match(text, /usage: \/workflow run <workflow>/);
  });

  test('adversarial text in every message kind', () => {
    const big = `${NASTY} ${'x'.repeat(10_000)}`;
    const kinds: CommandResult[] = [
      { kind: 'invalid', message: big, usage: big.repeat(10) },
      { kind: 'not_found', message: big },
      { kind: 'help', text: `${big}\n`.repeat(100) },
      { kind: 'done', message: big },
      { kind: 'stop', outcome: 'not_running', run: adversarial(), message: big },
      { kind: 'run_queued', view: adversarial({ status: 'queued' }) },
      { kind: 'refused', reason: 'permission', message: big },
      { kind: 'refused', reason: 'duplicate', message: big, running: adversarial() },
      { kind: 'refused', reason: 'rate_limited', message: `workflow 3001 ${big}`, nextAllowedAt: 'not a date' },
      { kind: 'refused', reason: 'no_server', message: big },
      { kind: 'run', run: adversarial({ status: 'failed', error: errorText, stateAfter: hugeAfter }), audit: null },
      { kind: 'done', message: '' },
      { kind: 'invalid', message: '   ', usage: '' },
    ];
    for (const result of kinds) {
      const message = resultMessage(result, { now: NOW });
      assertValid(message, `${result.kind} ${'reason' in result ? result.reason : ''}`);
      assert.ok(message.text.length <= 300, 'a short fallback');
    }
  });
});
