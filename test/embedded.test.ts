import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { EMBEDDED_APP_ROLE, embeddedServerState, ensureEmbeddedDatabase, ensureEmbeddedServer, stopEmbeddedServer } from '../src/db/embedded.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/ensure-embedded.ts', import.meta.url));
const TIMEOUT = { timeout: 120_000 };

const dataDirs: string[] = [];

after(async () => {
  const problems: string[] = [];
  for (const dir of dataDirs) {
    try {
      await stopEmbeddedServer(dir, { mode: 'fast' });
      await fs.rm(dir, { recursive: true, force: true });
    } catch (error) {
      problems.push(`${dir}: ${(error as Error).message}`);
    }
  }
  if (problems.length > 0) throw new Error(`cleanup failed: ${problems.join('; ')}`);
});

async function freshDataDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'workflow-embedded-'));
  // mkdtemp makes it 0700; as root the server runs as the postgres OS user, which must reach it.
  await fs.chmod(dir, 0o755);
  dataDirs.push(dir);
  return dir;
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {}); // a stopped server ends the session; the next query reports it
  await client.connect();
  return client;
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = await connect(url);
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

function ensureInAnotherProcess(dataDir: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FIXTURE, dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    // 'close' also proves the server holds none of the child's pipes.
    child.on('close', (code) => resolve({ code, stdout: stdout.trim(), stderr }));
  });
}

test('starts a server in a fresh directory, then reuses it', TIMEOUT, async () => {
  const dir = await freshDataDir();
  const url = await ensureEmbeddedServer(dir);
  assert.match(url, /^postgresql:\/\/postgres:[0-9a-f]{48}@127\.0\.0\.1:\d+\/postgres$/);

  const [settings] = await query<{ listen: string; max: string; answer: number }>(
    url,
    "SELECT current_setting('listen_addresses') AS listen, current_setting('max_connections') AS max, 6 * 7 AS answer",
  );
  assert.deepEqual(settings, { listen: '127.0.0.1', max: '200', answer: 42 });
  if (process.getuid?.() === 0) assert.notEqual((await fs.stat(path.join(dir, 'pg'))).uid, 0, 'the cluster must not belong to root');

  const first = await embeddedServerState(dir);
  assert.equal(await ensureEmbeddedServer(dir), url);
  assert.equal((await embeddedServerState(dir))?.pid, first?.pid, 'the second call must attach, not start another server');
});

test('keeps its data and its port across stop and start', TIMEOUT, async () => {
  const dir = await freshDataDir();
  const url = await ensureEmbeddedServer(dir);
  await query(url, 'CREATE TABLE kept (value text); INSERT INTO kept VALUES ($$still here$$)');

  assert.equal(await stopEmbeddedServer(dir), 'stopped');
  assert.equal(await embeddedServerState(dir), undefined);

  assert.equal(await ensureEmbeddedServer(dir), url);
  assert.deepEqual(await query(url, 'SELECT value FROM kept'), [{ value: 'still here' }]);
});

test('processes racing on a fresh directory share one server, which outlives them', TIMEOUT, async () => {
  const dir = await freshDataDir();
  const results = await Promise.all([1, 2, 3].map(() => ensureInAnotherProcess(dir)));
  for (const result of results) assert.equal(result.code, 0, result.stderr);
  const urls = new Set(results.map((result) => result.stdout));
  assert.equal(urls.size, 1, `all must get the same URL, got ${[...urls].join(', ')}`);

  // Every process that could have started it has exited.
  const [url] = [...urls] as [string];
  assert.deepEqual(await query(url, 'SELECT 1 AS one'), [{ one: 1 }]);
  assert.deepEqual((await fs.readdir(dir)).sort(), ['credentials.json', 'pg'], 'the losers clean up their initdb directories');
});

test('a smart stop waits for connected clients', TIMEOUT, async () => {
  const dir = await freshDataDir();
  const url = await ensureEmbeddedServer(dir);
  const client = await connect(url);

  let settled = false;
  const stopping = stopEmbeddedServer(dir).finally(() => (settled = true));
  await waitFor('the server to begin shutting down', async () => (await embeddedServerState(dir))?.status === 'stopping');

  assert.deepEqual((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'the connected session keeps working');
  await assert.rejects(connect(url), /shutting down/, 'new sessions are refused');
  assert.equal(settled, false, 'the stop waits while a client is connected');

  await client.end();
  assert.equal(await stopping, 'stopped');
  assert.equal(await embeddedServerState(dir), undefined);
});

test('a fast stop ends connected sessions', TIMEOUT, async () => {
  const dir = await freshDataDir();
  const url = await ensureEmbeddedServer(dir);
  const client = await connect(url);

  assert.equal(await stopEmbeddedServer(dir, { mode: 'fast' }), 'stopped');
  await assert.rejects(client.query('SELECT 1'));
  await client.end().catch(() => {});
});

test('stopping a server that is not running says so', TIMEOUT, async () => {
  const dir = await freshDataDir();
  assert.equal(await stopEmbeddedServer(dir), 'not-running', 'never initialised');
  await ensureEmbeddedServer(dir);
  assert.equal(await stopEmbeddedServer(dir), 'stopped');
  assert.equal(await stopEmbeddedServer(dir), 'not-running', 'already stopped');
});

/** The URL with its password replaced (or removed, for undefined). */
function withPassword(url: string, password: string | undefined): string {
  const parsed = new URL(url);
  parsed.password = password ?? '';
  return parsed.toString();
}

async function refusal(url: string): Promise<{ code?: string; message: string }> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    return error as { code?: string; message: string };
  } finally {
    await client.end().catch(() => {});
  }
  throw new Error('the connection was accepted');
}

test('asks for a password, kept in a file only its owner can read; without it or with another, no connection', TIMEOUT, async () => {
  const dir = await freshDataDir();
  const url = await ensureEmbeddedServer(dir);
  const file = path.join(dir, 'credentials.json');
  const { mode, uid } = await fs.stat(file);
  assert.equal(mode & 0o777, 0o600);
  assert.equal(uid, process.getuid?.());
  const owner = (JSON.parse(await fs.readFile(file, 'utf8')) as { owner: string }).owner;
  assert.equal(decodeURIComponent(new URL(url).password), owner);

  await refusal(withPassword(url, undefined)); // pg will not even try without one
  assert.equal((await refusal(withPassword(url, 'guess'))).code, '28P01');
  const hba = await query<{ type: string; method: string }>(url, 'SELECT type, auth_method AS method FROM pg_hba_file_rules WHERE type IS NOT NULL');
  assert.deepEqual(hba, [{ type: 'host', method: 'scram-sha-256' }], 'no trust line anywhere');
  assert.deepEqual(await query(url, "SELECT current_setting('unix_socket_directories') AS sockets"), [{ sockets: '' }]);
});

test('another local user can neither read the credentials nor connect', { ...TIMEOUT, skip: process.getuid?.() !== 0 || !hasPsql() }, async () => {
  const dir = await freshDataDir();
  const url = new URL(await ensureEmbeddedServer(dir));
  const nobody = { uid: 65534, gid: 65534 };
  const read = spawnSync('cat', [path.join(dir, 'credentials.json')], { ...nobody, encoding: 'utf8' });
  assert.notEqual(read.status, 0);
  assert.match(read.stderr, /Permission denied/);
  const psql = spawnSync('psql', ['-w', '-h', '127.0.0.1', '-p', url.port, '-U', 'postgres', '-d', 'postgres', '-c', 'SELECT 1'], {
    ...nobody,
    cwd: '/',
    encoding: 'utf8',
    env: { PATH: process.env.PATH },
  });
  assert.notEqual(psql.status, 0, psql.stdout);
  assert.match(psql.stderr, /no password supplied|password authentication failed/);
});

function hasPsql(): boolean {
  return spawnSync('psql', ['--version']).status === 0;
}

test('a data directory made with trust authentication is switched to passwords, its data kept', TIMEOUT, async () => {
  const dir = await freshDataDir();
  const first = await ensureEmbeddedServer(dir);
  await query(first, 'CREATE TABLE kept (value text); INSERT INTO kept VALUES ($$still here$$)');
  // What an earlier version left: trust for everyone, no password, no credentials file.
  const hbaFile = path.join(dir, 'pg', 'pg_hba.conf');
  const { uid, gid } = await fs.stat(hbaFile);
  await fs.writeFile(hbaFile, 'host all all 127.0.0.1/32 trust\n');
  await fs.chown(hbaFile, uid, gid);
  await query(first, 'ALTER ROLE postgres PASSWORD NULL; SELECT pg_reload_conf()');
  await fs.rm(path.join(dir, 'credentials.json'));
  await waitFor('trust to apply', async () => (await query(withPassword(first, 'anything'), 'SELECT 1 AS one').catch(() => [])).length === 1);

  const url = await ensureEmbeddedServer(dir);
  assert.notEqual(url, first, 'new passwords');
  assert.equal((await refusal(withPassword(url, 'anything'))).code, '28P01');
  assert.deepEqual(await query(url, 'SELECT value FROM kept'), [{ value: 'still here' }]);
  assert.equal((await fs.stat(path.join(dir, 'credentials.json'))).mode & 0o777, 0o600);
});

test("the app's role is neither a superuser nor able to create roles or databases", TIMEOUT, async () => {
  const dir = await freshDataDir();
  const { ownerUrl, appUrl } = await ensureEmbeddedDatabase(dir);
  assert.equal(new URL(appUrl).username, EMBEDDED_APP_ROLE);
  const [role] = await query<{ user: string; super: boolean; createrole: boolean; createdb: boolean }>(
    appUrl,
    'SELECT current_user AS user, rolsuper AS super, rolcreaterole AS createrole, rolcreatedb AS createdb FROM pg_roles WHERE rolname = current_user',
  );
  assert.deepEqual(role, { user: EMBEDDED_APP_ROLE, super: false, createrole: false, createdb: false });
  assert.equal((await refusal(withPassword(appUrl, 'guess'))).code, '28P01');
  assert.deepEqual(await ensureEmbeddedDatabase(dir), { ownerUrl, appUrl }, 'the same on every call');
});

test("the app's role is put right when its password was changed, it may not log in, or it is gone", TIMEOUT, async () => {
  const dir = await freshDataDir();
  const { ownerUrl, appUrl } = await ensureEmbeddedDatabase(dir);
  for (const breakIt of [
    `ALTER ROLE ${EMBEDDED_APP_ROLE} PASSWORD 'changed by hand'`,
    `ALTER ROLE ${EMBEDDED_APP_ROLE} NOLOGIN`,
    `DROP ROLE ${EMBEDDED_APP_ROLE}`,
  ]) {
    await query(ownerUrl, breakIt);
    assert.ok(await refusal(appUrl), `${breakIt}: the app cannot log in`);
    assert.deepEqual(await ensureEmbeddedDatabase(dir), { ownerUrl, appUrl }, breakIt);
    assert.deepEqual(await query(appUrl, 'SELECT current_user AS user'), [{ user: EMBEDDED_APP_ROLE }], `${breakIt}: logs in again`);
  }
});
