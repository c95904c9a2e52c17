// `import … from 'workflow-chatops'` from a separate project: package.json's
// `exports` and `types`, the built entry in dist/, and what `npm pack` ships.
//
// The project is made in a temporary folder with node_modules/workflow-chatops
// a symlink to this repository: what npm makes of a `file:` dependency on a
// folder, without an npm install in the test (seconds of registry and cache
// work that would test npm rather than the package). .ci/run installs
// examples/tickets with npm itself.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const TSC = path.join(REPO, 'node_modules/typescript/bin/tsc');

const project = mkdtempSync(path.join(os.tmpdir(), 'workflow-user-project-'));
after(() => rmSync(project, { recursive: true, force: true }));
mkdirSync(path.join(project, 'node_modules'));
symlinkSync(REPO, path.join(project, 'node_modules/workflow-chatops'), 'dir');
writeFileSync(
  path.join(project, 'package.json'),
  JSON.stringify({ name: 'user-project', private: true, type: 'module', dependencies: { 'workflow-chatops': 'file:../repo' } }),
);

function write(file: string, text: string): string {
  writeFileSync(path.join(project, file), text);
  return path.join(project, file);
}

function node(file: string) {
  return spawnSync(process.execPath, [file], { cwd: project, encoding: 'utf8', env: { PATH: process.env.PATH } });
}

test('a separate project imports the definition API by the package name', () => {
  write(
    'main.ts',
    `
import { defineStep, defineWorkflow, sql, z, type WorkflowDefinition } from 'workflow-chatops';
const definition: WorkflowDefinition = defineWorkflow({ id: 1, name: 'x', subject: 's', steps: [defineStep({ name: 'a', pending: (db) => db.selectFrom('t').select('id as subject_id'), handle: async () => ({}), save: async () => {} })], metrics: (db) => db.selectFrom('t').selectAll() });
console.log(JSON.stringify({ id: definition.id, sql: typeof sql, z: typeof z.object }));
`,
  );
  const result = node('main.ts');
  assert.equal(result.status, 0, result.stderr);
  assert.deepEqual(JSON.parse(result.stdout), { id: 1, sql: 'function', z: 'function' });
});

test('CommonJS requires it too', () => {
  write('main.cjs', "const { defineWorkflow } = require('workflow-chatops');\nconsole.log(typeof defineWorkflow);\n");
  const result = node('main.cjs');
  assert.equal(result.status, 0, result.stderr);
  assert.equal(result.stdout, 'function\n');
});

test('only the entry is exported: paths inside the package are not', () => {
  write('deep.mjs', "await import('workflow-chatops/src/workflows/define.ts');\n");
  const result = node('deep.mjs');
  assert.notEqual(result.status, 0);
  assert.match(result.stderr, /ERR_PACKAGE_PATH_NOT_EXPORTED/);
});

test("the package's types check a module, and catch a mistake in one", () => {
  write(
    'tsconfig.json',
    JSON.stringify({
      compilerOptions: {
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        strict: true,
        noEmit: true,
        allowImportingTsExtensions: true,
        skipLibCheck: true,
        types: [],
      },
      files: ['workflow.ts'],
    }),
  );
  const workflow = (field: string) => `
import { defineStep, defineWorkflow, sql, type Generated, type WorkflowEnvironment } from 'workflow-chatops';
interface Tables { things: { id: Generated<string>; done: boolean } }
export default ({ log }: WorkflowEnvironment) =>
  defineWorkflow<Tables>({
    id: 4100,
    name: 'things',
    subject: 'thing',
    ${field},
    migrations: './migrations',
    steps: [
      defineStep<Tables, { done: boolean }, { ok: boolean }>({
        name: 'mark',
        pending: (db) => db.selectFrom('things').select(['id as subject_id', 'done']).where('done', '=', false),
        handle: async ({ done }, { signal }) => ({ ok: !done && !signal.aborted }),
        save: async (tx, items) => { log.debug({ n: items.length }); await sql\`UPDATE things SET done = true WHERE id = ANY(\${items.map((i) => i.subjectId)})\`.execute(tx); },
      }),
    ],
    metrics: (db) => db.selectFrom('things').select((eb) => eb.fn.countAll<string>().as('things')),
  });
`;
  const tsc = () => spawnSync(process.execPath, [TSC, '-p', project], { encoding: 'utf8' });
  write('workflow.ts', workflow('retries: 2'));
  const good = tsc();
  assert.equal(good.status, 0, good.stdout + good.stderr);
  write('workflow.ts', workflow("retries: 'two'"));
  const bad = tsc();
  assert.notEqual(bad.status, 0);
  assert.match(bad.stdout, /workflow\.ts\(9,5\): error TS2322: /);
});

test('npm pack ships the entry with its declarations, and the CLI', () => {
  const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { exports: Record<string, unknown>; types: string };
  assert.deepEqual(pkg.exports['.'], { types: './dist/src/index.d.ts', default: './dist/src/index.js' });
  assert.equal(pkg.types, './dist/src/index.d.ts');
  // --ignore-scripts: the listing, without the prepare build npm pack would run.
  const [listing] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO, encoding: 'utf8' })) as [
    { files: { path: string }[] },
  ];
  const files = new Set(listing.files.map((f) => f.path));
  for (const file of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/workflows/define.d.ts', 'bin/workflow.js', 'package.json']) {
    assert.ok(files.has(file), `${file} is in the package`);
  }
  assert.ok(![...files].some((f) => f.startsWith('src/') || f.startsWith('examples/') || f.startsWith('test/')), 'no sources, examples or tests');
});
