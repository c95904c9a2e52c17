import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { blockKitProblems } from '../src/chat/block-limits.ts';
import type { Message } from '../src/chat/blocks/primitives.ts';

// The independent checker the builders' tests rely on: one violation per rule.

describe('blockKitProblems catches each rule', () => {
  const text = (t: string, type = 'mrkdwn') => ({ type, text: t });
  const plainT = (t: string) => text(t, 'plain_text');
  const ok = (t = 'x') => ({ type: 'section', text: text(t) });
  const msg = (...blocks: unknown[]): Message => ({ text: 'fallback', blocks: blocks as any, ephemeral: false });
  const btn = (extra: Record<string, unknown> = {}) => ({ type: 'button', action_id: 'a', text: plainT('Go'), value: 'v', ...extra });
  const confirm = (extra: Record<string, unknown> = {}) => ({ title: plainT('T'), text: plainT('t'), confirm: plainT('Yes'), deny: plainT('No'), ...extra });

  test('a valid message has no problems', () => {
    assert.deepEqual(blockKitProblems(msg(ok(), { type: 'actions', elements: [btn({ confirm: confirm() })] }, { type: 'divider' })), []);
  });

  const cases: [string, unknown, RegExp][] = [
    ['not an object', 'hello', /not an object/],
    ['empty fallback text', { text: ' ', blocks: [ok()] }, /^text: .*non-empty/],
    ['missing fallback text', { blocks: [ok()] }, /^text: /],
    ['fallback text too long', { text: 'x'.repeat(4_001), blocks: [ok()] }, /^text: 4,001 characters, at most 4,000/],
    ['blocks missing', { text: 't' }, /^blocks: missing/],
    ['51 blocks', msg(...Array(51).fill(ok())), /^blocks: 51 blocks, at most 50/],
    ['101 blocks in a view', { type: 'home', blocks: Array(101).fill(ok()) }, /^blocks: 101 blocks, at most 100/],
    ['unknown view type', { type: 'sidebar', blocks: [ok()] }, /unknown view type/],
    ['unknown block type', msg({ type: 'banner', text: text('x') }), /unknown block type "banner"/],
    ['section text too long', msg(ok('x'.repeat(3_001))), /blocks\[0\]\.text\.text: 3,001 characters, at most 3,000/],
    ['empty section text', msg(ok('')), /non-empty/],
    ['section with neither', msg({ type: 'section' }), /needs text or fields/],
    ['11 fields', msg({ type: 'section', fields: Array(11).fill(text('f')) }), /11 fields, at most 10/],
    ['field too long', msg({ type: 'section', fields: [text('f'.repeat(2_001))] }), /fields\[0\]\.text: 2,001 characters/],
    ['header too long', msg({ type: 'header', text: plainT('h'.repeat(151)) }), /151 characters, at most 150/],
    ['header in mrkdwn', msg({ type: 'header', text: text('h') }), /must be plain_text/],
    ['11 context elements', msg({ type: 'context', elements: Array(11).fill(text('c')) }), /11 elements, at most 10/],
    ['empty context', msg({ type: 'context', elements: [] }), /non-empty array/],
    ['button text too long', msg({ type: 'actions', elements: [btn({ text: plainT('b'.repeat(76)) })] }), /76 characters, at most 75/],
    ['button value too long', msg({ type: 'actions', elements: [btn({ value: 'v'.repeat(2_001) })] }), /value: 2,001 characters, at most 2,000/],
    ['action_id too long', msg({ type: 'actions', elements: [btn({ action_id: 'a'.repeat(256) })] }), /action_id: 256 characters, at most 255/],
    ['duplicate action_id in a block', msg({ type: 'actions', elements: [btn(), btn()] }), /duplicate action_id "a"/],
    ['bad button style', msg({ type: 'actions', elements: [btn({ style: 'red' })] }), /must be primary or danger/],
    [
      'confirm title too long',
      msg({ type: 'actions', elements: [btn({ confirm: confirm({ title: plainT('t'.repeat(101)) }) })] }),
      /confirm\.title\.text: 101 characters, at most 100/,
    ],
    [
      'confirm text too long',
      msg({ type: 'actions', elements: [btn({ confirm: confirm({ text: plainT('t'.repeat(301)) }) })] }),
      /confirm\.text\.text: 301 characters, at most 300/,
    ],
    ['confirm without deny', msg({ type: 'actions', elements: [btn({ confirm: confirm({ deny: undefined }) })] }), /confirm\.deny: missing/],
    [
      'accessory button too long',
      msg({ type: 'section', text: text('x'), accessory: btn({ text: plainT('b'.repeat(80)) }) }),
      /accessory\.text\.text: 80 characters/,
    ],
    ['26 actions', msg({ type: 'actions', elements: Array.from({ length: 26 }, (_, i) => btn({ action_id: `a${i}` })) }), /26 elements, at most 25/],
    ['duplicate block_id', msg({ ...ok(), block_id: 'b' }, { ...ok(), block_id: 'b' }), /duplicate block_id/],
    ['text object of unknown type', msg({ type: 'section', text: { type: 'html', text: 'x' } }), /must be plain_text or mrkdwn/],
  ];
  for (const [name, message, pattern] of cases) {
    test(name, () => {
      const problems = blockKitProblems(message);
      assert.ok(
        problems.some((p) => pattern.test(p)),
        `expected ${pattern} in ${JSON.stringify(problems)}`,
      );
    });
  }
});
