// The layering of docs/architecture.md ("Layers"), checked on every import of
// src/: dependencies point down, never up. A file may import its own layer
// and any layer below it, so the engine knows nothing of commands or chat and
// config, read first, depends on nothing above it.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/** Lowest first. */
const LAYERS = [
  'lib',
  /** config.ts, log.ts and the grants config parses: read before anything else. */
  'base',
  'db',
  /** The definition API, the registry and the example: over db, and under the engine that runs them. */
  'workflows',
  'engine',
  'commands',
  'chat',
  /** app.ts wires db, engine and commands once per process; no surface. */
  'app',
  /** cli/serve.ts starts a chat surface (Slack or the console) on the wired app. */
  'cli',
  'main',
] as const;
type Layer = (typeof LAYERS)[number];

const FOLDERS: Record<string, Layer> = {
  lib: 'lib',
  db: 'db',
  workflows: 'workflows',
  engine: 'engine',
  commands: 'commands',
  chat: 'chat',
  cli: 'cli',
};
const TOP_FILES: Record<string, Layer> = {
  'config.ts': 'base',
  'log.ts': 'base',
  'access-grants.ts': 'base',
  /** The package's public entry: the definition API, for workflow modules. */
  'index.ts': 'workflows',
  'app.ts': 'app',
  'main.ts': 'main',
};

/**
 * The one import across a layer boundary's rule: the engine runs workflows
 * through their definition types only (src/workflows/define.ts, as
 * `import type`), never the registry or the example.
 */
const ENGINE_MAY_USE_FROM_WORKFLOWS = 'workflows/define.ts';

/**
 * Upward imports known today and being restructured, as
 * 'src/from.ts -> src/to.ts'. An entry that is no longer an upward import
 * fails the test too, so this list only shrinks: empty it, do not add to it.
 */
const KNOWN_VIOLATIONS: string[] = [];

interface Import {
  from: string;
  to: string;
  typeOnly: boolean;
}

function layerOf(file: string): Layer | undefined {
  const [top, ...rest] = file.split('/');
  return rest.length > 0 ? FOLDERS[top!] : TOP_FILES[top!];
}

// Static imports and re-exports (`import … from`, `import type … from`,
// `export … from`, `import '…'`) at the start of a line, and import() in
// code or types. Enough for this code base, whose imports are all written
// that way; a line that starts a comment or a string never begins with them.
const STATIC = /^(import|export)\s+(type\s+)?((?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?|[\w$]+)\s+from\s+)?['"]([^'"]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

function importsOf(file: string): Import[] {
  const text = readFileSync(path.join(SRC, file), 'utf8');
  const found: Import[] = [];
  const add = (specifier: string, typeOnly: boolean) => {
    if (!specifier.startsWith('.')) return; // a package
    const to = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
    if (!to.startsWith('../')) found.push({ from: file, to, typeOnly });
  };
  for (const m of text.matchAll(STATIC)) {
    // `export type { X }` without `from` is no import.
    if (m[1] === 'export' && !m[3]) continue;
    add(m[4]!, m[2] !== undefined);
  }
  for (const m of text.matchAll(DYNAMIC)) add(m[1]!, false);
  return found;
}

function sourceFiles(): string[] {
  return readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .map((f) => f.split(path.sep).join('/'))
    .filter((f) => f.endsWith('.ts'))
    .sort();
}

function violation(i: Import): string | undefined {
  const from = layerOf(i.from)!;
  const to = layerOf(i.to);
  if (to === undefined) return undefined; // reported as an unplaced file, if it is one
  if (from === 'engine' && to === 'workflows') {
    if (i.to !== ENGINE_MAY_USE_FROM_WORKFLOWS) return `engine may use only ${ENGINE_MAY_USE_FROM_WORKFLOWS} of workflows`;
    if (!i.typeOnly) return `engine may use ${ENGINE_MAY_USE_FROM_WORKFLOWS} as \`import type\` only`;
    return undefined;
  }
  if (LAYERS.indexOf(to) > LAYERS.indexOf(from)) return `${from} imports ${to}, a layer above it`;
  return undefined;
}

test('every file of src/ is in a layer', () => {
  const unplaced = sourceFiles().filter((f) => layerOf(f) === undefined);
  assert.deepEqual(unplaced, [], 'place these in FOLDERS or TOP_FILES of test/layers.test.ts');
});

test('the parser finds the imports it is meant to check', () => {
  // Guards the regular expressions: config.ts's import of the grants, a
  // multi-line one, and an `import type`.
  const all = sourceFiles().flatMap(importsOf);
  assert.ok(all.some((i) => i.from === 'config.ts' && i.to === 'access-grants.ts' && !i.typeOnly));
  assert.ok(all.some((i) => i.from.startsWith('engine/') && i.to === 'workflows/define.ts' && i.typeOnly));
  assert.ok(all.filter((i) => i.from.startsWith('engine/') && i.to.startsWith('db/')).length > 10);
});

test('no file imports from a layer above its own', () => {
  const found = new Map<string, string>();
  for (const file of sourceFiles()) {
    if (layerOf(file) === undefined) continue;
    for (const i of importsOf(file)) {
      const why = violation(i);
      if (why) found.set(`src/${i.from} -> src/${i.to}`, why);
    }
  }
  const unexpected = [...found].filter(([edge]) => !KNOWN_VIOLATIONS.includes(edge)).map(([edge, why]) => `${edge}: ${why}`);
  assert.deepEqual(unexpected, [], 'imports against the layering (docs/architecture.md, "Layers")');
  const stale = KNOWN_VIOLATIONS.filter((edge) => !found.has(edge));
  assert.deepEqual(stale, [], 'no longer violations: remove them from KNOWN_VIOLATIONS');
});
