import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CommandResult, RunView, WorkflowView } from '../src/commands/results.ts';
import { blockKitProblems, SLACK_LIMITS } from '../src/chat/block-limits.ts';
import { ACTION_IDS, buttonAction, homeView, resultMessage, runMessage, type Message } from '../src/chat/blocks.ts';
import { plainText, mrkdwnToText } from '../src/chat/plain-text.ts';

// Builders on realistic and adversarial data, each checked by the
// independent limits checker; and the checker itself, one violation per rule.

const NOW = new Date('2025-05-01T12:00:30Z');

function view(overrides: Partial<RunView> = {}): RunView {
  return {
    id: 12,
    workflowId: 3001,
    workflowName: 'postings-enrichment',
    mode: 'global_batch',
    subjectId: null,
    resumesRunId: null,
    status: 'running',
    action: 'run',
    requestedBy: 'U024BE7LH',
    source: 'slack',
    startedAt: '2025-05-01T12:00:00.000Z',
    endedAt: null,
    durationSeconds: 30,
    expectedWork: { summary: 300, skills: 0, ihl: 0 },
    progress: { summary: { done: 120, failed: 2, running: 8 }, skills: { done: 40, failed: 0, running: 4 }, ihl: { done: 10, failed: 0, running: 0 } },
    interactionsCompleted: 170,
    interactionsFailed: 2,
    stateBefore: { postings_total: 300, postings_with_summary: 0, postings_with_skills: 0, postings_with_ihl: 0 },
    stateAfter: null,
    delta: null,
    stopRequestedBy: null,
    stoppedBy: null,
    forcedBy: null,
    forcedRunId: null,
    takenOverByRunId: null,
    endedReason: null,
    error: null,
    ...overrides,
  };
}

function completed(overrides: Partial<RunView> = {}): RunView {
  return view({
    status: 'completed',
    endedAt: '2025-05-01T12:00:31.100Z',
    durationSeconds: 31.1,
    progress: { summary: { done: 300, failed: 0, running: 0 }, skills: { done: 300, failed: 0, running: 0 }, ihl: { done: 300, failed: 0, running: 0 } },
    interactionsCompleted: 900,
    interactionsFailed: 0,
    stateAfter: { postings_total: 300, postings_with_summary: 300, postings_with_skills: 300, postings_with_ihl: 300 },
    delta: { postings_total: 0, postings_with_summary: 300, postings_with_skills: 300, postings_with_ihl: 300 },
    endedReason: 'no_work',
    ...overrides,
  });
}

const NASTY = 'nasty *bold* _it_ ~s~ `code` <!channel> <@U123|x> &amp; ```fence``` ünïcødé 🚀 名前';
const longName = (i: number) => `metric_${i}_${'x'.repeat(190)}`.slice(0, 200);
const hugeMetrics = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [longName(i), i * 1_000]));
const hugeAfter = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [longName(i), i * 1_000 + i - 50]));
const errorText = `Error: boom ${NASTY}\n${'stack line at somewhere (file.ts:1:2)\n'.repeat(300)}`.slice(0, 10_240);

function adversarial(overrides: Partial<RunView> = {}): RunView {
  return view({
    workflowName: `${NASTY} ${'n'.repeat(500)}`,
    requestedBy: `console:${NASTY}${'u'.repeat(300)}`,
    source: `src ${NASTY}`,
    subjectId: 9_007_199_254_740_991,
    expectedWork: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`step_${i}_${NASTY}${'s'.repeat(150)}`, i * 7])),
    progress: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`step_${i}_${NASTY}${'s'.repeat(150)}`, { done: i, failed: i % 3, running: 1 }])),
    stateBefore: hugeMetrics,
    stopRequestedBy: `U${'A'.repeat(20)}`,
    forcedBy: NASTY.repeat(20),
    forcedRunId: 11,
    ...overrides,
  });
}

function assertValid(message: unknown, what: string): void {
  assert.deepEqual(blockKitProblems(message), [], `${what}: ${JSON.stringify(message).slice(0, 300)}`);
}

function allText(message: { text?: string; blocks: unknown[] }): string {
  return JSON.stringify(message.blocks);
}

function mrkdwnTexts(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(mrkdwnTexts);
  if (!value || typeof value !== 'object') return [];
  const o = value as Record<string, unknown>;
  if (o.type === 'mrkdwn' && typeof o.text === 'string') return [o.text];
  return Object.values(o).flatMap(mrkdwnTexts);
}

function buttons(message: { blocks: unknown[] }): any[] {
  const found: any[] = [];
  for (const block of message.blocks as any[]) {
    if (block.accessory?.type === 'button') found.push(block.accessory);
    for (const el of block.elements ?? []) if (el.type === 'button') found.push(el);
  }
  return found;
}

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
    // summary: expected 300, 120 done, 2 failed → 178 pending; later steps' pending is unknown once passed.
    assert.match(text, /summary\s+300\s+120\s+2\s+178/);
    assert.match(text, /skills\s+0\s+40\s+0\s+-/);
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
    assert.match(text, /postings_total\s+300\s+300\s+0\n/);
    for (const name of ['postings_with_summary', 'postings_with_skills', 'postings_with_ihl']) {
      assert.match(text, new RegExp(`${name}\\s+0\\s+300\\s+\\+300`));
    }
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
    assert.match(text, /Stopped by @U0ALICE; taken over by run #13/);
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
    for (let i = 0; i < 100; i++) {
      const delta = i - 50;
      const signed = delta > 0 ? `+${delta}` : String(delta);
      assert.match(text, new RegExp(`${longName(i)}\\n\\s+${i * 1000}\\s+${i * 1000 + i - 50}\\s+${signed.replace('+', '\\+')}\\n`), `metric ${i}`);
    }
  });

  test('thousands of metrics are cut with "…and N more" rather than exceed 50 blocks', () => {
    const many = Object.fromEntries(Array.from({ length: 3_000 }, (_, i) => [longName(i), i]));
    const message = runMessage(completed({ stateBefore: many, stateAfter: many, delta: null }), { now: NOW });
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

  test('permission names the role it needs', () => {
    assert.match(plainText(resultMessage(results[7]![1])).text, /needs the admin role/);
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
