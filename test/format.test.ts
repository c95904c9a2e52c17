import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { resultMessage } from '../src/chat/blocks/result.ts';
import { plainText } from '../src/chat/plain-text.ts';
import { renderResult } from '../src/cli/render.ts';
import { formatDelta, formatNumber, formatWork } from '../src/commands/format.ts';
import type { CommandResult, WorkflowView } from '../src/commands/results.ts';
import type { Metrics } from '../src/db/schema.ts';
import { completed, view } from './helpers/blocks.ts';

// The CLI and the chat print work and deltas with these functions: one text
// for empty input, not a blank on one surface and "-" on the other.

describe('formatWork', () => {
  test('work per step; not counted is "-", counted and empty is "none"', () => {
    assert.equal(formatWork({ summary: 300, skills: 0 }), 'summary 300, skills 0');
    assert.equal(formatWork(null), '-');
    assert.equal(formatWork({}), 'none');
  });
});

describe('formatDelta', () => {
  test('each changed metric signed; unchanged ones left out; none changed is "no change"', () => {
    assert.equal(formatDelta({ with_summary: 300, total: -2, same: 0, ratio: 0.123456 }), 'with_summary +300, total -2, ratio +0.1235');
    assert.equal(formatDelta({}), 'no change');
    assert.equal(formatDelta({ a: 0, b: 0 }), 'no change');
  });

  test('bigints a driver returned as text count as numbers', () => {
    assert.equal(formatDelta({ big: '9007199254740993', zero: '0', down: '-7' } as unknown as Metrics), 'big +9007199254740992, down -7');
  });

  test('formatNumber: "-" when unknown', () => {
    assert.equal(formatNumber(undefined), '-');
    assert.equal(formatNumber(5, true), '+5');
    assert.equal(formatNumber(-5, true), '-5');
    assert.equal(formatNumber(0, true), '0');
  });
});

describe('both surfaces print the same', () => {
  const workflow = (pending: WorkflowView['pending']): WorkflowView => ({
    id: 3001,
    name: 'postings-enrichment',
    description: 'd',
    subject: 'posting',
    steps: ['summary'],
    pending,
    rateLimitSeconds: 60,
    concurrency: 8,
    running: [],
  });
  const chat = (result: CommandResult) => plainText(resultMessage(result)).text;

  for (const [pending, text] of [
    [{}, 'none'],
    [{ summary: 3 }, 'summary 3'],
  ] as const) {
    test(`pending work ${JSON.stringify(pending)}: "${text}"`, () => {
      const result: CommandResult = { kind: 'workflows', workflows: [workflow(pending)] };
      assert.match(renderResult(result), new RegExp(`pending: ${text}$`, 'm'));
      assert.match(chat(result), new RegExp(`pending: ${text}$`, 'm'));
    });
  }

  test('expected work of a started run, empty and not', () => {
    const started = (expectedWork: Record<string, number>) =>
      ({ kind: 'run_started', run: { expectedWork } as never, view: view({ pendingAtStart: null }) }) as CommandResult;
    assert.match(renderResult(started({})), /^expected work: none$/m);
    assert.match(renderResult(started({ summary: 300 })), /^expected work: summary 300$/m);
    // In the workflow's order, with what was pending beside the forecast.
    const forecast = { kind: 'run_started', run: { expectedWork: { ihl: 300, skills: 300, summary: 300 } } as never, view: view() } as CommandResult;
    assert.match(renderResult(forecast), /^expected work: summary 300, skills 300, ihl 300 \(pending now: summary 300, skills 0, ihl 0\)$/m);
  });

  for (const [delta, text] of [
    [{}, 'no change'],
    [{ total: 0, with_summary: 300 }, 'with_summary \\+300'],
  ] as const) {
    test(`history delta ${JSON.stringify(delta)}: "Δ ${text.replace('\\', '')}"`, () => {
      const result: CommandResult = { kind: 'history', runs: [completed({ delta })] };
      assert.match(renderResult(result), new RegExp(`Δ ${text}$`, 'm'));
      assert.match(chat(result), new RegExp(`Δ ${text}$`, 'm'));
    });
  }
});
