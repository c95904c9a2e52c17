import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_ACCESS } from '../src/access-grants.ts';
import { ConfigError, loadConfig } from '../src/config.ts';

test('defaults with nothing configured: embedded database, no access grants (the Slack app falls back to viewers), no team or metrics restriction', () => {
  const config = loadConfig({});
  assert.equal(config.DATABASE_URL, undefined);
  assert.equal(config.WORKFLOW_DATA_DIR, '.data');
  assert.equal(config.PORT, 3000);
  assert.equal(config.WORKFLOW_ACCESS, undefined);
  assert.deepEqual(DEFAULT_ACCESS, [{ role: 'viewer', to: ['*'] }]);
  assert.equal(config.SLACK_TEAM_ID, undefined);
  assert.equal(config.METRICS_TOKEN, undefined);
});

test('SLACK_TEAM_ID: one or more workspace or organisation ids, comma-separated', () => {
  assert.deepEqual(loadConfig({ SLACK_TEAM_ID: 'T0123ABCD' }).SLACK_TEAM_ID, ['T0123ABCD']);
  assert.deepEqual(loadConfig({ SLACK_TEAM_ID: ' T0123ABCD, E0ORG1 ,T0123ABCD' }).SLACK_TEAM_ID, ['T0123ABCD', 'E0ORG1']);
  for (const bad of ['t0123', 'T0123,', 'C0123ABC', 'T0123 T0456', 'T0123;E0456']) {
    assert.throws(() => loadConfig({ SLACK_TEAM_ID: bad }), /SLACK_TEAM_ID: expected comma-separated Slack workspace \(T…\) or organisation \(E…\) ids/, bad);
  }
});

test('METRICS_TOKEN: at least 16 characters, never shown', () => {
  assert.equal(loadConfig({ METRICS_TOKEN: 'a-long-enough-token' }).METRICS_TOKEN, 'a-long-enough-token');
  assert.throws(
    () => loadConfig({ METRICS_TOKEN: 'short-tok3n' }),
    (error: Error) => /METRICS_TOKEN: expected a bearer token of at least 16 characters \(got a value of 11 characters, not shown\)/.test(error.message),
  );
});

for (const [variable, value, expected] of [
  ['PORT', 'abc', /PORT: expected a number/],
  ['PORT', '70000', /PORT: expected a number <= 65535/],
  ['LOG_LEVEL', 'loud', /LOG_LEVEL: expected one of fatal, error/],
  ['DATABASE_URL', 'mysql://x', /DATABASE_URL: expected a postgres:\/\/ or postgresql:\/\/ URL/],
  ['WORKFLOW_HEARTBEAT_MS', '-1', /WORKFLOW_HEARTBEAT_MS: expected a number > 0/],
  ['SLACK_API_URL', 'nope', /SLACK_API_URL: expected an http:\/\/ or https:\/\/ URL/],
  ['WORKFLOW_ACCESS', '{not json', /WORKFLOW_ACCESS: expected JSON/],
  ['WORKFLOW_ACCESS', '[{"role":"root","to":["U1A"]}]', /WORKFLOW_ACCESS: expected one of viewer, operator, admin at 0\.role/],
] as const) {
  test(`${variable}=${value} stops start-up naming the variable`, () => {
    assert.throws(
      () => loadConfig({ [variable]: value }),
      (error: Error) => error instanceof ConfigError && expected.test(error.message),
    );
  });
}

test('errors about secrets never show them', () => {
  assert.throws(
    () => loadConfig({ SLACK_BOT_TOKEN: 'hunter2-not-a-bot-token' }),
    (error: Error) => /SLACK_BOT_TOKEN: expected a bot token/.test(error.message) && !error.message.includes('hunter2'),
  );
  assert.throws(
    () => loadConfig({ DATABASE_URL: 'mysql://ana:s3cret@db/x' }),
    (error: Error) => /DATABASE_URL/.test(error.message) && !error.message.includes('s3cret'),
  );
});

test('Slack modes need the bot token', () => {
  assert.throws(() => loadConfig({ SLACK_SIGNING_SECRET: 'abc' }), /SLACK_BOT_TOKEN: expected .*required when/);
  assert.equal(loadConfig({ SLACK_SIGNING_SECRET: 'abc', SLACK_BOT_TOKEN: 'xoxb-1' }).SLACK_BOT_TOKEN, 'xoxb-1');
});
