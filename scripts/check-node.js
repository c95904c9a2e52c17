// Before `npm test` and `npm run bench`: they run TypeScript with Node's own
// type stripping, which an older Node does not have; say so plainly.
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const [, major, minor] = /^>=\s*(\d+)\.(\d+)/.exec(pkg.engines.node).map(Number);
const [runningMajor, runningMinor] = process.versions.node.split('.').map(Number);
if (runningMajor < major || (runningMajor === major && runningMinor < minor)) {
  console.error(
    `This needs Node.js ${pkg.engines.node}; this is Node.js ${process.versions.node}. Run it on Node 24 with npx, for example: npx -y -p node@24 -- npm test`,
  );
  process.exit(2);
}
