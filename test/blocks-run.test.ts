import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SLACK_LIMITS } from '../src/chat/block-limits.ts';
import { ACTION_IDS, buttonAction } from '../src/chat/blocks/buttons.ts';
import { failuresMessage, runMessage } from '../src/chat/blocks/run.ts';
import { plainText } from '../src/chat/plain-text.ts';
import {
  adversarial,
  allText,
  assertValid,
  buttons,
  completed,
  errorText,
  hugeAfter,
  hugeMetrics,
  longName,
  mrkdwnTexts,
  NASTY,
  NOW,
  view,
} from './helpers/blocks.ts';

// The run's message on realistic and adversarial data, each checked by the
// independent limits checker.

describe('runMessage', () => {
  test('while running: workflow, mode, who, expected work, progress with pending, elapsed, a Stop button with a confirm', () => {
    const message = runMessage(view(), { now: NOW });
    assertValid(message, 'running');
    assert.equal(message.ephemeral, false);
    const { text } = plainText(message);
    assert.match(text, /Run #12 running — workflow 3001 postings-enrichment/);
    assert.match(text, /Mode: global_batch/);
    assert.match(text, /Requested by: @U024BE7LH/);
    assert.match(text, /Elapsed: 30\.0 s/);
    // The forecast: the 300 postings pending for summary are expected at skills and ihl too.
    assert.match(text, /summary\s+300\s+120\s+2\s+178/);
    assert.match(text, /skills\s+300\s+40\s+0\s+260/);
    // 172 of 900 finished in 30 s: 19%, and 728 left at this run's pace (5.73/s) is about 127 s.
    assert.match(text, /Progress: 19% · about 2 min 07 s left\n/);
    // Steps in the workflow's order, not jsonb's (ihl, skills, summary).
    assert.ok(text.indexOf('summary ') < text.indexOf('skills ') && text.indexOf('skills ') < text.indexOf('ihl '), text);
    const [stop, ...others] = buttons(message);
    assert.equal(others.length, 0);
    assert.equal(stop.action_id, ACTION_IDS.stop);
    assert.deepEqual(buttonAction(stop.action_id, stop.value), { type: 'stop', runId: 12 });
    assert.equal(stop.confirm.title.text, 'Stop run #12?');
    assert.match(stop.confirm.text.text, /run #12/i);
    assert.ok(message.text.length < 400 && message.text.includes('Run #12'), message.text);
  });

  test('once ended: status, duration, counts, every metric before → after with a signed delta, no Stop', () => {
    const message = runMessage(completed(), { now: NOW });
    assertValid(message, 'completed');
    assert.equal(buttons(message).length, 0);
    const { text } = plainText(message);
    assert.match(text, /Run #12 completed/);
    assert.match(text, /Duration: 31\.1 s/);
    assert.match(text, /Interactions: 900 done, 0 failed/);
    for (const name of ['postings_with_summary', 'postings_with_skills', 'postings_with_ihl']) {
      assert.match(text, new RegExp(`${name}\\s+0\\s+300\\s+\\+300`));
    }
    // Changed metrics first, in the declared order; the unchanged one folded into a line after them.
    assert.doesNotMatch(text, /postings_total\s+300\s+300\s+0\n/);
    assert.match(text, /Changed\nmetric .*\npostings_with_summary .*\npostings_with_skills .*\npostings_with_ihl .*\nUnchanged \(1\): postings_total 300/);
    // The notification (fallback text) carries the delta.
    assert.match(
      message.text,
      /completed in 31\.1 s: 900 done, 0 failed · Δ postings_with_summary \+300, postings_with_skills \+300, postings_with_ihl \+300$/,
    );
  });

  test('a running run before it has a pace of its own: the time left comes from past runs', () => {
    const fresh = view({ progress: null, history: { runs: 3, perSecond: 30, perStep: { summary: 10, skills: 10, ihl: 10 } } });
    assert.match(plainText(runMessage(fresh, { now: NOW })).text, /Progress: 0% · about 30 s left \(from past runs\)/);
    assert.doesNotMatch(plainText(runMessage(view({ progress: null }), { now: NOW })).text, /left/);
  });

  test('people: a mention in Slack, the display name in the console', () => {
    const message = runMessage(completed({ requestedBy: 'U0ADA (ada)', status: 'stopped', endedReason: 'stop_requested', stoppedBy: 'U0BOB (bob)' }), {
      now: NOW,
    });
    const raw = mrkdwnTexts(message).join('\n');
    assert.match(raw, /<@U0ADA> via/);
    assert.match(raw, /Status\*\nstopped by <@U0BOB>/);
    assert.ok(!raw.includes('(ada)') && !raw.includes('`U0ADA'), raw);
    const { text } = plainText(message);
    assert.match(text, /Run #12 stopped by @bob — workflow/);
    assert.match(text, /Requested by: @ada via slack/);
    assert.match(text, /Status: stopped by @bob/);
  });

  test('the failed items go in a thread reply, at most ten, with their errors', () => {
    const run = completed({ interactionsFailed: 12 });
    assert.match(plainText(runMessage(run, { now: NOW })).text, /12 failed: the first 10 are listed in the thread/);
    const failures = Array.from({ length: 10 }, (_, i) => ({ step: 'summary', subjectId: i + 1, error: `boom ${i} ${NASTY}` }));
    const reply = failuresMessage(run, failures);
    assertValid(reply, 'failures');
    const { text } = plainText(reply);
    assert.match(text, /Run #12: 12 failed items \(the first 10\)/);
    assert.match(text, /summary · subject 1: boom 0/);
    assert.match(text, /…and 2 more/);
    assertValid(failuresMessage(run, [{ step: NASTY.repeat(20), subjectId: 1, error: errorText }]), 'adversarial failures');
  });

  test('negative deltas, a missing after, and metrics only after are all shown', () => {
    const message = runMessage(completed({ stateBefore: { a: 10, gone: 4 }, stateAfter: { a: 7, fresh: 2 }, delta: { a: -3 } }), { now: NOW });
    const { text } = plainText(message);
    assert.match(text, /\ba\s+10\s+7\s+-3/);
    assert.match(text, /gone\s+4\s+-\s+-/);
    assert.match(text, /fresh\s+-\s+2\s+-/);
  });

  test('says who stopped, forced or took over, and the error', () => {
    const stopped = runMessage(completed({ status: 'stopped', stoppedBy: 'U0ALICE', takenOverByRunId: 13, error: 'handler threw' }), { now: NOW });
    assertValid(stopped, 'stopped');
    const text = plainText(stopped).text;
    assert.match(text, /Run #12 forced out by run #13 \(forced by @U0ALICE\)/);
    assert.match(text, /Replaced by run #13, which carries on/);
    assert.match(text, /handler threw/);
    const forced = plainText(runMessage(completed({ action: 'force', forcedBy: 'console:bob', forcedRunId: 11 }), { now: NOW })).text;
    assert.match(forced, /Forced by console:bob over run #11/);
    assert.match(plainText(runMessage(completed({ interactionsCompleted: 0 }))).text, /nothing to do/);
  });

  test('adversarial data stays within every limit, running and ended', () => {
    const running = runMessage(adversarial(), { now: NOW });
    assertValid(running, 'adversarial running');
    for (const status of ['completed', 'failed', 'stopped', 'abandoned'] as const) {
      const ended = runMessage(
        adversarial({
          status,
          endedAt: '2025-05-01T13:00:00Z',
          stateAfter: hugeAfter,
          delta: null,
          error: errorText,
          stoppedBy: NASTY,
          takenOverByRunId: 99,
          endedReason: NASTY.repeat(50),
        }),
        { now: NOW },
      );
      assertValid(ended, `adversarial ${status}`);
      assert.ok(allText(ended).includes('characters, cut'), 'a cut error says so');
    }
  });

  test('100 metrics with 200-character names: every one is shown whole, with before, after and delta', () => {
    const message = runMessage(completed({ stateBefore: hugeMetrics, stateAfter: hugeAfter, delta: null }), { now: NOW });
    assertValid(message, 'huge metrics');
    const { text } = plainText(message);
    // The one that did not change is folded into the "Unchanged" line, whole.
    assert.match(text, new RegExp(`Unchanged \\(1\\): ${longName(50)} 50000`));
    for (let i = 0; i < 100; i++) {
      if (i === 50) continue;
      const delta = i - 50;
      const signed = delta > 0 ? `+${delta}` : String(delta);
      assert.match(text, new RegExp(`${longName(i)}\\n\\s+${i * 1000}\\s+${i * 1000 + i - 50}\\s+${signed.replace('+', '\\+')}\\n`), `metric ${i}`);
    }
  });

  test('thousands of metrics are cut with "…and N more" rather than exceed 50 blocks', () => {
    const many = Object.fromEntries(Array.from({ length: 3_000 }, (_, i) => [longName(i), i]));
    const more = Object.fromEntries(Array.from({ length: 3_000 }, (_, i) => [longName(i), i + 1]));
    const message = runMessage(completed({ stateBefore: many, stateAfter: more, delta: null, metricNames: [] }), { now: NOW });
    assertValid(message, 'thousands of metrics');
    assert.equal(message.blocks.length, SLACK_LIMITS.messageBlocks);
    assert.match(plainText(message).text, /…and \d+ more metrics/);
  });

  test('escapes data: no mention, no link, no fence can be forged', () => {
    const message = runMessage(adversarial({ status: 'failed', error: errorText, stateAfter: hugeAfter }), { now: NOW });
    // Slack reads mentions and links in mrkdwn only; plain_text shows them as typed.
    const raw = mrkdwnTexts(message).join('\n');
    assert.ok(!raw.includes('<!channel>'), 'no @channel');
    assert.ok(!raw.includes('<@U123|x>'), 'no forged mention');
    assert.ok(!/```fence```/.test(raw), 'no fence from data');
    assert.match(plainText(message).text, /<!channel>/, 'the console shows the text as it was');
  });
});
