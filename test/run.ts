// `npm test [-- <--flag=value …> <test files …>]`: runs test/*.test.ts (or the
// files named) with node's test runner against one PostgreSQL: DATABASE_URL if
// set, otherwise an embedded server in a fresh temporary directory. Each test
// file makes its own database on it (test/helpers/database.ts).
//
// Nothing outlives the run: the children get TMPDIR pointed at a scratch
// directory, so whatever tests create there (embedded servers included) is
// stopped and removed at the end, also after Ctrl-C, and databases a crashed
// test file did not drop are dropped from an external server.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureEmbeddedServer, stopEmbeddedServer } from '../src/db/embedded.ts';
import { TEST_RUN_ENV, dropRunDatabases } from './helpers/database.ts';

const TEST_DIR = fileURLToPath(new URL('.', import.meta.url));

// Flags pass through to node; give them as --flag=value.
const args = process.argv.slice(2);
const flags = args.filter((arg) => arg.startsWith('-'));
const named = args.filter((arg) => !arg.startsWith('-'));

let child: ChildProcess | undefined;
let signalled: NodeJS.Signals | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (signalled) return; // already cleaning up; a second Ctrl-C must not cut that short
    signalled = signal;
    child?.kill(signal);
  });
}

const scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'workflow-test-'));
// mkdtemp makes it 0700; as root, embedded servers run as the postgres OS user, which must reach it.
await fs.chmod(scratch, 0o755);
const run = randomBytes(4).toString('hex');
const externalUrl = process.env.DATABASE_URL?.trim() || undefined;
const serverDir = path.join(scratch, 'server');

let exitCode = 1;
try {
  const files = named.length > 0 ? named : await allTestFiles();
  if (files.length === 0) throw new Error(`no *.test.ts files in ${TEST_DIR}`);
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: scratch, [TEST_RUN_ENV]: run };
  if (externalUrl) {
    env.DATABASE_URL = externalUrl;
  } else {
    env.DATABASE_URL = await ensureEmbeddedServer(serverDir);
    console.error(`npm test: embedded PostgreSQL at ${env.DATABASE_URL.replace(/:[^:@/]*@/, '@')}`);
  }
  if (!signalled) exitCode = await runTests(files, env);
} catch (error) {
  console.error(`npm test: ${(error as Error).message}`);
  exitCode = 1;
}
if (!(await cleanUp())) exitCode = exitCode || 1;
process.exit(signalled ? 128 + os.constants.signals[signalled] : exitCode);

async function allTestFiles(): Promise<string[]> {
  const names = (await fs.readdir(TEST_DIR)).filter((name) => name.endsWith('.test.ts')).sort();
  return names.map((name) => path.relative(process.cwd(), path.join(TEST_DIR, name)));
}

function runTests(files: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    child = spawn(process.execPath, ['--test', '--test-concurrency=1', ...flags, ...files], { stdio: 'inherit', env });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0)));
  });
}

/** Stops every embedded server under the scratch directory and removes it. False if something is left. */
async function cleanUp(): Promise<boolean> {
  let clean = true;
  if (externalUrl) {
    try {
      const dropped = await dropRunDatabases(externalUrl, run);
      if (dropped.length > 0) console.error(`npm test: dropped databases the tests left behind: ${dropped.join(', ')}`);
    } catch (error) {
      console.error(`npm test: could not look for leftover test databases: ${(error as Error).message}`);
      clean = false;
    }
  }
  for (const dataDir of await findEmbeddedDataDirs(scratch)) {
    try {
      const result = await stopEmbeddedServer(dataDir, { mode: 'fast' });
      if (result === 'stopped' && dataDir !== serverDir) console.error(`npm test: a test left an embedded server running in ${dataDir}; stopped it`);
    } catch (error) {
      console.error(`npm test: ${(error as Error).message}`);
      clean = false;
    }
  }
  // Removing the directory of a server that is still running would orphan it for good.
  if (clean) await fs.rm(scratch, { recursive: true, force: true });
  else console.error(`npm test: left ${scratch} in place`);
  return clean;
}

// An embedded server's data dir holds its cluster in `pg/` (src/db/embedded.ts).
async function findEmbeddedDataDirs(dir: string, depth = 0): Promise<string[]> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  if (entries.some((entry) => entry.name === 'PG_VERSION')) {
    return path.basename(dir) === 'pg' ? [path.dirname(dir)] : [];
  }
  if (depth > 6) return [];
  const found: string[] = [];
  for (const entry of entries) {
    if (entry.isDirectory()) found.push(...(await findEmbeddedDataDirs(path.join(dir, entry.name), depth + 1)));
  }
  return found;
}
