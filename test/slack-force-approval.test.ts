// Two-person approval for force, through the real Bolt app over HTTP with
// signed requests and the Web API stand-in (every message checked against
// Block Kit's limits by the stub): a force of a workflow that requires
// approval posts a request with Approve and Reject; the requester cannot
// approve their own, a non-admin cannot decide, a second admin's approval
// forces once however often it is clicked, a rejection forces nothing, and
// an expired request forces nothing; each decision is audited and updates
// the message.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { createSlackApp, type SlackApp } from '../src/chat/slack/app.ts';
import { loadConfig } from '../src/config.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { eventually } from './helpers/cli.ts';
import { quietLog, testEngine, type TestEngine } from './helpers/engine.ts';
import { blockActionsBody, FORM, postSigned, slashCommandBody } from './helpers/slack-sign.ts';
import { buttons, messageText, startSlackStub, type SlackCall, type SlackStub } from './helpers/slack-stub.ts';

const SECRET = 'test-signing-secret-approval';
const OPS = 'C0OPS';
const GUARDED = 9401;
const SHORT = 9402;
const NAMES: Record<string, string> = { UADMIN: 'ada', UADMIN2: 'bob', UOPER: 'olga' };
const ACCESS = [
  { role: 'viewer', to: ['*'] },
  { role: 'operator', to: ['UOPER'] },
  { role: 'admin', to: ['UADMIN', 'UADMIN2'] },
];

describe('two-person approval for force, in Slack', () => {
  let stub: SlackStub;
  let t: TestEngine;
  let slack: SlackApp;
  let url: string;

  before(async () => {
    stub = await startSlackStub();
    const guarded = {
      ...itemsWorkflow({ id: GUARDED, name: 'guarded', table: 'guarded_items', rateLimitSeconds: 0, handle: async ({ id }) => `ok ${id}` }),
      forceApproval: true,
    };
    // A request that expires a second after it is filed: the test polls for the expiry, with a deadline.
    const short = {
      ...itemsWorkflow({ id: SHORT, name: 'short', table: 'short_items', rateLimitSeconds: 0, handle: async ({ id }) => `ok ${id}` }),
      forceApproval: { expiresAfterSeconds: 1 },
    };
    t = await testEngine('slack_force_approval', [guarded, short], async (db) => {
      await createItems(db, 3, 'guarded_items');
      await createItems(db, 3, 'short_items');
    });
    const config = loadConfig({
      SLACK_SIGNING_SECRET: SECRET,
      SLACK_BOT_TOKEN: 'xoxb-test-token',
      SLACK_API_URL: stub.url,
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
  });

  after(async () => {
    await slack?.stop();
    await t?.close();
    await stub?.close();
  });

  async function command(user: string, text: string) {
    const body = slashCommandBody({ text, user_id: user, user_name: NAMES[user], channel_id: OPS, response_url: `${stub.responseUrl}cmd` });
    assert.equal((await postSigned(url, body, FORM, { secret: SECRET })).status, 200);
  }

  async function click(user: string, call: SlackCall, actionId: string) {
    const button = buttons(call).find((b) => b.action_id === actionId);
    assert.ok(button, `a ${actionId} button: ${JSON.stringify(buttons(call))}`);
    assert.ok(button.confirm, `${actionId} asks for confirmation`);
    const body = blockActionsBody({
      user_id: user,
      user_name: NAMES[user],
      channel_id: OPS,
      message_ts: call.response.ts,
      action_id: actionId,
      value: button.value!,
      response_url: `${stub.responseUrl}action`,
    });
    assert.equal((await postSigned(url, body, FORM, { secret: SECRET })).status, 200);
  }

  const ephemeralTo = (user: string, since: number, match: RegExp, what: string) =>
    stub.waitFor('chat.postEphemeral', (c) => c.body.user === user && match.test(messageText(c)), { since, what });
  const runsOf = async (workflowId: number) =>
    Number((await sql<{ n: number }>`SELECT count(*)::int AS n FROM workflow_runs WHERE workflow_id = ${workflowId}`.execute(t.db)).rows[0]!.n);
  const lastAuditId = async () => Number((await sql<{ id: number | null }>`SELECT max(id)::int AS id FROM audit_log`.execute(t.db)).rows[0]!.id ?? 0);
  const auditSince = (id: number) => t.db.selectFrom('audit_log').selectAll().where('id', '>', id).orderBy('id').execute();

  /** Files a force as `user` and returns its request id and the request's channel message. */
  async function fileForce(user: string, workflowId: number): Promise<{ requestId: number; posted: SlackCall }> {
    const since = stub.mark();
    await command(user, `force ${workflowId}`);
    const told = await ephemeralTo(user, since, /approval required: request #\d+/, 'the requester told approval is required');
    const requestId = Number(/request #(\d+)/.exec(messageText(told))![1]);
    assert.match(messageText(told), new RegExp(`/workflow force --approve ${requestId}`));
    const posted = await stub.waitFor('chat.postMessage', (c) => c.body.channel === OPS && c.body.text.includes(`Force request #${requestId} `), {
      since,
      what: 'the request message',
    });
    assert.deepEqual(
      buttons(posted).map((b) => b.action_id),
      ['workflow_force_approve', 'workflow_force_reject'],
    );
    return { requestId, posted };
  }

  test('the requester cannot approve; a non-admin cannot; a second admin approves, double-clicked, and the force happens once', async () => {
    const before = await lastAuditId();
    const { requestId, posted } = await fileForce('UADMIN', GUARDED);
    assert.equal(await runsOf(GUARDED), 0, 'nothing forced yet');
    assert.match(messageText(posted), /<@UADMIN> asks to force workflow 9401 guarded/);

    // The requester's own approval: refused, audited, the request still pending.
    let since = stub.mark();
    await click('UADMIN', posted, 'workflow_force_approve');
    await ephemeralTo('UADMIN', since, /you filed force request #\d+: another admin must approve it/, 'the requester refused');
    // A second own click is refused again (a refused click claims nothing).
    since = stub.mark();
    await click('UADMIN', posted, 'workflow_force_approve');
    await ephemeralTo('UADMIN', since, /you filed force request/, 'the requester refused again');

    // An operator's click: refused for the role, audited.
    since = stub.mark();
    await click('UOPER', posted, 'workflow_force_approve');
    await ephemeralTo('UOPER', since, /needs the admin role/, 'the operator refused');
    assert.equal(await runsOf(GUARDED), 0, 'still nothing forced');
    assert.equal((await t.db.selectFrom('force_requests').select('status').where('id', '=', requestId).executeTakeFirstOrThrow()).status, 'pending');

    // A second admin, clicking twice at once: one decision, one run.
    since = stub.mark();
    await Promise.all([click('UADMIN2', posted, 'workflow_force_approve'), click('UADMIN2', posted, 'workflow_force_approve')]);
    const run = await eventually(
      () => t.db.selectFrom('workflow_runs').selectAll().where('workflow_id', '=', GUARDED).executeTakeFirst(),
      'the forced run',
      15_000,
    );
    await eventually(async () => (await t.views.get(run.id))?.status === 'completed', 'the forced run to complete', 15_000);
    const updated = await stub.waitFor('chat.update', (c) => c.body.ts === posted.response.ts && /approved: run #\d+/.test(c.body.text), {
      since,
      what: 'the request message updated with the run',
    });
    assert.match(messageText(updated), new RegExp(`approved by <@UADMIN2>.*forced as run #${run.id}`));
    assert.deepEqual(buttons(updated), [], 'a decided request offers no buttons');
    assert.equal(await runsOf(GUARDED), 1, 'one run');
    const request = await t.db.selectFrom('force_requests').selectAll().where('id', '=', requestId).executeTakeFirstOrThrow();
    assert.equal(request.status, 'approved');
    assert.equal(request.decided_by, 'UADMIN2 (bob)');
    assert.equal(request.run_id, run.id);

    const audit = (await auditSince(before)).filter((a) => a.outcome !== 'event' || a.action === 'force_expire');
    const entries = audit.map((a) => `${a.action} ${a.outcome} ${a.actor}`);
    assert.deepEqual(entries, [
      'force_request accepted UADMIN (ada)',
      'force_approve refused UADMIN (ada)',
      'force_approve refused UADMIN (ada)',
      'force_approve refused UOPER (olga)',
      'force_approve accepted UADMIN2 (bob)',
      'force accepted UADMIN2 (bob)',
    ]);
    const forced = audit.at(-1)!;
    assert.equal(forced.run_id, run.id);
    assert.deepEqual([forced.details.force_request, forced.details.requested_by, forced.details.approved_by], [requestId, 'UADMIN (ada)', 'UADMIN2 (bob)']);
    assert.equal(audit[1]!.details.refusal, 'own_request');
    assert.equal(audit[3]!.details.refusal, 'permission');
  });

  test('a rejection forces nothing; an approval after it is refused, saying so', async () => {
    const runs = await runsOf(GUARDED);
    const { requestId, posted } = await fileForce('UADMIN', GUARDED);
    let since = stub.mark();
    await click('UADMIN2', posted, 'workflow_force_reject');
    await ephemeralTo('UADMIN2', since, new RegExp(`force request #${requestId} rejected; nothing was forced`), 'the rejection answered');
    const updated = await stub.waitFor('chat.update', (c) => c.body.ts === posted.response.ts && /rejected/.test(c.body.text), {
      since,
      what: 'the request message updated',
    });
    assert.match(messageText(updated), /rejected by <@UADMIN2>: nothing was forced/);
    since = stub.mark();
    await command('UADMIN2', `force --approve ${requestId}`);
    await ephemeralTo('UADMIN2', since, /was already rejected by UADMIN2 \(bob\); nothing more was done/, 'the late approval refused');
    assert.equal(await runsOf(GUARDED), runs, 'nothing forced');
  });

  test('an unapproved request expires: audited, its message updated, and an approval after it forces nothing', async () => {
    const before = await lastAuditId();
    const { requestId, posted } = await fileForce('UADMIN', SHORT);
    const since = stub.mark();
    const updated = await stub.waitFor('chat.update', (c) => c.body.ts === posted.response.ts && /expired/.test(c.body.text), {
      since,
      what: 'the request message showing the expiry',
      timeoutMs: 15_000,
    });
    assert.match(messageText(updated), /expired at .* without an approval: nothing was forced/);
    assert.deepEqual(buttons(updated), []);
    const expiries = (await auditSince(before)).filter((a) => a.action === 'force_expire');
    assert.equal(expiries.length, 1, 'audited once');
    assert.equal(expiries[0]!.details.force_request, requestId);
    const mark = stub.mark();
    await command('UADMIN2', `force --approve ${requestId}`);
    await ephemeralTo('UADMIN2', mark, /was already expired at/, 'the late approval refused');
    assert.equal(await runsOf(SHORT), 0, 'nothing forced');
  });
});
