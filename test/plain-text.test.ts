import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mrkdwnToText } from '../src/chat/plain-text.ts';

describe('plainText', () => {
  test('mrkdwn simplified, code kept, entities decoded, dates and mentions readable', () => {
    assert.equal(mrkdwnToText('*bold* and _it_ ~gone~ `a *b*` &lt;x&gt; &amp;amp;'), 'bold and it gone a *b* <x> &amp;');
    assert.equal(
      mrkdwnToText('<@U123> at <!date^1714564800^{date}|2024-05-01 12:00:00 UTC> <https://x.test|link>'),
      '@U123 at 2024-05-01 12:00:00 UTC link (https://x.test)',
    );
    assert.equal(mrkdwnToText('*T*\n```\na  *b*\n  c\n```\ntail'), 'T\na  *b*\n  c\ntail');
  });
});
