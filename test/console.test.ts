import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { loadConfig } from '../src/config.ts';
import { ConsoleChat } from '../src/chat/console.ts';
import postingsWorkflow from '../src/workflows/postings/index.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { quietLog, testEngine, type TestEngine } from './helpers/engine.ts';

// The console chat end to end: lines in through a stream, over a real engine
// and database, and what it prints read back. Every wait is for output to
// appear, with a deadline; none is a sleep.

const DEADLINE_MS = 20_000;

/** What the console printed, and waits for what it will print. */
class Transcript {
  readonly input = new PassThrough();
  readonly output = new PassThrough();
  text = '';
  /** Where the next wait starts reading: each reply is looked for after the line that asked for it. */
  mark = 0;

  private readonly waiting = new Set<() => void>();

  constructor() {
    this.output.setEncoding('utf8');
    this.output.on('data', (chunk: string) => {
      this.text += chunk;
      for (const wake of this.waiting) wake();
    });
  }

  send(line: string): void {
    this.mark = this.text.length;
    this.input.write(`${line}\n`);
  }

  async waitFor(pattern: RegExp, from = this.mark): Promise<RegExpMatchArray> {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      const match = pattern.exec(this.text.slice(from));
      if (match) return match;
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`no ${pattern} within ${DEADLINE_MS} ms; the console printed:\n${this.text.slice(from).slice(-4_000)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(wake, left);
        const waiting = this.waiting;
        function wake() {
          clearTimeout(timer);
          waiting.delete(wake);
          resolve();
        }
        waiting.add(wake);
      });
    }
  }
}

/** A promise and its resolve (Promise.withResolvers is Node 22+). */
function gateway(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

function open(t: TestEngine): { transcript: Transcript; chat: ConsoleChat; started: Promise<void> } {
  const transcript = new Transcript();
  const chat = new ConsoleChat({
    service: t.service,
    views: t.views,
    input: transcript.input,
    output: transcript.output,
    prompt: '> ',
    pollMs: 50,
    progressIntervalMs: 100,
  });
  return { transcript, chat, started: chat.start() };
}

describe('console chat over workflow 3001', () => {
  let t: TestEngine;
  let transcript: Transcript;
  let started: Promise<void>;
  before(async () => {
    t = await testEngine(
      'console_postings',
      [postingsWorkflow({ config: loadConfig({}), log: quietLog })],
      async (db) => void (await replaceDemoPostings(db, 200)),
    );
    ({ transcript, started } = open(t));
    await transcript.waitFor(/workflow console/, 0);
  });
  after(async () => {
    transcript.input.end();
    await started;
    await t.close();
  });

  test('/workflow run 3001: started, then finished with every metric before → after and its delta', async () => {
    transcript.send('/workflow run 3001');
    const [, id] = await transcript.waitFor(/Run #(\d+) (?:running|completed) — workflow 3001 postings-enrichment/);
    const from = transcript.mark;
    await transcript.waitFor(new RegExp(`Run #${id} completed — workflow 3001`), from);
    const finished = transcript.text.slice(transcript.text.indexOf(`Run #${id} completed`));
    assert.match(finished, /Interactions: 600 done, 0 failed/);
    assert.match(finished, /Requested by: console:\S+ via console/);
    // Changed metrics in the table; the one that did not change folded after it.
    assert.match(finished, /Unchanged \(1\): postings_total 200/);
    for (const metric of ['postings_with_summary', 'postings_with_skills', 'postings_with_ihl']) {
      assert.match(finished, new RegExp(`${metric}\\s+0\\s+200\\s+\\+200`));
    }
    // Printed once, though both the command's answer and the run events announce it.
    assert.equal(transcript.text.split(`Run #${id} completed —`).length - 1, 1);
  });

  test('a second batch right after is refused by the rate limit, with a Force choice for admins that starts it', async () => {
    transcript.send('run 3001');
    const [, n] = await transcript.waitFor(/next start is allowed[\s\S]*\[(\d+)\] Force start now \(admins\)/);
    transcript.send(n!);
    await transcript.waitFor(/Force a start of workflow 3001\? \[y\/N\]/);
    transcript.send('y');
    const [, id] = await transcript.waitFor(/Run #(\d+) (?:running|completed) — workflow 3001/);
    await transcript.waitFor(new RegExp(`Run #${id} completed[\\s\\S]*No pending work`), transcript.mark);
  });

  test('/workflow help', async () => {
    transcript.send('/workflow help');
    await transcript.waitFor(/run <workflow>[\s\S]*history/);
  });

  for (const [line, reply] of [
    ['launch 3001', /⚠️ .*unknown[\s\S]*Usage/],
    ['x'.repeat(10_000), /⚠️ .*too long/],
    ['ünïcødé 🚀 名前 <!channel> *bold*', /⚠️ /],
    ["run 3001'; DROP TABLE workflow_runs; --", /⚠️ /],
    ['run 4242', /unknown workflow "4242"/],
    ['stop 99999', /run 99999 does not exist/],
    ['/workflow', /⚠️ /],
    ['42', /no choice \[42\]/],
    ['status 1', /Run #1 completed/],
    ['history', /Recent runs[\s\S]*#1 completed.*\n\s+Δ .*postings_with_summary \+200/],
    ['list', /No runs are running/],
    ['workflows', /3001 postings-enrichment \(postings\): summary → skills → ihl/],
  ] as const) {
    test(`${line.slice(0, 40)} → a helpful reply`, async () => {
      transcript.send(line);
      await transcript.waitFor(reply);
    });
  }

  test('empty lines are ignored; the console still answers after all that', async () => {
    const before = transcript.text.length;
    transcript.send('');
    transcript.send('   ');
    transcript.send('help run');
    await transcript.waitFor(/--mode/, before);
    assert.doesNotMatch(transcript.text.slice(before), /error|⚠️/);
    const runs = await sql<{ n: number }>`SELECT count(*)::int AS n FROM workflow_runs`.execute(t.db);
    assert.equal(runs.rows[0]!.n, 2, 'only the two runs asked for');
  });
});

describe('console chat: duplicate, force restart, stop', () => {
  let t: TestEngine;
  let transcript: Transcript;
  let chat: ConsoleChat;
  let started: Promise<void>;
  // Handlers wait for this gate (or their abort signal): the test decides when a run may finish.
  let gate = gateway();
  const immediate = new Set<number>();

  before(async () => {
    const workflow = itemsWorkflow({
      rateLimitSeconds: 0,
      timeoutMs: 60_000,
      handle: async ({ id }, { signal }) => {
        if (!immediate.has(id)) {
          await Promise.race([
            gate.promise,
            new Promise((_, reject) =>
              signal.aborted ? reject(new Error('aborted')) : signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }),
            ),
          ]);
        }
        return `ok ${id}`;
      },
    });
    t = await testEngine('console_items', [workflow], (db) => createItems(db, 5));
    ({ transcript, chat, started } = open(t));
    await transcript.waitFor(/workflow console/, 0);
  });
  after(async () => {
    gate.resolve();
    await t.close();
  });

  test('a duplicate is refused with a Force choice; confirmed, it stops the old run and the new one finishes', async () => {
    transcript.send('/workflow run 9100');
    const [, first] = await transcript.waitFor(/Run #(\d+) running — workflow 9100 items/);
    transcript.send('/workflow run 9100');
    const refusal = await transcript.waitFor(/already running as run #(\d+)[\s\S]*Started by: (\S+)[\s\S]*\[(\d+)\] Force restart \(stops run #\d+\)/);
    assert.equal(refusal[1], first);
    assert.match(refusal[2]!, /^console:/);
    transcript.send(refusal[3]!);
    await transcript.waitFor(new RegExp(`This stops run #${first} of workflow 9100[\\s\\S]*Force restart: stop run #${first}\\? \\[y/N\\]`));
    transcript.send('y');
    const [, second] = await transcript.waitFor(/Run #(\d+) running — workflow 9100 items/);
    assert.ok(Number(second) > Number(first));
    // The old run's report: it ends before its successor has an id, so who took over is in the record, read below.
    // It ended before its replacement existed; its end is told again, naming the run that replaced it.
    await transcript.waitFor(new RegExp(`Run #${first} \\(workflow 9100 items\\) forced out by run #${second} \\(forced by console:`), 0);
    gate.resolve();
    const from = transcript.text.indexOf(`Run #${second} running`);
    await transcript.waitFor(
      new RegExp(
        `Run #${second} completed[\\s\\S]*Interactions: 5 done, 0 failed[\\s\\S]*Forced by console:\\S+ over run #${first}[\\s\\S]*items_done\\s+0\\s+5\\s+\\+5`,
      ),
      from,
    );
    const old = await t.views.get(Number(first));
    assert.equal(old?.status, 'stopped');
    assert.equal(old?.takenOverByRunId, Number(second));
  });

  test('Stop: declined leaves the run alone; confirmed stops it; pressed again acts no more; progress lines as it goes', async () => {
    gate = gateway();
    await sql`INSERT INTO items (id) SELECT g FROM generate_series(101, 105) g`.execute(t.db);
    immediate.add(101).add(102);
    transcript.send('run 9100');
    const [, id] = await transcript.waitFor(/Run #(\d+) running — workflow 9100 items/);
    const from = transcript.mark;
    const [, n] = await transcript.waitFor(new RegExp(`\\[(\\d+)\\] Stop run #${id}\\n`), from);
    // Two items finish at once, three wait: the progress line shows it.
    await transcript.waitFor(new RegExp(`Run #${id} \\(workflow 9100 items\\) running 40%: process 2/5`), from);

    transcript.send(n!);
    await transcript.waitFor(new RegExp(`Stop run #${id}\\? \\[y/N\\]`));
    transcript.send('n');
    await transcript.waitFor(/cancelled/);
    assert.equal((await t.views.get(Number(id)))?.status, 'running');

    transcript.send(n!);
    await transcript.waitFor(new RegExp(`Stop run #${id}\\? \\[y/N\\]`));
    transcript.send('yes');
    await transcript.waitFor(new RegExp(`run ${id} stopped`));
    await transcript.waitFor(new RegExp(`Run #${id} stopped by console:[\\s\\S]*Status: stopped by console:[\\s\\S]*Interactions: 2 done, 0 failed`), from);
    assert.equal((await t.views.get(Number(id)))?.status, 'stopped');

    transcript.send(n!);
    await transcript.waitFor(new RegExp(`Stop run #${id}\\? \\[y/N\\]`));
    transcript.send('y');
    await transcript.waitFor(new RegExp(`click on run #${id} was already handled`));
  });

  test('runs started elsewhere on the database are announced, as in a channel', async () => {
    gate.resolve();
    // Three new items, and the three the stopped run returned to pending.
    await sql`INSERT INTO items (id) SELECT g FROM generate_series(201, 203) g`.execute(t.db);
    const { result } = await t.service.handle('run 9100', { id: 'U0SOMEONE', source: 'slack' }, 'chat');
    assert.equal(result.kind, 'run_started');
    const id = result.kind === 'run_started' ? result.view.id : 0;
    await transcript.waitFor(new RegExp(`Run #${id} (?:running|completed) — workflow 9100[\\s\\S]*@U0SOMEONE`), 0);
    await transcript.waitFor(new RegExp(`Run #${id} completed[\\s\\S]*items_done\\s+7\\s+13\\s+\\+6`), 0);
  });

  test('exit closes the console', async () => {
    transcript.send('exit');
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('start() did not resolve after exit')), DEADLINE_MS)));
    await Promise.race([started, deadline]).finally(() => clearTimeout(timer));
    await chat.close(); // closing twice is harmless
  });
});
