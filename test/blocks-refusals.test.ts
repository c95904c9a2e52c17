import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CommandResult } from '../src/commands/results.ts';
import { ACTION_IDS, buttonAction } from '../src/chat/blocks/buttons.ts';
import { resultMessage } from '../src/chat/blocks/result.ts';
import { plainText } from '../src/chat/plain-text.ts';
import { assertValid, NOW, view } from './helpers/blocks.ts';

describe('refusals', () => {
  test('permission names the role it needs', () => {
    const result: CommandResult = {
      kind: 'refused',
      reason: 'permission',
      message: '`force` needs the admin role; you have viewer, operator. Ask an admin to grant it (WORKFLOW_ACCESS).',
    };
    assert.match(plainText(resultMessage(result)).text, /needs the admin role/);
  });

  test('duplicate: who started the running run, when, how far; Force restart confirm names the run', () => {
    const result: CommandResult = {
      kind: 'refused',
      reason: 'duplicate',
      message: 'workflow 3001 is already running as run #12, started by U024BE7LH',
      running: view(),
    };
    const message = resultMessage(result, { now: NOW });
    assertValid(message, 'duplicate');
    assert.equal(message.ephemeral, true);
    const { text, choices } = plainText(message);
    assert.match(text, /already running.* as run #12/);
    assert.match(text, /Started by: @U024BE7LH/);
    assert.match(text, /Started: 2025-05-01 12:00:00 UTC \(30\.0 s ago\)/);
    assert.match(text, /summary 120 done, 2 failed of 300 expected/);
    assert.equal(choices.length, 1);
    assert.equal(choices[0]!.actionId, ACTION_IDS.force);
    assert.match(choices[0]!.label, /Force restart/);
    assert.match(choices[0]!.confirm!.title, /run #12/);
    assert.match(choices[0]!.confirm!.text, /stops run #12/);
    assert.deepEqual(buttonAction(choices[0]!.actionId, choices[0]!.value), { type: 'force', runId: 12 });
  });

  test('rate_limited: when the next start is allowed, and a Force button for admins', () => {
    const result: CommandResult = {
      kind: 'refused',
      reason: 'rate_limited',
      message: 'workflow 3001 last started a batch at 2025-05-01T12:00:00.000Z; the next start is allowed at 2025-05-01T12:01:00.000Z (use force to start now)',
      nextAllowedAt: '2025-05-01T12:01:00.000Z',
    };
    const message = resultMessage(result, { now: NOW });
    assertValid(message, 'rate limited');
    const { text, choices } = plainText(message);
    assert.match(text, /next start is allowed 2025-05-01 12:01:00 UTC \(in 30\.0 s\)/);
    assert.match(text, /Admins only/);
    assert.equal(choices.length, 1);
    assert.match(choices[0]!.label, /admins/);
    assert.deepEqual(buttonAction(choices[0]!.actionId, choices[0]!.value), { type: 'force_start', workflowId: 3001 });
    assert.match(choices[0]!.confirm!.title, /workflow 3001/);
    // The workflow id given by the surface wins over the message.
    const other = plainText(resultMessage(result, { workflowId: 4001 })).choices[0]!;
    assert.deepEqual(buttonAction(other.actionId, other.value), { type: 'force_start', workflowId: 4001 });
  });
});
