import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { hydrateSymlinks } from '../src/db/embedded-symlinks.ts';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((dir) => fs.rm(dir, { recursive: true, force: true }))));

/** A binaries package as npm unpacks it: the libraries, their links only listed. */
async function unpackedPackage(): Promise<string> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'workflow-symlinks-'));
  dirs.push(root);
  await fs.mkdir(path.join(root, 'native', 'lib'), { recursive: true });
  await fs.writeFile(path.join(root, 'native', 'lib', 'libicuuc.so.60.2'), 'library');
  const links = [
    { source: 'native/lib/libicuuc.so.60.2', target: 'native/lib/libicuuc.so' },
    { source: 'native/lib/libicuuc.so.60.2', target: 'native/lib/libicuuc.so.60' },
  ];
  await fs.writeFile(path.join(root, 'native', 'pg-symlinks.json'), JSON.stringify(links));
  return root;
}

test('makes the listed links, relative, so the package can move', async () => {
  const root = await unpackedPackage();
  assert.equal(await hydrateSymlinks(root), 2);
  assert.equal(await fs.readlink(path.join(root, 'native', 'lib', 'libicuuc.so.60')), 'libicuuc.so.60.2');
  const moved = `${root}-moved`;
  await fs.rename(root, moved);
  dirs.push(moved);
  assert.equal(await fs.readFile(path.join(moved, 'native', 'lib', 'libicuuc.so'), 'utf8'), 'library');
});

test('leaves links that exist alone, and several processes may race', async () => {
  const root = await unpackedPackage();
  await fs.symlink('libicuuc.so.60.2', path.join(root, 'native', 'lib', 'libicuuc.so'));
  const made = await Promise.all([hydrateSymlinks(root), hydrateSymlinks(root)]);
  assert.equal(made[0]! + made[1]!, 1);
  assert.equal(await hydrateSymlinks(root), 0);
});

test('a package without a list (no links to make) is fine', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'workflow-symlinks-'));
  dirs.push(root);
  assert.equal(await hydrateSymlinks(root), 0);
});

test('links it cannot make are reported with the way out', { skip: process.getuid?.() === 0 && 'root may write anywhere' }, async () => {
  const root = await unpackedPackage();
  await fs.chmod(path.join(root, 'native', 'lib'), 0o555);
  await assert.rejects(hydrateSymlinks(root), /lack their library links .*set DATABASE_URL/);
  await fs.chmod(path.join(root, 'native', 'lib'), 0o755);
});
