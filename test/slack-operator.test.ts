// What an operator reads in Slack, through the real Bolt app over HTTP with
// signed requests and the Web API stand-in (every message and view checked
// against Block Kit's limits by the stub): people as mentions, statuses in
// words, the finished message with its changed metrics first and its delta
// in the notification text, failed items in a thread, a stop by someone
// else, `plan`, `whoami`, and a detached run refused by the serving instance
// announced where runs are.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { createSlackApp, type SlackApp } from '../src/chat/slack/app.ts';
import { loadConfig } from '../src/config.ts';
import { Dispatcher } from '../src/engine/dispatcher.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { eventually } from './helpers/cli.ts';
import { quietLog, testEngine, type TestEngine } from './helpers/engine.ts';
import { FORM, postSigned, slashCommandBody } from './helpers/slack-sign.ts';
import { messageText, startSlackStub, type SlackStub } from './helpers/slack-stub.ts';

const SECRET = 'test-signing-secret-operator';
const OPS = 'C0OPS';
const NOTIFY = 'C0NOTIFY';
const FLAKY = 9301;
const HELD = 9302;
const LIMITED = 9303;
const NAMES: Record<string, string> = { UADMIN: 'ada', UOPER: 'olga', UVIEW: 'vera' };
const ACCESS = [
  { role: 'viewer', to: ['*'] },
  { role: 'operator', to: ['UOPER'] },
  { role: 'admin', to: ['UADMIN'] },
];

describe('what an operator reads in Slack', () => {
  let stub: SlackStub;
  let t: TestEngine;
  let slack: SlackApp;
  let dispatcher: Dispatcher;
  let url: string;
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));

  before(async () => {
    stub = await startSlackStub();
    const flaky = itemsWorkflow({
      id: FLAKY,
      name: 'flaky',
      table: 'flaky_items',
      rateLimitSeconds: 0,
      handle: async ({ id }) => {
        if (id <= 12) throw new Error(`boom on item ${id}`);
        return `ok ${id}`;
      },
    });
    const heldWorkflow = itemsWorkflow({
      id: HELD,
      name: 'held',
      table: 'held_items',
      rateLimitSeconds: 0,
      handle: async ({ id }, { signal }) => {
        await Promise.race([held, new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }))]);
        return `ok ${id}`;
      },
    });
    const limited = {
      ...itemsWorkflow({ id: LIMITED, name: 'limited', table: 'limited_items', rateLimitSeconds: 3_600, handle: async ({ id }) => `ok ${id}` }),
      schedule: { cron: '0 3 * * *', timezone: 'Europe/Paris' },
    };
    t = await testEngine('slack_operator', [flaky, heldWorkflow, limited], async (db) => {
      await createItems(db, 20, 'flaky_items');
      await createItems(db, 5, 'held_items');
      await createItems(db, 3, 'limited_items');
    });
    const config = loadConfig({
      SLACK_SIGNING_SECRET: SECRET,
      SLACK_BOT_TOKEN: 'xoxb-test-token',
      SLACK_API_URL: stub.url,
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
      notifier: { minUpdateMs: 200, pollMs: 100, discoverMs: 60_000 },
    });
    const { port } = await slack.start(0);
    url = `http://127.0.0.1:${port}/slack/events`;
    dispatcher = new Dispatcher(t.engine, t.database.url);
    await dispatcher.start();
  });

  after(async () => {
    release();
    await dispatcher?.close();
    await slack?.stop();
    await t?.close();
    await stub?.close();
  });

  async function command(user: string, text: string) {
    const body = slashCommandBody({ text, user_id: user, user_name: NAMES[user], channel_id: OPS, response_url: `${stub.responseUrl}cmd` });
    const answer = await postSigned(url, body, FORM, { secret: SECRET });
    assert.equal(answer.status, 200);
  }

  const newRun = (workflowId: number) =>
    eventually(
      () => t.db.selectFrom('workflow_runs').selectAll().where('workflow_id', '=', workflowId).orderBy('id', 'desc').executeTakeFirst(),
      `a run of workflow ${workflowId}`,
      15_000,
    );

  test('a finished run: mentions, status in words, changed metrics first, the delta in the notification, failed items in a thread', async () => {
    const since = stub.mark();
    await command('UOPER', `run ${FLAKY}`);
    const run = await newRun(FLAKY);
    const posted = await stub.waitFor('chat.postMessage', (c) => c.body.channel === OPS && c.body.text.includes(`Run #${run.id} `), { since });
    const finished = await stub.waitFor('chat.update', (c) => c.body.ts === posted.response.ts && /completed/.test(c.body.text), { since });
    const text = messageText(finished);
    // The requester is a mention, not a code span with the stored "UOPER (olga)".
    assert.match(text, /<@UOPER> via/);
    assert.doesNotMatch(text, /UOPER \(olga\)/);
    assert.match(text, /\*Status\*\ncompleted/);
    // items_done changed, items_total did not: the change in the table, the rest folded after it.
    assert.match(text, /Changed[\s\S]*items_done\s+0\s+8\s+\+8[\s\S]*Unchanged \(1\): items_total 20/);
    assert.doesNotMatch(text, /items_total\s+20\s+20\s+0/);
    // The notification text says what changed.
    assert.match(finished.body.text, /completed in .*: 8 done, 12 failed · Δ items_done \+8$/);
    assert.match(text, /12 failed: the first 10 are listed in the thread/);
    // The failed items in a thread under the run's message, not in the channel.
    const reply = await stub.waitFor('chat.postMessage', (c) => c.body.thread_ts === posted.response.ts, { since, what: 'the thread reply' });
    assert.equal(reply.body.channel, OPS);
    const listed = messageText(reply);
    assert.match(listed, /12 failed items\* \(the first 10\)/);
    for (let id = 1; id <= 10; id++) assert.match(listed, new RegExp(`process · subject ${id}: \`boom on item ${id}\``));
    assert.match(listed, /…and 2 more/);
    assert.equal(stub.callsTo('chat.postMessage', (c) => c.body.thread_ts !== undefined && stub.calls.indexOf(c) >= since).length, 1, 'one thread reply');
  });

  test('a run stopped by someone else says who, as a mention', async () => {
    const since = stub.mark();
    await command('UOPER', `run ${HELD}`);
    const run = await newRun(HELD);
    await stub.waitFor('chat.postMessage', (c) => c.body.channel === OPS && c.body.text.includes(`Run #${run.id} `), { since });
    await command('UADMIN', `stop ${run.id}`);
    const ended = await stub.waitFor('chat.update', (c) => /stopped by @ada/.test(c.body.text), { since, what: 'the stopped message' });
    assert.match(messageText(ended), /\*Status\*\nstopped by <@UADMIN>/);
    assert.match(ended.body.text, new RegExp(`Run #${run.id} \\(workflow ${HELD} held\\) stopped by @ada`));
  });

  test('plan: the forecast, no history yet, and whether a run would start; only the audit entry is written', async () => {
    const runs = Number((await sql<{ n: number }>`SELECT count(*)::int AS n FROM workflow_runs`.execute(t.db)).rows[0]!.n);
    const since = stub.mark();
    await command('UVIEW', `plan ${LIMITED}`);
    const answer = await stub.waitFor('chat.postEphemeral', (c) => c.body.user === 'UVIEW', { since, what: 'the plan' });
    const text = messageText(answer);
    assert.match(text, /Plan: workflow 9303 limited/);
    assert.match(text, /process\s+3\s+3/);
    assert.match(text, /no history yet/);
    assert.match(text, /a run would start now/);
    assert.equal(Number((await sql<{ n: number }>`SELECT count(*)::int AS n FROM workflow_runs`.execute(t.db)).rows[0]!.n), runs, 'no run made');
    const audit = await t.db.selectFrom('audit_log').selectAll().where('action', '=', 'plan').orderBy('id', 'desc').executeTakeFirstOrThrow();
    assert.equal(audit.actor, 'UVIEW (vera)');
    assert.equal(audit.outcome, 'accepted');

    // With a completed batch behind it: an estimate, and the rate limit's answer with its time.
    await command('UOPER', `run ${LIMITED}`);
    const done = await newRun(LIMITED);
    await eventually(async () => (await t.views.get(done.id))?.status === 'completed', 'the limited run to complete');
    const mark = stub.mark();
    await command('UVIEW', `plan limited`);
    const second = messageText(await stub.waitFor('chat.postEphemeral', (c) => c.body.user === 'UVIEW', { since: mark, what: 'the second plan' }));
    assert.match(second, /nothing pending/);
    assert.match(second, /refused by the rate limit until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in (59 min \d\d s|1 h 00 min)\)/);
  });

  test('schedules: each scheduled workflow with its next start', async () => {
    const since = stub.mark();
    await command('UVIEW', 'schedules');
    const answer = messageText(await stub.waitFor('chat.postEphemeral', (c) => c.body.user === 'UVIEW', { since, what: 'schedules' }));
    assert.match(answer, /Schedules/);
    assert.match(answer, /9303 limited: "0 3 \* \* \*" in Europe\/Paris; next start \d{4}-\d\d-\d\d 0[12]:00:00 UTC \(in /);
  });

  test('the run dialog: /workflow alone opens it; invalid input is shown in it; a submission runs through the same path, access check and audit', async () => {
    let since = stub.mark();
    await command('UOPER', '');
    const dialog = await stub.waitFor('views.open', () => true, { since, what: 'the dialog' });
    const view = dialog.body.view as {
      type: string;
      callback_id: string;
      private_metadata: string;
      blocks: { block_id?: string; element?: { options?: { text: { text: string }; value: string }[] } }[];
    };
    assert.equal(view.type, 'modal');
    const picker = view.blocks.find((b) => b.block_id === 'workflow')!.element!.options!;
    assert.ok(
      picker.some((o) => o.value === String(HELD) && /^9302 held · pending: process \d+$/.test(o.text.text)),
      JSON.stringify(picker),
    );
    assert.ok(!view.blocks.some((b) => b.block_id === 'force'), 'no force for an operator');
    since = stub.mark();
    await command('UADMIN', 'run');
    const adminView = (await stub.waitFor('views.open', () => true, { since, what: "the admin's dialog" })).body.view as { blocks: { block_id?: string }[] };
    assert.ok(
      adminView.blocks.some((b) => b.block_id === 'force'),
      'force for an admin',
    );

    const submit = async (user: string, values: Record<string, unknown>) => {
      const payload = {
        type: 'view_submission',
        team: { id: 'T0TEST', domain: 'test' },
        user: { id: user, username: NAMES[user], name: NAMES[user], team_id: 'T0TEST' },
        api_app_id: 'A0TEST',
        token: 'verification-token-unused',
        trigger_id: `${Date.now()}.${Math.random()}`,
        view: {
          id: 'V1',
          type: 'modal',
          callback_id: view.callback_id,
          private_metadata: view.private_metadata,
          state: { values },
          team_id: 'T0TEST',
          app_id: 'A0TEST',
        },
      };
      return postSigned(url, new URLSearchParams({ payload: JSON.stringify(payload) }).toString(), FORM, { secret: SECRET });
    };
    const values = (workflow: number, mode: string, target: string | null, force = false) => ({
      workflow: { value: { type: 'static_select', selected_option: { value: String(workflow) } } },
      mode: { value: { type: 'static_select', selected_option: { value: mode } } },
      target: { value: { type: 'plain_text_input', value: target } },
      ...(force ? { force: { value: { type: 'checkboxes', selected_options: [{ value: 'force' }] } } } : {}),
    });

    // Invalid: shown in the dialog, nothing run.
    const before = Number((await sql<{ n: number }>`SELECT count(*)::int AS n FROM workflow_runs`.execute(t.db)).rows[0]!.n);
    const invalid = await submit('UOPER', values(FLAKY, 'single_subject', null));
    assert.equal(invalid.status, 200);
    assert.deepEqual(JSON.parse(invalid.text), {
      response_action: 'errors',
      errors: { target: 'single_subject needs the subject id (a positive whole number).' },
    });
    const both = JSON.parse((await submit('UOPER', values(FLAKY, 'global_batch', '12'))).text);
    assert.equal(both.response_action, 'errors');
    assert.match(both.errors.target, /global_batch takes no id/);
    const refusals = await eventually(
      async () => {
        const rows = await t.db.selectFrom('audit_log').selectAll().where('action', '=', 'dialog:run').orderBy('id').execute();
        return rows.length === 2 ? rows : undefined;
      },
      'both invalid submissions audited',
      10_000,
    );
    assert.deepEqual(
      refusals.map((r) => [r.actor, r.outcome, r.source]),
      [
        ['UOPER (olga)', 'invalid', 'slack'],
        ['UOPER (olga)', 'invalid', 'slack'],
      ],
    );
    assert.match(String(refusals[0]!.reason), /single_subject needs the subject id/);

    // An operator who adds force (the dialog never offered it): refused by the access check, audited.
    since = stub.mark();
    await submit('UOPER', values(FLAKY, 'global_batch', null, true));
    await stub.waitFor('chat.postEphemeral', (c) => c.body.user === 'UOPER' && /needs the admin role/.test(messageText(c)), {
      since,
      what: 'the permission refusal',
    });
    const denied = await t.db
      .selectFrom('audit_log')
      .selectAll()
      .where('actor', '=', 'UOPER (olga)')
      .where('action', '=', 'force')
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    assert.equal(denied.outcome, 'refused');
    assert.equal(Number((await sql<{ n: number }>`SELECT count(*)::int AS n FROM workflow_runs`.execute(t.db)).rows[0]!.n), before);

    // Valid: a run of that workflow, requested by the user, reported in the channel the dialog came from.
    await sql`UPDATE flaky_items SET result = NULL WHERE id > 12`.execute(t.db);
    since = stub.mark();
    const ok = await submit('UOPER', values(FLAKY, 'global_batch', null));
    assert.equal(ok.status, 200);
    assert.equal(ok.text, '');
    const run = await eventually(
      () => t.db.selectFrom('workflow_runs').selectAll().where('workflow_id', '=', FLAKY).where('id', '>', before).executeTakeFirst(),
      'the dialog run',
      15_000,
    );
    assert.equal(run.requested_by, 'UOPER (olga)');
    assert.equal(run.notify_channel, OPS);
    await stub.waitFor('chat.postMessage', (c) => c.body.channel === OPS && c.body.text.includes(`Run #${run.id} `), { since, what: 'its run message' });
    const accepted = await t.db.selectFrom('audit_log').selectAll().where('run_id', '=', run.id).where('outcome', '=', 'accepted').executeTakeFirstOrThrow();
    assert.equal(accepted.actor, 'UOPER (olga)');
    assert.equal(accepted.source, 'slack');
  });

  test('every message and view the app sent passed the Block Kit check', () => {
    assert.ok(stub.callsTo('views.open').length > 0);
    assert.deepEqual(stub.problems, []);
  });

  test('whoami: the role and the grants that give it', async () => {
    const since = stub.mark();
    await command('UOPER', 'whoami');
    const answer = messageText(await stub.waitFor('chat.postEphemeral', (c) => c.body.user === 'UOPER', { since, what: 'whoami' }));
    assert.match(answer, /you are <@UOPER> \(slack\): operator/);
    assert.match(answer, /• viewer to everyone \(\*\)/);
    assert.match(answer, /• operator to UOPER/);
    assert.doesNotMatch(answer, /admin/);
  });

  test('a detached run the serving instance refuses is announced where runs are', async () => {
    // The rate limit of LIMITED is an hour and it ran in the plan test: the queue accepts, the serving instance refuses.
    const since = stub.mark();
    const workflow = t.workflows.find((w) => w.id === LIMITED)!;
    const result = await t.service.execute(
      { verb: 'run', workflow: String(LIMITED), mode: 'global_batch', force: false, detach: true },
      { id: 'ana@laptop', source: 'cli' },
      'cli',
    );
    assert.equal(result.kind, 'refused', JSON.stringify(result));
    assert.ok(result.kind === 'refused' && result.reason === 'rate_limited' && result.runId !== undefined);
    assert.match(
      result.message,
      /refused by the serving instance: workflow 9303 last started a batch at .* UTC \((just now|\d+ s ago)\); the next start is allowed at .* UTC \(in (59 min \d\d s|1 h 00 min); force starts it now\)/,
    );
    const announced = await stub.waitFor('chat.postMessage', (c) => c.body.channel === NOTIFY && c.body.text.includes(`Run #${result.runId} `), {
      since,
      what: 'the refusal in the notify channel',
    });
    assert.match(announced.body.text, /refused/);
    assert.match(messageText(announced), /\*Refused\*/);
    assert.equal(workflow.id, LIMITED);
  });
});
