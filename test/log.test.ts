import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { createLogger, redactUrl } from '../src/log.ts';

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
