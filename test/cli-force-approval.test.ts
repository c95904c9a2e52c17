// Two-person approval for force from the CLI, across real processes: a
// force of a workflow that requires approval files a request and says how
// to approve it (exit 3: nothing was forced); the same person's approval is
// refused; a second admin's `force --approve N` (the request filed in Slack
// by another person) carries the force out in the foreground, audited with
// both; `force --reject N` forces nothing.
import assert from 'node:assert/strict';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { sql } from 'kysely';
import { replaceDemoPostings } from '../src/workflows/postings/demo.ts';
import { runCli } from './helpers/cli.ts';
import type { TestDatabase } from './helpers/database.ts';
import { migratedDatabase, type TestDb } from './helpers/engine.ts';

const ME = `${os.userInfo().username}@${os.hostname()}`;
const MODULE = fileURLToPath(new URL('./fixtures/workflows/force-approval.ts', import.meta.url));

let database: TestDatabase;
let db: TestDb;
let env: NodeJS.ProcessEnv;

const runsOf9011 = async () => Number((await sql<{ n: number }>`SELECT count(*)::int AS n FROM workflow_runs WHERE workflow_id = 9011`.execute(db)).rows[0]!.n);

/** A request another person filed in Slack (test/slack-force-approval.test.ts files them through the app). */
async function filedInSlack(): Promise<number> {
  const { rows } = await sql<{ id: number }>`
    INSERT INTO force_requests (workflow_id, request, requested_by, requester, source, channel, expires_at)
    VALUES (9011, '{"mode":"global_batch","subject_id":null,"resume_run_id":null}', 'UADMIN (ada)', 'UADMIN', 'slack', 'C0OPS', now() + interval '15 minutes')
    RETURNING id`.execute(db);
  return rows[0]!.id;
}

beforeEach(async () => {
  ({ database, db } = await migratedDatabase('cli_force_approval'));
  await replaceDemoPostings(db, 20);
  env = { DATABASE_URL: database.url, WORKFLOW_MODULES: MODULE };
});

afterEach(async () => {
  await db.destroy();
  await database.drop();
});

describe('force approval in the CLI', () => {
  test('force files a request and says how to approve it; the requester cannot approve it; a second admin approves and the force runs once', async () => {
    const filed = await runCli(['force', '9011'], env);
    assert.equal(filed.code, 3, filed.stderr);
    // Exit 3 writes to stderr: nothing was forced.
    const id = Number(/approval required: request #(\d+)/.exec(filed.stderr)?.[1]);
    assert.ok(id > 0, filed.stderr);
    assert.match(filed.stderr, new RegExp(`another admin approves in Slack or with workflow force --approve ${id} before `));
    assert.equal(await runsOf9011(), 0, 'nothing forced');

    const own = await runCli(['force', '--approve', String(id)], env);
    assert.equal(own.code, 3, own.stderr);
    assert.match(own.stderr, new RegExp(`you filed force request #${id}: another admin must approve it`));
    assert.equal(await runsOf9011(), 0, 'nothing forced');
    const refusal = await db.selectFrom('audit_log').selectAll().where('action', '=', 'force_approve').executeTakeFirstOrThrow();
    assert.deepEqual([refusal.outcome, refusal.actor, refusal.details.refusal], ['refused', ME, 'own_request']);

    // A request ada filed in Slack, approved here by a second person: the force runs in the foreground.
    const slackRequest = await filedInSlack();
    const approved = await runCli(['force', '--approve', String(slackRequest)], env);
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(approved.stdout, /completed/);
    assert.equal(await runsOf9011(), 1, 'one run');
    const request = await db.selectFrom('force_requests').selectAll().where('id', '=', slackRequest).executeTakeFirstOrThrow();
    assert.equal(request.status, 'approved');
    assert.equal(request.decided_by, ME);
    const forced = await db.selectFrom('audit_log').selectAll().where('action', '=', 'force').where('outcome', '=', 'accepted').executeTakeFirstOrThrow();
    assert.equal(forced.run_id, request.run_id);
    assert.deepEqual([forced.details.requested_by, forced.details.approved_by, forced.details.force_request], ['UADMIN (ada)', ME, slackRequest]);

    // Approved once: a second approval does nothing more.
    const again = await runCli(['force', '--approve', String(slackRequest)], env);
    assert.equal(again.code, 3);
    assert.match(again.stderr, new RegExp(`force request #${slackRequest} was already approved by ${ME} \\(run #${request.run_id}\\)`));
    assert.equal(await runsOf9011(), 1, 'still one run');
  });

  test('--reject forces nothing; bad uses of --approve are usage errors', async () => {
    await runCli(['workflows'], env); // registers 9011
    const id = await filedInSlack();
    const rejected = await runCli(['force', '--reject', String(id)], env);
    assert.equal(rejected.code, 0, rejected.stderr);
    assert.match(rejected.stdout, new RegExp(`force request #${id} rejected; nothing was forced`));
    assert.equal(await runsOf9011(), 0);

    for (const args of [
      ['run', '9011', '--approve', '1'],
      ['force', '9011', '--approve', '1'],
      ['force', '--approve', '1', '--reject', '2'],
      ['force', '--approve', 'x'],
    ]) {
      const bad = await runCli(args, env);
      assert.equal(bad.code, 2, `${args.join(' ')}: ${bad.stdout}${bad.stderr}`);
    }
  });
});
