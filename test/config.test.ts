import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';

test('defaults with nothing configured: embedded database, operators everywhere, no admins', () => {
  const config = loadConfig({});
  assert.equal(config.DATABASE_URL, undefined);
  assert.equal(config.WORKFLOW_DATA_DIR, '.data');
  assert.equal(config.PORT, 3000);
  assert.deepEqual(config.WORKFLOW_ACCESS, [{ role: 'operator', to: ['*'] }]);
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
