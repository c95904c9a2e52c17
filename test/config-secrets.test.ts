// No error, log line or message shows a credential from the environment,
// however malformed the variable holding it: a URL variable with a password
// (well-formed, misspelt, one slash short, no scheme, a bad port…) and the
// tokens. Checked on loadConfig's error for many generated shapes, and on
// what the real CLI prints (stdout and stderr) for a table of them, including
// values that pass validation and fail later (a database that does not
// answer, a port out of range).
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';
import { redactCredentials } from '../src/lib/redact.ts';
import { runCli } from './helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

/** Two halves, so a shape that cut the secret at a special character and showed the rest would be caught too. */
function secret(specials = '@:/?#%&= !$*+,;'): { value: string; parts: string[] } {
  const a = `Pa${randomBytes(6).toString('hex')}`;
  const b = `Pb${randomBytes(6).toString('hex')}`;
  const middle = Array.from({ length: randomInt(0, 3) }, () => specials[randomInt(specials.length)]).join('');
  return { value: `${a}${middle}${b}`, parts: [a, b] };
}

/** URL shapes holding a password, well-formed or not. `specials` are what the password may hold in that shape. */
const SHAPES: { shape: (pw: string) => string; specials?: string }[] = [
  { shape: (pw) => `htp://user:${pw}@127.0.0.1:1/x` },
  { shape: (pw) => `postgres:/user:${pw}@127.0.0.1/db` },
  { shape: (pw) => `postgres:user:${pw}@127.0.0.1/db` },
  { shape: (pw) => `postgresql:///user:${pw}@127.0.0.1/db` },
  { shape: (pw) => `user:${pw}@127.0.0.1:5432/db` },
  { shape: (pw) => `//user:${pw}@127.0.0.1/db` },
  { shape: (pw) => `http://user:${pw}@` },
  { shape: (pw) => `http://${pw}@127.0.0.1` },
  { shape: (pw) => `https://user:${pw}@127.0.0.1:99999/` },
  { shape: (pw) => `http://user:${pw}@[::1/` },
  { shape: (pw) => `http://user:${pw}@host name/` },
  { shape: (pw) => ` mysql://user:${pw}@db/x \n` },
  { shape: (pw) => `HTTP://USER:${pw}@HOST` },
  { shape: (pw) => `postgres://user:${pw}@127.0.0.1:99999/db` },
  { shape: (pw) => `postgres://127.0.0.1/db?sslmode=require&password=${pw}`, specials: '@:/!$*+,' },
  { shape: (pw) => `http://user:${pw}`, specials: '!$*+,' },
  { shape: (pw) => `ftp://user:${pw}@127.0.0.1/`, specials: '@:/?#%&= ' },
];

const URL_VARIABLES = ['DATABASE_URL', 'DATABASE_LOCK_URL', 'OLLAMA_URL', 'SLACK_API_URL'];

function assertHidden(text: string, parts: string[], what: string): void {
  for (const part of parts) assert.ok(!text.includes(part), `${what} shows ${part}:\n${text}`);
}

test('property: loadConfig never shows a password in a URL variable, in any of many shapes', () => {
  let errors = 0;
  for (let i = 0; i < 2_000; i++) {
    const { shape, specials } = SHAPES[i % SHAPES.length]!;
    const variable = URL_VARIABLES[randomInt(URL_VARIABLES.length)]!;
    const pw = secret(specials);
    const value = shape(pw.value);
    try {
      loadConfig({ [variable]: value });
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      assert.match(error.message, new RegExp(`^invalid environment: ${variable}: expected `));
      assertHidden(error.message, pw.parts, `${variable}=${JSON.stringify(value)}`);
      errors++;
    }
    // Whatever the variable, the redaction on its own hides it.
    assertHidden(redactCredentials(value), pw.parts, `redactCredentials(${JSON.stringify(value)})`);
  }
  assert.ok(errors > 1_000, `${errors} of the shapes were refused`);
});

test('tokens and secrets are never shown, only their length; any other variable is shown redacted', () => {
  for (const [variable, extra] of [
    ['SLACK_BOT_TOKEN', {}],
    ['SLACK_APP_TOKEN', {}],
    ['METRICS_TOKEN', {}],
  ] as const) {
    const pw = secret();
    const value = `x${pw.value}`.slice(0, 15);
    assert.throws(
      () => loadConfig({ [variable]: value, ...extra }),
      (error: Error) => {
        assertHidden(error.message, [value], variable);
        return new RegExp(`${variable}: expected .*\\(got a value of \\d+ characters, not shown\\)`).test(error.message);
      },
    );
  }
  // A URL with a password pasted into the wrong variable.
  for (const variable of ['PORT', 'LOG_LEVEL', 'WORKFLOW_HEARTBEAT_MS', 'WORKFLOW_CONTINUOUS', 'SLACK_TEAM_ID']) {
    const pw = secret();
    assert.throws(
      () => loadConfig({ [variable]: `postgres://ana:${pw.value}@db/x` }),
      (error: Error) => {
        assertHidden(error.message, pw.parts, variable);
        return error.message.includes(`${variable}: expected`) && error.message.includes('[redacted]');
      },
    );
  }
});

describe('the real CLI', () => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase('config_secrets');
  });
  after(async () => {
    await database?.drop();
  });

  test('prints no password, on stdout or stderr, for malformed and unusable URL variables and bad tokens', async () => {
    const cases: { env: (pw: string) => NodeJS.ProcessEnv; code: number }[] = [
      { env: (pw) => ({ DATABASE_URL: `postgres:/user:${pw}@127.0.0.1/db` }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: `user:${pw}@127.0.0.1/db` }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: `postgres://user:${pw}@127.0.0.1:1/db` }), code: 1 },
      { env: (pw) => ({ DATABASE_URL: `postgres://user:${pw}@127.0.0.1:99999/db` }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: `postgres://user:${pw}@[::1/db` }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: `postgres://127.0.0.1:1/db?password=${pw}` }), code: 1 },
      { env: (pw) => ({ DATABASE_URL: database.url, DATABASE_LOCK_URL: `postgresql:user:${pw}@127.0.0.1/db` }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: database.url, OLLAMA_URL: `htp://user:${pw}@127.0.0.1:11434` }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: database.url, OLLAMA_URL: `http://user:${pw}@127.0.0.1:99999` }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: database.url, SLACK_API_URL: `https//user:${pw}@slack.example/api` }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: database.url, SLACK_API_URL: `http://user:${pw}@[::1` }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: database.url, SLACK_BOT_TOKEN: `xoxp-${pw}` }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: database.url, SLACK_APP_TOKEN: `xoxb-${pw}` }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: database.url, SLACK_SIGNING_SECRET: pw, PORT: 'x' }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: database.url, METRICS_TOKEN: pw.slice(0, 10) }), code: 2 },
      { env: (pw) => ({ DATABASE_URL: database.url, PORT: `http://u:${pw}@x` }), code: 2 },
      // Accepted and used: the password is sent as basic auth, never printed.
      { env: (pw) => ({ DATABASE_URL: database.url, OLLAMA_URL: `http://user:${pw}@127.0.0.1:1` }), code: 0 },
    ];
    for (const { env, code } of cases) {
      const pw = secret('@:!$*+,');
      const environment = env(pw.value);
      const parts = environment.METRICS_TOKEN ? [environment.METRICS_TOKEN] : pw.parts;
      const result = await runCli(['workflows'], { LOG_LEVEL: 'debug', ...environment });
      const what = JSON.stringify(environment);
      assert.equal(result.code, code, `${what}: exit ${result.code}\n${result.stdout}\n${result.stderr}`);
      assertHidden(result.stdout, parts, `stdout for ${what}`);
      assertHidden(result.stderr, parts, `stderr for ${what}`);
      if (code === 2) assert.match(result.stderr, /error: invalid environment: [A-Z_]+: expected|error: /, what);
    }
  });
});
