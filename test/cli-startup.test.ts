import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { BIN, runCli, startCli } from './helpers/cli.ts';
import type { TestDatabase } from './helpers/database.ts';
import { migratedDatabase, type TestDb } from './helpers/engine.ts';

// What a CLI process loads and prints, run as users run it (bin/workflow.js →
// dist/). How fast it starts is measured in bench/startup.ts; here, what it
// loads: a module it does not load costs nothing.

const RECORDER = pathToFileURL(path.join(import.meta.dirname, 'fixtures/record-modules.ts')).href;
const scratch = mkdtempSync(path.join(os.tmpdir(), 'cli-startup-'));
let recordings = 0;

/** Runs the CLI with the recorder hook; returns its result and the packages and dist/ modules it loaded. */
async function loaded(args: string[], env: NodeJS.ProcessEnv = {}) {
  const file = path.join(scratch, `modules-${++recordings}.txt`);
  const result = await runCli(args, { NODE_OPTIONS: `--import=${RECORDER}`, RECORD_MODULES_TO: file, ...env });
  const urls = readFileSync(file, 'utf8').split('\n');
  const packages = new Set(urls.map((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1]).filter((p) => p !== undefined));
  const own = urls.filter((u) => u.includes('/dist/src/')).map((u) => u.slice(u.indexOf('/dist/src/') + '/dist/src/'.length));
  return { result, packages, own };
}

describe('what a CLI process loads', () => {
  for (const args of [['help'], ['help', 'run'], ['--help'], ['--version']]) {
    test(`workflow ${args.join(' ')}: no database driver, query builder, engine, Slack, metrics or logger`, async () => {
      const { result, packages, own } = await loaded(args, { DATABASE_URL: 'postgresql://nobody@127.0.0.1:1/none' });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, args[0] === '--version' ? /^\d+\.\d+\.\d+/ : /^Usage: workflow /);
      for (const pkg of ['@slack/bolt', 'prom-client', 'pg', 'kysely', 'pino', 'zod', 'undici'])
        assert.ok(!packages.has(pkg), `${pkg} loaded: ${[...packages].join(', ')}`);
      assert.deepEqual(
        own.filter((m) => /^(engine|db|chat|workflows)\/|^app\.js$/.test(m)),
        [],
      );
    });
  }

  describe('against a database', () => {
    let database: TestDatabase;
    let db: TestDb;
    before(async () => {
      ({ database, db } = await migratedDatabase('cli_startup'));
    });
    after(async () => {
      await db.destroy();
      await database.drop();
    });

    for (const args of [['list'], ['history'], ['status', '1'], ['workflows']]) {
      test(`workflow ${args.join(' ')}: no Slack, metrics or HTTP client`, async () => {
        const { result, packages, own } = await loaded(args, { DATABASE_URL: database.url });
        assert.ok(result.code === 0 || (args[0] === 'status' && result.code === 2), result.stderr);
        for (const pkg of ['@slack/bolt', '@slack/web-api', 'prom-client', 'undici']) assert.ok(!packages.has(pkg), `${pkg} loaded`);
        assert.deepEqual(
          own.filter((m) => m.startsWith('chat/')),
          [],
        );
      });
    }

    test('serve with the console chat: no Slack or metrics module', async () => {
      const file = path.join(scratch, `modules-${++recordings}.txt`);
      const serve = startCli(['serve'], { DATABASE_URL: database.url, NODE_OPTIONS: `--import=${RECORDER}`, RECORD_MODULES_TO: file });
      try {
        await serve.waitFor(/workflow-chatops serving on/);
      } finally {
        serve.child.kill('SIGTERM');
      }
      const result = await serve.exited;
      assert.equal(result.code, 0, result.stderr);
      const urls = readFileSync(file, 'utf8');
      for (const pkg of ['@slack/bolt', '@slack/web-api', 'prom-client']) assert.ok(!urls.includes(`/node_modules/${pkg}/`), `${pkg} loaded`);
      assert.match(urls, /\/dist\/src\/chat\/console\.js/);
    });

    test('with the default LOG_LEVEL, ordinary calls print no info lines (nor the Ollama line, with OLLAMA_URL set)', async () => {
      for (const args of [['list'], ['workflows'], ['history', '3001']]) {
        // LOG_LEVEL undefined: not passed, so the default (info) applies.
        const result = await runCli(args, { DATABASE_URL: database.url, OLLAMA_URL: 'http://127.0.0.1:9', LOG_LEVEL: undefined });
        assert.equal(result.code, 0, result.stderr);
        const infoLines = result.stderr
          .split('\n')
          .filter((line) => line !== '')
          .filter((line) => {
            try {
              return (JSON.parse(line) as { level: number }).level < 40;
            } catch {
              return false;
            }
          });
        assert.deepEqual(infoLines, [], `workflow ${args.join(' ')} printed info lines`);
      }
    });

    test('logs are JSON through a pipe, and readable text on a terminal (a pty)', async (t) => {
      const env = { DATABASE_URL: database.url, OLLAMA_URL: 'http://127.0.0.1:9', LOG_LEVEL: 'debug' };
      const piped = await runCli(['list'], env);
      assert.equal(piped.code, 0, piped.stderr);
      const line = piped.stderr.split('\n').find((l) => l.includes('summary and skills use ollama'));
      assert.ok(line, piped.stderr);
      assert.equal((JSON.parse(line) as { level: number }).level, 20);

      const hasScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;
      if (!hasScript) return t.skip('no script(1) here to give the CLI a terminal');
      const command = [process.execPath, BIN, 'list'].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
      const tty = spawnSync('script', ['-q', '-e', '-c', command, '/dev/null'], {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: 'dumb', ...env },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(tty.status, 0, tty.stdout + tty.stderr);
      const shown = tty.stdout.replace(/\x1b\[[0-9;]*m/g, '');
      assert.match(shown, /^\d\d:\d\d:\d\d\.\d{3} DEBUG summary and skills use ollama {2}workflow=3001 /m);
      assert.doesNotMatch(shown, /"level"/);
    });
  });
});
