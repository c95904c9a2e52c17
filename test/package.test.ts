// The command as installed: bin/workflow.js on the build in dist/, the Node
// versions it accepts, and what it answers before loading anything.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { BIN } from './helpers/cli.ts';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string; engines: { node: string } };
const [, floorMajor, floorMinor] = /^>=(\d+)\.(\d+)$/.exec(pkg.engines.node)!.map(Number) as [number, number, number];

function cli(node: string, args: string[], nodeFlags: string[] = []) {
  // No DATABASE_URL and no data directory: none of these may reach a database.
  return spawnSync(node, [...nodeFlags, BIN, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME } });
}

/** A Node on this machine older than the engines floor (the OS's own, typically), if any. */
function olderNode(): string | undefined {
  const candidates = ['/usr/bin/node', '/usr/local/bin/node', ...(spawnSync('which', ['-a', 'node'], { encoding: 'utf8' }).stdout ?? '').split('\n')];
  for (const node of new Set(candidates.filter(Boolean))) {
    let version: string;
    try {
      version = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
    } catch {
      continue;
    }
    const [major, minor] = version.slice(1).split('.').map(Number) as [number, number];
    if (major < floorMajor || (major === floorMajor && minor < floorMinor)) return node;
  }
  return undefined;
}

test('--version prints package.json version', () => {
  const result = cli(process.execPath, ['--version']);
  assert.equal(result.status, 0, result.stderr);
  assert.equal(result.stdout, `${pkg.version}\n`);
});

test('the CLI runs JavaScript from dist/: it works with type stripping turned off', () => {
  const result = cli(process.execPath, ['help'], ['--no-experimental-strip-types']);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /^Usage: workflow <command>/);
});

const older = olderNode();
test('started on a Node older than engines.node, it says which version it needs and exits 2', {
  skip: older === undefined && `no Node older than ${pkg.engines.node} on this machine`,
}, () => {
  const result = cli(older!, ['list']);
  assert.equal(result.status, 2, result.stderr);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, new RegExp(`^workflow needs Node.js ${pkg.engines.node.replace('.', '\\.')}; this is Node.js \\d+\\.`));
});
