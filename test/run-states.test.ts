import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseCommand, type Command } from '../src/commands/grammar.ts';
import {
  ACTIVE_RUN_STATUSES,
  ENDED_REASONS,
  ENDED_RUN_STATUSES,
  isActive,
  isAllowedTransition,
  isResumable,
  ownerEnding,
  recoveryEnding,
  RUN_STATUSES,
  RUN_TRANSITIONS,
  runAction,
} from '../src/db/run-states.ts';

// The run state machine as pure logic: no database. Where a run is stored
// with its action is checked against the database in test/engine.test.ts.

function runCommand(text: string): Extract<Command, { verb: 'run' }> {
  const parsed = parseCommand(text, { surface: 'chat' });
  assert.ok(parsed.ok && parsed.command.verb === 'run', text);
  return parsed.command;
}

describe('run action', () => {
  for (const [text, action] of [
    ['run 3001', 'run'],
    ['run 3001 --subject 7', 'run'],
    ['run --run 12', 'resume'],
    ['run 3001 --mode single_run --run 12', 'resume'],
    ['force 3001', 'force'],
    ['run 3001 --force', 'force'],
    ['force 3001 --subject 7', 'force'],
    // A forced resume is a force: stored and audited as one.
    ['force --run 12', 'force'],
    ['run --run 12 --force', 'force'],
  ] as const) {
    test(`${text} → ${action}`, () => {
      assert.equal(runAction(runCommand(text)), action);
    });
  }
});

describe('statuses', () => {
  test('every status is either active or ended, never both', () => {
    for (const status of RUN_STATUSES) {
      const ended = (ENDED_RUN_STATUSES as readonly string[]).includes(status);
      assert.notEqual(isActive(status), ended, status);
    }
    assert.deepEqual([...ACTIVE_RUN_STATUSES, ...ENDED_RUN_STATUSES].sort(), [...RUN_STATUSES].sort());
  });

  test('only an ended run that did not complete can be resumed', () => {
    assert.deepEqual(
      RUN_STATUSES.filter((s) => isResumable(s)),
      ['failed', 'stopped', 'abandoned'],
    );
  });
});

describe('transitions', () => {
  test('nothing leaves an ended status, and every move ends in a status that exists', () => {
    for (const t of RUN_TRANSITIONS) {
      assert.ok(isActive(t.from), `${t.from} → ${t.to}`);
      assert.ok((RUN_STATUSES as readonly string[]).includes(t.to));
    }
  });

  test('each ending reason belongs to exactly one move', () => {
    for (const reason of ENDED_REASONS) {
      const moves = RUN_TRANSITIONS.filter((t) => (t.reasons as readonly string[]).includes(reason));
      assert.equal(moves.length, 1, reason);
    }
  });

  test('a queued run starts without a reason; nothing else moves without one', () => {
    assert.ok(isAllowedTransition('queued', 'running', null));
    assert.ok(!isAllowedTransition('running', 'completed', null));
    assert.ok(!isAllowedTransition('queued', 'completed', 'finished'));
    assert.ok(!isAllowedTransition('completed', 'running', null));
    assert.ok(!isAllowedTransition('running', 'stopped', 'owner_lost'));
  });

  test("an owner's ending follows from what stopped its run and what it did", () => {
    assert.deepEqual(ownerEnding(null, 5), { status: 'completed', reason: 'finished' });
    assert.deepEqual(ownerEnding(null, 0), { status: 'completed', reason: 'no_work' });
    assert.deepEqual(ownerEnding({ kind: 'stop' }, 3), { status: 'stopped', reason: 'stop_requested' });
    assert.deepEqual(ownerEnding({ kind: 'shutdown' }, 3), { status: 'stopped', reason: 'shutdown' });
    assert.deepEqual(ownerEnding({ kind: 'error' }, 3), { status: 'failed', reason: 'error' });
  });

  test('every ending the owner or recovery writes is an allowed move from running', () => {
    const endings = [
      ownerEnding(null, 1),
      ownerEnding(null, 0),
      ...(['stop', 'shutdown', 'error'] as const).map((kind) => ownerEnding({ kind }, 1)),
      recoveryEnding('forced'),
      recoveryEnding('owner_lost'),
    ];
    for (const e of endings) assert.ok(isAllowedTransition('running', e.status, e.reason), `${e.status} (${e.reason})`);
    assert.deepEqual(recoveryEnding('owner_lost'), { status: 'abandoned', reason: 'owner_lost' });
    assert.deepEqual(recoveryEnding('forced'), { status: 'stopped', reason: 'forced' });
  });
});
