import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { showProgress } from '../src/cli/progress.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { Engine, type ActiveRun } from '../src/engine/engine.ts';
import { showStatusLine } from '../src/lib/status-line.ts';
import { createLogger, redactUrl } from '../src/log.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { eventually } from './helpers/cli.ts';
import type { TestDatabase } from './helpers/database.ts';
import { duplicateKeys } from './helpers/duplicate-keys.ts';
import { migratedDatabase, registerWorkflows, type TestDb } from './helpers/engine.ts';
import { fakeTerminal } from './helpers/terminal.ts';

test('secrets never reach the logs', async () => {
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk) => (text += chunk));
  const log = createLogger('info', out);
  log.info({ config: { SLACK_BOT_TOKEN: 'xoxb-secret-1', SLACK_SIGNING_SECRET: 'sig-secret-2', DATABASE_URL: 'postgresql://u:pw-secret-3@h/db' } }, 'config');
  log.info({ client: { token: 'xapp-secret-4' }, headers: { authorization: 'Bearer secret-5' } }, 'request');
  await new Promise((resolve) => setImmediate(resolve));
  for (const secret of ['secret-1', 'secret-2', 'secret-3', 'secret-4', 'secret-5']) assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
  assert.match(text, /\[redacted\]/);
});

test('a connection string is shown without its password', () => {
  assert.equal(redactUrl('postgresql://ana:hunter2@db:5432/app'), 'postgresql://ana:[redacted]@db:5432/app');
  assert.equal(redactUrl('postgresql://db/app'), 'postgresql://db/app');
});

describe('log format', () => {
  test('on a terminal: one readable line per entry (time, level, message, fields), an error with its stack below', () => {
    const term = fakeTerminal();
    const log = createLogger('info', term.stream);
    log.info({ runId: 12, cause: { kind: 'stop', by: 'ana' } }, 'run stopping');
    log.error({ err: new Error('boom') }, 'command failed');
    const [first, second, third] = term.screen();
    assert.match(first!, /^\d\d:\d\d:\d\d\.\d{3} INFO {2}run stopping {2}runId=12 cause=\{"kind":"stop","by":"ana"\}$/);
    assert.match(second!, /^\d\d:\d\d:\d\d\.\d{3} ERROR command failed {2}err=boom$/);
    assert.match(third!, /^ {4}at /);
    assert.doesNotMatch(term.raw, /"level"/);
  });

  test('anywhere else (a pipe, a file): one JSON object a line', async () => {
    const { stream, text } = collected();
    const log = createLogger('info', stream);
    log.info({ runId: 12 }, 'run stopping');
    const [line] = (await text()).trimEnd().split('\n');
    assert.deepEqual(pick(JSON.parse(line!), ['level', 'msg', 'runId']), { level: 30, msg: 'run stopping', runId: 12 });
  });

  test('LOG_FORMAT chooses either way, and is validated', async () => {
    const term = fakeTerminal();
    createLogger('info', term.stream, 'json').info('as json');
    assert.equal(JSON.parse(term.screen()[0]!).msg, 'as json');
    const { stream, text } = collected();
    createLogger('info', stream, 'pretty').info('as text');
    const written = await text();
    assert.match(written, /^\d\d:\d\d:\d\d\.\d{3} INFO {2}as text\n$/);
    assert.doesNotMatch(written, /\x1b/, 'no colours off a terminal');

    assert.equal(loadConfig({ LOG_FORMAT: 'pretty' }).LOG_FORMAT, 'pretty');
    assert.equal(loadConfig({}).LOG_FORMAT, undefined);
    assert.throws(
      () => loadConfig({ LOG_FORMAT: 'xml' }),
      (error: Error) => error instanceof ConfigError && /LOG_FORMAT: expected one of json, pretty/.test(error.message),
    );
  });

  test('nothing logged moves the cursor or clears the screen: control characters in values and messages are shown escaped', () => {
    const term = fakeTerminal();
    createLogger('info', term.stream).warn({ subject: 'a\x1b[2Jb', note: 'two\nlines' }, 'x\x1b[1Ay');
    assert.doesNotMatch(term.raw, /\x1b\[2J|\x1b\[1A/);
    assert.equal(term.screen().length, 1);
    assert.match(term.screen()[0]!, /WARN {2}x\\u001b\[1Ay {2}subject="a\\u001b\[2Jb" note="two\\nlines"$/);
  });
});

describe('log lines and the lines a terminal redraws', () => {
  test('a log line goes above the status line, which is redrawn below it', () => {
    const term = fakeTerminal();
    term.stream.write('[####....] 4/8');
    const release = showStatusLine({ clear: () => term.stream.write('\r\x1b[K'), redraw: () => term.stream.write('[####....] 4/8') });
    try {
      createLogger('info', term.stream).warn('slow answers');
    } finally {
      release();
    }
    const screen = term.screen();
    assert.equal(screen.length, 2, screen.join('\n'));
    assert.match(screen[0]!, /WARN {2}slow answers$/);
    assert.equal(screen[1], '[####....] 4/8');
  });

  test("the CLI's progress bar: a log line lands above the bar, not inside it", async () => {
    const term = fakeTerminal();
    const run = {
      id: 7,
      workflow: { id: 1, name: 'items', steps: [{ name: 'process' }] },
      expectedWork: { process: 8 },
      estimatedInteractions: 8,
      progress: () => ({ process: { done: 4, failed: 0, running: 1 } }),
    } as unknown as ActiveRun;
    const stop = showProgress(run, term.stream);
    try {
      await eventually(async () => term.raw.includes('4/8'), 'the bar drawn');
      createLogger('info', term.stream).warn('slow answers');
      const screen = term.screen();
      assert.equal(screen.length, 2, screen.join('\n'));
      assert.match(screen[0]!, /WARN {2}slow answers$/);
      assert.match(screen[1]!, /^\[#+\.+\].* 4\/8 /);
    } finally {
      stop();
    }
  });

  test("the progress line shows the limit concurrency 'auto' has found", async () => {
    const term = fakeTerminal();
    const run = {
      id: 8,
      workflow: { id: 1, name: 'items', steps: [{ name: 'process' }] },
      expectedWork: { process: 8 },
      estimatedInteractions: 8,
      progress: () => ({ process: { done: 4, failed: 0, running: 3, limit: 3 } }),
    } as unknown as ActiveRun;
    const stop = showProgress(run, term.stream);
    try {
      await eventually(async () => term.raw.includes('4/8'), 'the bar drawn');
      assert.match(term.screen().at(-1)!, / · process 4 · 3 at once \(auto\) · /);
    } finally {
      stop();
    }
  });
});

describe('log lines of a run', () => {
  let database: TestDatabase;
  let db: TestDb;
  before(async () => {
    ({ database, db } = await migratedDatabase('log_keys'));
    await createItems(db, 200);
  });
  after(async () => {
    await db.destroy();
    await database.drop();
  });

  test('no line repeats a key (the run logger carries runId; its calls do not add it again)', async () => {
    const { stream, text } = collected();
    const [workflow] = await registerWorkflows(db, [
      itemsWorkflow({
        concurrency: 2,
        handle: (_input, ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))),
      }),
    ]);
    const engine = new Engine({
      connectionString: database.url,
      workflows: [workflow!],
      log: createLogger('debug', stream),
      heartbeatMs: 200,
      forceGraceMs: 1_000,
    });
    try {
      const outcome = await engine.startRun({ workflow: workflow!, mode: 'global_batch', force: false, requestedBy: 'test', source: 'test' });
      assert.ok(outcome.started);
      outcome.run.stop({ kind: 'stop', by: 'test' });
      await outcome.run.done;
    } finally {
      await engine.close();
    }
    const lines = (await text()).trimEnd().split('\n');
    assert.ok(
      lines.some((l) => JSON.parse(l).msg === 'run stopping'),
      `the run logged its stop:\n${lines.join('\n')}`,
    );
    for (const line of lines) assert.deepEqual(duplicateKeys(line), [], line);
  });
});

function collected(): { stream: PassThrough; text(): Promise<string> } {
  const stream = new PassThrough();
  let written = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => (written += chunk));
  return { stream, text: () => new Promise((resolve) => setImmediate(() => resolve(written))) };
}

function pick(entry: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, entry[k]]));
}
