#!/usr/bin/env node
// The CLI runs the build in dist/ (`npm run build`; `npm install` in a clone
// runs it through the prepare script), so nothing compiles at run time.
//
// This file keeps to syntax and APIs that any Node with ES modules (12 on)
// parses, so that a Node older than package.json's engines field says which
// version it needs and exits 2, instead of failing somewhere in the build.
// biome-ignore lint/style/useNodejsImportProtocol: Node 12 resolves no node: specifiers in ES modules
import { existsSync, readFileSync } from 'fs';
// biome-ignore lint/style/useNodejsImportProtocol: as above
import module from 'module';
// biome-ignore lint/style/useNodejsImportProtocol: as above
import { fileURLToPath } from 'url';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const needed = /^>=\s*(\d+)\.(\d+)/.exec(pkg.engines.node);
const running = process.versions.node.split('.').map(Number);
if (running[0] < Number(needed[1]) || (running[0] === Number(needed[1]) && running[1] < Number(needed[2]))) {
  process.stderr.write('workflow needs Node.js ' + pkg.engines.node + '; this is Node.js ' + process.versions.node + ' (' + process.execPath + ').\n');
  process.exit(2);
}

// Answered here: no need to load the engine to print a version.
if (process.argv[2] === '--version' && process.argv.length === 3) {
  process.stdout.write(pkg.version + '\n');
} else {
  const entry = new URL('../dist/src/main.js', import.meta.url);
  // V8's compiled code for the modules a command loads (some 500 for one
  // that reads the database), kept between calls in the package's own
  // node_modules/.cache; checked against each file's contents, so a rebuild is
  // picked up. NODE_DISABLE_COMPILE_CACHE=1 turns it off (bench/startup.ts
  // measures both).
  if (typeof module.enableCompileCache === 'function')
    module.enableCompileCache(fileURLToPath(new URL('../node_modules/.cache/workflow-chatops', import.meta.url)));
  if (!existsSync(entry)) {
    process.stderr.write('workflow: ' + fileURLToPath(entry) + ' is missing; run `npm run build` in ' + fileURLToPath(new URL('..', import.meta.url)) + '\n');
    process.exit(2);
  }
  import(entry.href)
    .then((cli) => cli.main(process.argv.slice(2)))
    .then((code) => {
      process.exitCode = code;
    });
}
