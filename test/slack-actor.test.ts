// Who a Slack request comes from (src/chat/slack/actor.ts): the roles
// WORKFLOW_ACCESS grants, user groups looked up through the Web API (a fake
// client here, with a clock the test moves), and the channel rule for runs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Grant } from '../src/access-grants.ts';
import { createActorResolver, GROUP_CACHE_MS, type UserGroupsClient } from '../src/chat/slack/actor.ts';
import { quietLog } from './helpers/engine.ts';

function fakeGroups(members: Map<string, string[]>) {
  let calls = 0;
  const client: UserGroupsClient = {
    usergroups: {
      users: {
        list: async ({ usergroup }) => {
          calls++;
          return { users: members.get(usergroup) ?? [] };
        },
      },
    },
  };
  return { client, calls: () => calls };
}

test('an admin removed from the admin group loses the role within 30 s: membership is cached 30 s at most', async () => {
  assert.ok(GROUP_CACHE_MS <= 30_000, `cached ${GROUP_CACHE_MS} ms`);
  const members = new Map([['S0ADMINS', ['UALICE']]]);
  const { client, calls } = fakeGroups(members);
  let now = 1_000_000;
  const actors = createActorResolver({
    grants: [
      { role: 'viewer', to: ['*'] },
      { role: 'admin', to: ['S0ADMINS'] },
    ],
    client,
    log: quietLog,
    now: () => now,
  });
  assert.ok((await actors.resolve({ userId: 'UALICE' })).roles!.has('admin'));
  members.set('S0ADMINS', []);
  now += 29_000;
  assert.ok((await actors.resolve({ userId: 'UALICE' })).roles!.has('admin'), 'still cached within 30 s');
  assert.equal(calls(), 1);
  now += 1_001;
  const after = await actors.resolve({ userId: 'UALICE' });
  assert.equal(after.roles!.has('admin'), false, 'looked up again after 30 s: no longer an admin');
  assert.deepEqual([...after.roles!], ['viewer']);
  assert.equal(calls(), 2);
});

test('a channel-limited grant holds over runs requested in its channels only; an unlimited one over every run', async () => {
  const grants: Grant[] = [
    { role: 'viewer', to: ['*'] },
    { role: 'operator', to: ['UOPS'], channels: ['C0OPS'] },
    { role: 'operator', to: ['UEVERY'] },
  ];
  const actors = createActorResolver({ grants, client: fakeGroups(new Map()).client, log: quietLog });
  const ops = await actors.resolve({ userId: 'UOPS', channel: 'C0OPS' });
  assert.deepEqual([...ops.roles!].sort(), ['operator', 'viewer']);
  assert.deepEqual([...ops.rolesOver!('C0OPS')].sort(), ['operator', 'viewer']);
  assert.deepEqual([...ops.rolesOver!('C0OTHER')], ['viewer']);
  assert.deepEqual([...ops.rolesOver!(null)], ['viewer'], 'a run from the CLI or a trigger is in no channel');
  const every = await actors.resolve({ userId: 'UEVERY', channel: 'C0OPS' });
  assert.deepEqual([...every.rolesOver!('C0OTHER')].sort(), ['operator', 'viewer']);
  assert.deepEqual([...every.rolesOver!(null)].sort(), ['operator', 'viewer']);
});
