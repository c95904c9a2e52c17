// The Slack app in HTTP mode, driven as Slack drives it: slash commands,
// button clicks and events signed with the signing secret and posted to
// /slack/events; a local server plays Slack's Web API and records what the
// app sends (every message checked against Block Kit's limits). Real
// PostgreSQL, real engine, workflow 3001 with its model calls answered by a
// slow Ollama stand-in, and a workflow whose handlers wait on a gate the
// tests open, so a run is still running when a test needs it to be.
import assert from 'node:assert/strict';
import { eventually } from './helpers/cli.ts';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { createSlackApp, type SlackApp } from '../src/chat/slack/app.ts';
import { loadConfig } from '../src/config.ts';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import postingsWorkflow from '../src/workflows/postings/index.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { quietLog, testEngine, type TestEngine } from './helpers/engine.ts';
import { startOllamaStub, type OllamaStub } from './helpers/ollama-stub.ts';
import { blockActionsBody, eventBody, FORM, JSON_TYPE, postSigned, slashCommandBody } from './helpers/slack-sign.ts';
import { buttons, messageText, startSlackStub, type SlackCall, type SlackStub } from './helpers/slack-stub.ts';

const SECRET = 'test-signing-secret-7f3a9c';
const OPS = 'C0OPS';
const NOTIFY = 'C0NOTIFY';
const HELD = 9201;
/** Users and what WORKFLOW_ACCESS grants them. */
const NAMES: Record<string, string> = { UADMIN: 'ada', UOPER: 'olga', UVIEW: 'vera', UGROUPIE: 'gus', UCHAN: 'chan', UCHANOP: 'cho' };
const ACCESS = [
  { role: 'viewer', to: ['*'] },
  { role: 'operator', to: ['UOPER', 'S0OPS'] },
  { role: 'admin', to: ['UADMIN'] },
  { role: 'admin', to: ['UCHAN'], channels: ['C0ADMIN'] },
  { role: 'operator', to: ['UCHANOP'], channels: [OPS] },
];
const ELSEWHERE = 'C0ELSEWHERE';
const MIN_UPDATE_MS = 300;

/** Handlers of the held workflow wait here until released (or aborted by a stop). */
function createGate() {
  let open = false;
  const waiters = new Set<() => void>();
  return {
    close() {
      open = false;
    },
    release() {
      open = true;
      for (const resolve of waiters) resolve();
      waiters.clear();
    },
    pass(signal: AbortSignal): Promise<void> {
      if (open) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const done = () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          waiters.delete(done);
          reject(signal.reason ?? new Error('aborted'));
        };
        waiters.add(done);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    },
  };
}

describe('Slack app over HTTP', () => {
  let stub: SlackStub;
  let ollama: OllamaStub;
  let t: TestEngine;
  let slack: SlackApp;
  let url: string;
  const gate = createGate();

  before(async () => {
    stub = await startSlackStub();
    stub.groups.set('S0OPS', ['UGROUPIE']);
    ollama = await startOllamaStub({ delayMs: 60 });
    const postings = postingsWorkflow({ config: loadConfig({ OLLAMA_URL: ollama.url }), log: quietLog });
    const held = itemsWorkflow({
      id: HELD,
      name: 'held',
      table: 'held_items',
      rateLimitSeconds: 0,
      concurrency: 4,
      handle: async ({ id }, { signal }) => {
        await gate.pass(signal);
        return `done ${id}`;
      },
    });
    t = await testEngine('slack_http', [postings, held], async (db) => {
      await replaceDemoPostings(db, 40);
      await createItems(db, 20, 'held_items');
    });
    const config = loadConfig({
      SLACK_SIGNING_SECRET: SECRET,
      SLACK_BOT_TOKEN: 'xoxb-test-token',
      SLACK_API_URL: stub.url.replace(/\/$/, ''), // without the slash: the app adds it
      SLACK_NOTIFY_CHANNEL: NOTIFY,
      WORKFLOW_ACCESS: JSON.stringify(ACCESS),
      LOG_LEVEL: 'silent',
      PORT: '0',
    });
    slack = createSlackApp({
      config,
      service: t.service,
      views: t.views,
      messages: t.messages,
      log: quietLog,
      notifier: { minUpdateMs: MIN_UPDATE_MS, pollMs: 100, discoverMs: 60_000 },
    });
    const { port } = await slack.start(0);
    assert.ok(port > 0);
    url = `http://127.0.0.1:${port}/slack/events`;
  });

  after(async () => {
    gate.release();
    await slack?.stop();
    await t?.close();
    await stub?.close();
    await ollama?.close();
  });

  // ─── helpers ───────────────────────────────────────────────────────────────

  async function command(user: string, text: string, options: { channel?: string; timestamp?: number; signWith?: string } = {}) {
    const body = slashCommandBody({ text, user_id: user, user_name: NAMES[user], channel_id: options.channel ?? OPS, response_url: `${stub.responseUrl}cmd` });
    const answer = await postSigned(url, body, FORM, { secret: SECRET, timestamp: options.timestamp, signWith: options.signWith });
    return answer;
  }

  async function click(user: string, call: SlackCall, actionId: string, options: { headers?: Record<string, string>; channel?: string; home?: boolean } = {}) {
    const button = buttons(call).find((b) => b.action_id === actionId);
    assert.ok(button, `a ${actionId} button in ${call.method}: ${JSON.stringify(buttons(call))}`);
    assert.ok(button.confirm, `${actionId} asks for confirmation`);
    const ephemeral = call.method === 'chat.postEphemeral';
    const body = blockActionsBody({
      user_id: user,
      user_name: NAMES[user],
      channel_id: options.channel ?? call.body.channel ?? OPS,
      message_ts: ephemeral ? call.response.message_ts : (call.response.ts ?? call.body.ts),
      ephemeral,
      home: options.home,
      action_id: actionId,
      value: button.value!,
      response_url: `${stub.responseUrl}action`,
    });
    const answer = await postSigned(url, body, FORM, { secret: SECRET, headers: options.headers });
    assert.equal(answer.status, 200);
    return answer;
  }

  function ephemeralTo(user: string, since: number, what?: string, match?: RegExp) {
    return stub.waitFor('chat.postEphemeral', (c) => c.body.user === user && (!match || match.test(messageText(c))), {
      since,
      what: what ?? `an ephemeral reply to ${user}`,
    });
  }

  function waitUntil<T>(probe: () => Promise<T | undefined | null | false>, what: string, timeoutMs = 15_000): Promise<T> {
    return eventually(probe, what, timeoutMs);
  }

  const getRun = (id: number) => t.db.selectFrom('workflow_runs').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  const runCount = async () => Number((await sql<{ n: number }>`SELECT count(*)::int AS n FROM workflow_runs`.execute(t.db)).rows[0]!.n);
  const lastAuditId = async () => Number((await sql<{ id: number | null }>`SELECT max(id)::int AS id FROM audit_log`.execute(t.db)).rows[0]!.id ?? 0);
  const auditSince = (id: number) => t.db.selectFrom('audit_log').selectAll().where('id', '>', id).where('outcome', '!=', 'event').orderBy('id').execute();

  /** The newest run of a workflow newer than `after`, once it exists. */
  function newRun(workflowId: number, afterId: number) {
    return waitUntil(
      () =>
        t.db.selectFrom('workflow_runs').selectAll().where('workflow_id', '=', workflowId).where('id', '>', afterId).orderBy('id', 'desc').executeTakeFirst(),
      `a new run of workflow ${workflowId}`,
    );
  }
  const maxRunId = async () => Number((await sql<{ id: number | null }>`SELECT max(id)::int AS id FROM workflow_runs`.execute(t.db)).rows[0]!.id ?? 0);

  function runPosted(runId: number, channel: string, since: number) {
    return stub.waitFor('chat.postMessage', (c) => c.body.channel === channel && c.body.text.includes(`Run #${runId} `), {
      since,
      what: `run #${runId}'s message in ${channel}`,
    });
  }

  function runUpdated(posted: SlackCall, match: RegExp, since: number) {
    return stub.waitFor('chat.update', (c) => c.body.ts === posted.response.ts && match.test(c.body.text), {
      since,
      what: `an update of ${posted.response.ts} matching ${match}`,
    });
  }

  /** Pending work and a closed gate for the held workflow, with no run of it left from an earlier test. */
  async function resetHeld() {
    gate.release();
    await waitUntil(
      async () =>
        !(await t.db.selectFrom('workflow_runs').select('id').where('workflow_id', '=', HELD).where('status', 'in', ['running', 'queued']).executeTakeFirst()),
      'no held run running',
    );
    await waitUntil(async () => slack.notifier.shown().length === 0, 'the notifier to have sent every final update');
    await sql`UPDATE held_items SET result = NULL`.execute(t.db);
    gate.close();
  }

  // ─── tests ─────────────────────────────────────────────────────────────────

  test('/workflow run 3001: acknowledged at once, announced in the channel, kept current, finished with the delta', async () => {
    const since = stub.mark();
    const audit = await lastAuditId();
    const before = await maxRunId();
    const answer = await command('UOPER', 'run 3001');
    assert.equal(answer.status, 200);

    const run = await newRun(3001, before);
    assert.equal(run.requested_by, 'UOPER (olga)', 'the run is requested by the Slack user, not the bot');
    assert.equal(run.source, 'slack');
    assert.equal(run.notify_channel, OPS);

    const posted = await runPosted(run.id, OPS, since);
    assert.equal(posted.token, 'xoxb-test-token');
    const stop = buttons(posted).find((b) => b.action_id === 'workflow_stop');
    assert.deepEqual(JSON.parse(stop!.value!), { runId: run.id });

    // Progress while it runs: the same message, updated.
    const progress = await runUpdated(posted, /running \d+%: .*summary [1-9]\d*\/40/, since);
    assert.match(progress.body.text, new RegExp(`Run #${run.id} `));

    const finished = await runUpdated(posted, /completed/, since);
    const text = messageText(finished);
    assert.match(text, /postings_with_summary\s+0\s+40\s+\+40/);
    assert.match(text, /postings_with_ihl\s+0\s+40\s+\+40/);
    assert.match(text, /Unchanged \(1\): postings_total 40/);
    assert.match(text, /120 done, 0 failed/);

    const ended = await getRun(run.id);
    assert.equal(ended.status, 'completed');
    assert.deepEqual(ended.delta, { postings_total: 0, postings_with_summary: 40, postings_with_skills: 40, postings_with_ihl: 40 });

    // Tier 3: never two updates of one message within the interval.
    const updates = stub.callsTo('chat.update', (c) => c.body.ts === posted.response.ts);
    const times = [posted.at, ...updates.map((u) => u.at)];
    for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! >= MIN_UPDATE_MS - 30, `updates ${times[i]! - times[i - 1]!} ms apart`);
    // The started run is announced in the channel, not answered privately.
    assert.equal(stub.callsTo('chat.postEphemeral', (c) => c.body.user === 'UOPER').filter((c) => stub.calls.indexOf(c) >= since).length, 0);
    // The final message is sent once; nothing after it.
    await waitUntil(async () => !slack.notifier.shown().includes(run.id), 'the notifier to let the run go');
    assert.equal(stub.callsTo('chat.update', (c) => c.body.ts === posted.response.ts).at(-1), finished);

    const entries = await auditSince(audit);
    assert.deepEqual(
      entries.map((e) => [e.actor, e.source, e.action, e.outcome]),
      [['UOPER (olga)', 'slack', 'run', 'accepted']],
    );

    // Stop on the message of a run that has ended: nothing to stop, and the user is told why.
    const mark = stub.mark();
    await click('UOPER', posted, 'workflow_stop');
    const stale = await ephemeralTo('UOPER', mark, 'the stale click', /has already ended \(completed\); nothing to stop/);
    assert.equal(stale.body.channel, OPS);
    assert.equal((await getRun(run.id)).status, 'completed');
  });

  test('a rate-limited run: refused privately with Force start; an operator cannot force, an admin can, once per message', async () => {
    const since = stub.mark();
    const audit = await lastAuditId();
    const before = await maxRunId();
    await command('UOPER', 'run 3001');
    const refusal = await ephemeralTo('UOPER', since, 'the rate-limit refusal', /Rate limited/);
    assert.match(messageText(refusal), /next start is allowed/);

    // The operator presses Force start: refused, with the role it needs.
    let mark = stub.mark();
    await click('UOPER', refusal, 'workflow_force_start');
    const denied = await ephemeralTo('UOPER', mark, 'the permission refusal', /needs the admin role/);
    assert.match(messageText(denied), /you have viewer, operator/);

    // An admin double-clicks the same button (on the same message).
    mark = stub.mark();
    await Promise.all([click('UADMIN', refusal, 'workflow_force_start'), click('UADMIN', refusal, 'workflow_force_start')]);
    const forced = await newRun(3001, before);
    assert.equal(forced.action, 'force');
    assert.equal(forced.requested_by, 'UADMIN (ada)');
    await ephemeralTo('UADMIN', mark, 'the second click', /already handled/);
    const posted = await runPosted(forced.id, OPS, mark);
    await runUpdated(posted, /completed/, mark);
    assert.equal((await getRun(forced.id)).ended_reason, 'no_work');
    assert.equal(await maxRunId(), forced.id, 'one run for two clicks');

    const entries = await auditSince(audit);
    assert.deepEqual(
      entries.map((e) => [e.actor, e.action, e.outcome]),
      [
        ['UOPER (olga)', 'run', 'refused'],
        ['UOPER (olga)', 'force', 'refused'],
        ['UADMIN (ada)', 'force', 'accepted'],
      ],
    );
    assert.match(entries[1]!.reason!, /needs the admin role/);
  });

  test('a duplicate run: refused with Force restart; an operator cannot force; an admin stops the old run and the new one finishes', async () => {
    await resetHeld();
    const since = stub.mark();
    const before = await maxRunId();
    await command('UOPER', `run ${HELD}`);
    const first = await newRun(HELD, before);
    const firstPosted = await runPosted(first.id, OPS, since);

    const audit = await lastAuditId();
    let mark = stub.mark();
    await command('UGROUPIE', 'run held');
    const refusal = await ephemeralTo('UGROUPIE', mark, 'the duplicate refusal', /already running/);
    assert.match(messageText(refusal), new RegExp(`run #${first.id}`));
    assert.match(messageText(refusal), /UOPER/);
    const force = buttons(refusal).find((b) => b.action_id === 'workflow_force');
    assert.deepEqual(JSON.parse(force!.value!), { runId: first.id });

    mark = stub.mark();
    await click('UOPER', refusal, 'workflow_force');
    await ephemeralTo('UOPER', mark, 'the permission refusal', /needs the admin role/);
    assert.equal((await getRun(first.id)).status, 'running');

    mark = stub.mark();
    await click('UADMIN', refusal, 'workflow_force');
    const second = await newRun(HELD, first.id);
    assert.equal(second.action, 'force');
    assert.equal(second.forced_run_id, first.id);
    // The takeover is linked once the new run exists, just after the old one ended.
    const old = await waitUntil(async () => {
      const r = await getRun(first.id);
      return r.status !== 'running' && r.taken_over_by_run_id !== null && r;
    }, 'the old run to end, taken over');
    assert.equal(old.status, 'stopped');
    assert.equal(old.taken_over_by_run_id, second.id);
    await runUpdated(firstPosted, /stopped/, mark);

    const secondPosted = await runPosted(second.id, OPS, mark);
    gate.release();
    const done = await runUpdated(secondPosted, /completed/, mark);
    assert.match(messageText(done), /items_done\s+0\s+20\s+\+20/);
    assert.match(messageText(done), /Forced by <@UADMIN>|Forced by `UADMIN \(ada\)`/);

    const entries = await auditSince(audit);
    assert.deepEqual(
      entries.map((e) => [e.actor, e.action, e.outcome]),
      [
        ['UGROUPIE (gus)', 'run', 'refused'],
        ['UOPER (olga)', 'force', 'refused'],
        ['UADMIN (ada)', 'force', 'accepted'],
      ],
    );
  });

  test('Stop: a viewer is refused; a double click and a retried delivery stop the run once', async () => {
    await resetHeld();
    const since = stub.mark();
    const before = await maxRunId();
    await command('UOPER', `run ${HELD}`);
    const run = await newRun(HELD, before);
    const posted = await runPosted(run.id, OPS, since);

    const audit = await lastAuditId();
    let mark = stub.mark();
    await click('UVIEW', posted, 'workflow_stop');
    await ephemeralTo('UVIEW', mark, 'the permission refusal', /needs the operator role/);
    assert.equal((await getRun(run.id)).status, 'running');

    mark = stub.mark();
    await Promise.all([
      click('UOPER', posted, 'workflow_stop'),
      click('UOPER', posted, 'workflow_stop'),
      click('UOPER', posted, 'workflow_stop', { headers: { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' } }),
    ]);
    const stopped = await waitUntil(async () => {
      const r = await getRun(run.id);
      return r.status !== 'running' && r;
    }, 'the run to stop');
    assert.equal(stopped.status, 'stopped');
    assert.equal(stopped.stopped_by, 'UOPER (olga)');
    await runUpdated(posted, /stopped/, mark);

    const replies = await waitUntil(async () => {
      const r = stub.calls.slice(mark).filter((c) => c.method === 'chat.postEphemeral' && c.body.user === 'UOPER');
      return r.length >= 3 && r;
    }, 'three replies');
    const texts = replies.map((r) => r.body.text as string);
    assert.equal(texts.filter((x) => /already handled/.test(x)).length, 2, texts.join(' | '));
    assert.equal(texts.filter((x) => new RegExp(`run ${run.id} stopped`).test(x)).length, 1, texts.join(' | '));

    const entries = await auditSince(audit);
    assert.deepEqual(
      entries.map((e) => [e.actor, e.action, e.outcome]),
      [
        ['UVIEW (vera)', 'stop', 'refused'],
        ['UOPER (olga)', 'stop', 'accepted'],
      ],
    );
    // A click on the stale message later, by someone else: nothing happens, and they are told.
    mark = stub.mark();
    await click('UADMIN', posted, 'workflow_stop');
    await ephemeralTo('UADMIN', mark, 'the stale stop', /already handled/);
    assert.deepEqual((await auditSince(audit)).length, 2);
  });

  test('roles: a viewer cannot run, an operator cannot force, an admin only in their channel; groups grant roles; every refusal audited', async () => {
    await resetHeld();
    const audit = await lastAuditId();
    const runs = await runCount();

    let mark = stub.mark();
    await command('UVIEW', `run ${HELD}`);
    const viewer = await ephemeralTo('UVIEW', mark, 'the viewer refusal', /needs the operator role/);
    assert.match(messageText(viewer), /you have viewer/);

    mark = stub.mark();
    await command('UOPER', `force ${HELD}`);
    await ephemeralTo('UOPER', mark, 'the operator refusal', /needs the admin role/);

    mark = stub.mark();
    await command('UCHAN', `force ${HELD}`, { channel: OPS });
    await ephemeralTo('UCHAN', mark, 'the admin-elsewhere refusal', /needs the admin role/);
    assert.equal(await runCount(), runs, 'no run started');

    const entries = await auditSince(audit);
    assert.deepEqual(
      entries.map((e) => [e.actor, e.source, e.action, e.outcome, (e.details as any)?.needed]),
      [
        ['UVIEW (vera)', 'slack', 'run', 'refused', 'operator'],
        ['UOPER (olga)', 'slack', 'force', 'refused', 'admin'],
        ['UCHAN (chan)', 'slack', 'force', 'refused', 'admin'],
      ],
    );

    // The viewer can look: list, status, history, workflows, help.
    const last = await maxRunId();
    for (const [text, expected] of [
      ['list', /No runs are running|running/],
      [`status ${last}`, new RegExp(`Run #${last}`)],
      ['history --limit 5', /Recent runs/],
      ['workflows', /3001[\s\S]*9201|9201[\s\S]*3001/],
      ['help', /run &lt;workflow&gt;/],
      ['help stop', /stop/],
    ] as const) {
      mark = stub.mark();
      await command('UVIEW', text);
      await ephemeralTo('UVIEW', mark, `the answer to ${text}`, expected);
    }
    assert.deepEqual(await auditSince(await lastAuditId()), []);

    // A member of the S0OPS group is an operator: runs, then stops it by text.
    mark = stub.mark();
    const before = await maxRunId();
    await command('UGROUPIE', `run ${HELD}`);
    const run = await newRun(HELD, before);
    assert.ok(stub.callsTo('usergroups.users.list', (c) => c.body.usergroup === 'S0OPS').length >= 1);
    await runPosted(run.id, OPS, mark);
    mark = stub.mark();
    await command('UGROUPIE', `stop ${run.id}`);
    await stub.waitFor('chat.postMessage', (c) => c.body.channel === OPS && new RegExp(`run ${run.id} stopped`).test(c.body.text), {
      since: mark,
      what: 'the stop answer',
    });
    assert.equal((await getRun(run.id)).stopped_by, 'UGROUPIE (gus)');
  });

  test('a bad signature or a stale timestamp: 401 and nothing executed', async () => {
    await resetHeld();
    const audit = await lastAuditId();
    const runs = await runCount();
    const mark = stub.mark();

    const forged = await command('UADMIN', `force ${HELD}`, { signWith: 'not-the-secret' });
    assert.equal(forged.status, 401);
    const stale = await command('UADMIN', `force ${HELD}`, { timestamp: Math.floor(Date.now() / 1000) - 6 * 60 });
    assert.equal(stale.status, 401);
    const clickBody = blockActionsBody({
      user_id: 'UADMIN',
      message_ts: '1.000001',
      action_id: 'workflow_force_start',
      value: JSON.stringify({ workflowId: HELD }),
    });
    assert.equal((await postSigned(url, clickBody, FORM, { secret: SECRET, signWith: 'nope' })).status, 401);
    assert.equal((await postSigned(url, clickBody, FORM, { secret: SECRET, timestamp: Math.floor(Date.now() / 1000) - 301 })).status, 401);
    const unsigned = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': FORM },
      body: slashCommandBody({ text: `run ${HELD}`, user_id: 'UADMIN' }),
    });
    assert.equal(unsigned.status, 401);

    // A good request after them is answered: had the forged ones run, their traces would be before it.
    await command('UVIEW', 'help');
    await ephemeralTo('UVIEW', mark, 'the sentinel');
    const earlier = new Set(stub.calls.slice(0, mark).map((c) => c.response.ts ?? c.body.ts));
    const since = stub.calls.slice(mark).filter((c) => !(c.method === 'chat.update' && earlier.has(c.body.ts)));
    assert.deepEqual(
      since.map((c) => c.method),
      ['chat.postEphemeral'],
    );
    assert.deepEqual(await auditSince(audit), []);
    assert.equal(await runCount(), runs);
  });

  test('a signed command delivered again (same body, same signature) is acted on once; the repeat is answered and audited', async () => {
    await resetHeld();
    const since = stub.mark();
    const before = await maxRunId();
    await command('UOPER', `run ${HELD}`);
    const run = await newRun(HELD, before);
    await runPosted(run.id, OPS, since);

    const audit = await lastAuditId();
    const mark = stub.mark();
    const body = slashCommandBody({
      text: `stop ${run.id}`,
      user_id: 'UOPER',
      user_name: NAMES.UOPER,
      channel_id: OPS,
      response_url: `${stub.responseUrl}cmd`,
    });
    const timestamp = Math.floor(Date.now() / 1000);
    assert.equal((await postSigned(url, body, FORM, { secret: SECRET, timestamp })).status, 200);
    assert.equal((await postSigned(url, body, FORM, { secret: SECRET, timestamp })).status, 200);
    await waitUntil(async () => (await getRun(run.id)).status === 'stopped', 'the run to stop');
    const repeat = await stub.waitFor('chat.postEphemeral', (c) => c.body.user === 'UOPER' && /delivered again/.test(messageText(c)), {
      since: mark,
      what: 'the answer to the repeat',
    });
    assert.match(messageText(repeat), /nothing more was done/);
    const entries = await waitUntil(async () => {
      const e = await auditSince(audit);
      return e.length >= 2 && e;
    }, 'both audit entries');
    assert.deepEqual(entries.map((e) => [e.actor, e.action, e.outcome, e.run_id === null ? null : Number(e.run_id)]).sort(), [
      ['UOPER (olga)', 'command', 'refused', null],
      ['UOPER (olga)', 'stop', 'accepted', run.id],
    ]);
    assert.equal((entries.find((e) => e.action === 'command')!.details as { refusal: string }).refusal, 'delivered_again');
    assert.equal((await getRun(run.id)).stopped_by, 'UOPER (olga)');
  });

  test('a channel-limited grant acts only on runs requested in its channels: stop, force and resume of a run requested elsewhere are refused and audited', async () => {
    await resetHeld();
    let mark = stub.mark();
    const before = await maxRunId();
    await command('UOPER', `run ${HELD}`, { channel: ELSEWHERE });
    const run = await newRun(HELD, before);
    assert.equal(run.notify_channel, ELSEWHERE);
    await runPosted(run.id, ELSEWHERE, mark);

    const audit = await lastAuditId();
    // An operator in OPS only, typing in OPS.
    mark = stub.mark();
    await command('UCHANOP', `stop ${run.id}`, { channel: OPS });
    const refused = await ephemeralTo('UCHANOP', mark, 'the stop refusal', new RegExp(`run #${run.id} was requested in channel ${ELSEWHERE}`));
    assert.match(messageText(refused), /holds only for runs requested in the channels it is granted in/);
    // An admin in C0ADMIN only, forcing there: the force would take over the run requested elsewhere.
    mark = stub.mark();
    await command('UCHAN', `force ${HELD}`, { channel: 'C0ADMIN' });
    await ephemeralTo('UCHAN', mark, 'the force refusal', new RegExp(`run #${run.id} was requested in channel ${ELSEWHERE}`));
    assert.equal((await getRun(run.id)).status, 'running');
    assert.equal(await maxRunId(), run.id, 'no new run');

    // Stopped where it was asked for; a resume from OPS is refused in turn.
    await command('UOPER', `stop ${run.id}`, { channel: ELSEWHERE });
    await waitUntil(async () => (await getRun(run.id)).status === 'stopped', 'the run to stop');
    mark = stub.mark();
    await command('UCHANOP', `run ${HELD} --mode single_run --run ${run.id}`, { channel: OPS });
    await ephemeralTo('UCHANOP', mark, 'the resume refusal', new RegExp(`run #${run.id} was requested in channel ${ELSEWHERE}`));
    assert.equal(await maxRunId(), run.id, 'no resumed run');

    const entries = await auditSince(audit);
    assert.deepEqual(
      entries.map((e) => [
        e.actor,
        e.action,
        e.outcome,
        Number(e.run_id),
        e.workflow_id,
        (e.details as Record<string, unknown>).refusal,
        (e.details as Record<string, unknown>).run_channel,
      ]),
      [
        ['UCHANOP (cho)', 'stop', 'refused', run.id, HELD, 'permission', ELSEWHERE],
        ['UCHAN (chan)', 'force', 'refused', run.id, HELD, 'permission', ELSEWHERE],
        ['UOPER (olga)', 'stop', 'accepted', run.id, HELD, undefined, undefined],
        ['UCHANOP (cho)', 'resume', 'refused', run.id, HELD, 'permission', ELSEWHERE],
      ],
    );

    // In their own channel the grant holds: a run requested there, stopped there.
    await resetHeld();
    mark = stub.mark();
    const own = await maxRunId();
    await command('UCHANOP', `run ${HELD}`, { channel: OPS });
    const mine = await newRun(HELD, own);
    await runPosted(mine.id, OPS, mark);
    await command('UCHANOP', `stop ${mine.id}`, { channel: OPS });
    await waitUntil(async () => (await getRun(mine.id)).stopped_by === 'UCHANOP (cho)', 'the run stopped by the channel operator');
  });

  test('every invalid action is audited, with the run and workflow it named: an edited value, an extra key, an unknown action', async () => {
    const run = await t.db.selectFrom('workflow_runs').selectAll().orderBy('id', 'desc').executeTakeFirstOrThrow();
    const audit = await lastAuditId();
    const mark = stub.mark();
    const clicks = [
      { action_id: 'workflow_stop', value: JSON.stringify({ runId: run.id, extra: true }) },
      { action_id: 'workflow_force', value: `{"runId": ${run.id}` },
      { action_id: 'workflow_force_start', value: JSON.stringify({ workflowId: HELD, by: 'me' }) },
      { action_id: 'workflow_delete_everything', value: JSON.stringify({ workflowId: 3001 }) },
    ];
    for (const c of clicks) {
      const body = blockActionsBody({ user_id: 'UOPER', user_name: NAMES.UOPER, channel_id: OPS, message_ts: '1.000001', ...c });
      const answer = await postSigned(url, body, FORM, { secret: SECRET });
      assert.equal(answer.status, 200, c.action_id);
    }
    await waitUntil(async () => {
      const replies = stub.calls.slice(mark).filter((c) => c.method === 'chat.postEphemeral' && /could not be read/.test(messageText(c)));
      return replies.length === clicks.length;
    }, 'an answer to each click');
    const entries = await waitUntil(async () => {
      const e = await auditSince(audit);
      return e.length >= clicks.length && e;
    }, 'an audit entry per click');
    // Each click is handled after its acknowledgement, so their entries may land in any order.
    assert.deepEqual(entries.map((e) => [e.actor, e.action, e.outcome, e.run_id === null ? null : Number(e.run_id), e.workflow_id]).sort(), [
      ['UOPER (olga)', 'button:workflow_delete_everything', 'invalid', null, 3001],
      ['UOPER (olga)', 'button:workflow_force', 'invalid', null, null],
      ['UOPER (olga)', 'button:workflow_force_start', 'invalid', null, HELD],
      ['UOPER (olga)', 'button:workflow_stop', 'invalid', run.id, run.workflow_id],
    ]);
    assert.equal((entries.find((e) => e.action === 'button:workflow_force')!.details as { value: string }).value, `{"runId": ${run.id}`);
    assert.equal((await getRun(run.id)).status, run.status, 'nothing acted on');
  });

  test('bad input: a helpful private answer, no crash, nothing changed but the audit entry', async () => {
    const postings = async () => (await sql<{ n: number; s: number }>`SELECT count(*)::int AS n, count(summary)::int AS s FROM postings`.execute(t.db)).rows[0];
    const state = await postings();
    const runs = await runCount();
    // Empty text opens the run dialog (test/slack-operator.test.ts).
    const inputs = [
      'frobnicate 3001',
      'x'.repeat(10 * 1024),
      `run ${'9'.repeat(5000)}`,
      '運行 3001 🚀 ünïcödé \u202e',
      'run 3001; DROP TABLE postings; --',
      "status 1' OR '1'='1",
      'run 3001 --mode nonsense',
      'stop -1',
      'run <!channel> @here',
    ];
    for (const text of inputs) {
      const audit = await lastAuditId();
      const mark = stub.mark();
      const answer = await command('UADMIN', text);
      assert.equal(answer.status, 200, `status for ${JSON.stringify(text.slice(0, 40))}`);
      const reply = await ephemeralTo('UADMIN', mark, `the answer to ${JSON.stringify(text.slice(0, 40))}`);
      assert.match(messageText(reply), /⚠️|🚫|Usage|usage/, `a helpful answer to ${JSON.stringify(text.slice(0, 40))}: ${reply.body.text}`);
      assert.doesNotMatch(messageText(reply), /<!channel>|<!here>/);
      const entries = await auditSince(audit);
      assert.equal(entries.length, 1, `one audit entry for ${JSON.stringify(text.slice(0, 40))}`);
      assert.ok(['invalid', 'refused'].includes(entries[0]!.outcome), entries[0]!.outcome);
      assert.equal(entries[0]!.actor, 'UADMIN (ada)');
    }
    assert.equal(await runCount(), runs);
    assert.deepEqual(await postings(), state);
  });

  test('where the bot cannot post, the answer goes through the response_url', async () => {
    stub.failures.set('chat.postEphemeral', 'channel_not_found');
    try {
      const mark = stub.mark();
      await command('UVIEW', 'list', { channel: 'C0PRIVATE' });
      const via = await stub.waitFor('response_url', undefined, { since: mark, what: 'the response_url answer' });
      assert.equal(via.body.response_type, 'ephemeral');
      assert.match(via.body.text, /running/i);
    } finally {
      stub.failures.delete('chat.postEphemeral');
    }
  });

  test('a run started outside Slack is announced in SLACK_NOTIFY_CHANNEL and finished there', async () => {
    await resetHeld();
    const mark = stub.mark();
    const { result } = await t.service.handle(`run ${HELD}`, { id: 'ana@laptop', source: 'cli' }, 'cli');
    assert.equal(result.kind, 'run_started');
    const runId = (result as { view: { id: number } }).view.id;
    const posted = await runPosted(runId, NOTIFY, mark);
    assert.equal(stub.callsTo('chat.postMessage', (c) => c.body.text.includes(`Run #${runId} `)).length, 1, 'posted once');
    gate.release();
    await runUpdated(posted, /completed/, mark);
  });

  test('App Home: running runs with Stop, the last ten runs; Stop from the tab', async () => {
    await resetHeld();
    let mark = stub.mark();
    const before = await maxRunId();
    await command('UOPER', `run ${HELD}`);
    const run = await newRun(HELD, before);
    await runPosted(run.id, OPS, mark);

    mark = stub.mark();
    const opened = await postSigned(
      url,
      eventBody({ type: 'app_home_opened', user: 'UOPER', channel: 'D0HOME', tab: 'home', event_ts: `${Date.now() / 1000}` }),
      JSON_TYPE,
      { secret: SECRET },
    );
    assert.equal(opened.status, 200);
    const home = await stub.waitFor('views.publish', (c) => c.body.user_id === 'UOPER', { since: mark, what: 'the home tab' });
    assert.equal(home.body.view.type, 'home');
    const text = messageText(home);
    assert.match(text, new RegExp(`#${run.id}\\* running`));
    assert.match(text, /Recent runs/);
    const recent = await t.db.selectFrom('workflow_runs').select('id').orderBy('id', 'desc').limit(10).execute();
    for (const { id } of recent) assert.match(text, new RegExp(`#${id}\\*`));

    mark = stub.mark();
    await click('UOPER', home, 'workflow_stop', { home: true });
    await waitUntil(async () => (await getRun(run.id)).status === 'stopped', 'the run to stop from the home tab');
    const told = await stub.waitFor('chat.postMessage', (c) => c.body.channel === 'UOPER', { since: mark, what: 'the answer in the app DM' });
    assert.match(told.body.text, new RegExp(`run ${run.id} stopped`));
    const refreshed = await stub.waitFor('views.publish', (c) => c.body.user_id === 'UOPER', { since: mark, what: 'the refreshed home tab' });
    assert.doesNotMatch(messageText(refreshed), new RegExp(`#${run.id}\\* running`));
  });

  test('every message and view the app sent passed the Block Kit check', () => {
    assert.ok(stub.calls.length > 0);
    assert.deepEqual(stub.problems, []);
    // Group membership is cached, for 30 s at most: a lookup per 30 s of the session at most.
    const lookups = stub.callsTo('usergroups.users.list');
    assert.ok(lookups.length >= 1);
    assert.ok(lookups.length <= Math.ceil((Date.now() - lookups[0]!.at) / 30_000) + 1, `${lookups.length} lookups`);
    // Every Web API call carried the bot token.
    assert.ok(stub.calls.filter((c) => c.method !== 'response_url').every((c) => c.token === 'xoxb-test-token'));
    assert.ok(
      stub.calls.every((c) => c.response.ok !== false || c.method === 'chat.postEphemeral' || c.method === 'usergroups.users.list'),
      JSON.stringify(stub.calls.filter((c) => c.response.ok === false).map((c) => [c.method, c.response.error])),
    );
  });
});
