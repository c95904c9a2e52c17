// After `tsc -p tsconfig.build.json`: removes from dist/ what no source file
// produces any more. A migration deleted or renamed in migrations/ would
// otherwise stay in dist/migrations/ and still be applied; a removed module
// would still be importable.
import { existsSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = path.join(root, 'dist');

/** Prunes `dir` (relative to dist/); true if it is empty afterwards. */
function prune(dir) {
  let left = 0;
  for (const entry of readdirSync(path.join(dist, dir), { withFileTypes: true })) {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (prune(relative)) rmdirSync(path.join(dist, relative));
      else left++;
      continue;
    }
    const source = relative.replace(/(\.d\.ts|\.js)$/, '.ts');
    if (source !== relative && existsSync(path.join(root, source))) {
      left++;
    } else {
      rmSync(path.join(dist, relative));
      console.error(`prune-dist: removed dist/${relative} (no ${source})`);
    }
  }
  return left === 0;
}

if (existsSync(dist)) prune('');
