import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { ConsoleChat } from '../src/chat/console.ts';
import { createLogger } from '../src/log.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { eventually } from './helpers/cli.ts';
import { testEngine, type TestEngine } from './helpers/engine.ts';
import { fakeTerminal } from './helpers/terminal.ts';

// The console chat on a terminal (as `npm start` shows it), over a real
// engine and database: what the screen shows when a log line arrives while
// someone is typing at the prompt.

let t: TestEngine;
before(async () => {
  t = await testEngine('console_terminal', [itemsWorkflow({ handle: async ({ id }) => `ok ${id}` })], (db) => createItems(db, 5));
});
after(async () => {
  await t.close();
});

test('a log line arriving mid-typing goes above the prompt, which is redrawn with what was typed', async () => {
  const term = fakeTerminal();
  const input = new PassThrough();
  const chat = new ConsoleChat({ service: t.service, views: t.views, input, output: term.stream, prompt: 'workflow> ' });
  const started = chat.start();
  try {
    await eventually(async () => term.screen().at(-1) === 'workflow>', 'the prompt');
    input.write('/workflow li');
    await eventually(async () => term.screen().at(-1) === 'workflow> /workflow li', 'the typed text echoed');

    createLogger('info', term.stream).warn({ runId: 3 }, 'slow answers');
    const screen = term.screen();
    assert.equal(screen.at(-1), 'workflow> /workflow li', screen.join('\n'));
    assert.match(screen.at(-2)!, /^\d\d:\d\d:\d\d\.\d{3} WARN {2}slow answers {2}runId=3$/, screen.join('\n'));

    // What was typed before the log line is still the line being edited.
    input.write('st\r');
    await eventually(async () => term.screen().some((line) => /no runs are running/i.test(line)), 'the answer to /workflow list');
  } finally {
    input.end();
    await started;
  }
});
