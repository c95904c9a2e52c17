import { registerHooks } from 'node:module';
import { fileURLToPath } from 'node:url';

// A workflow module may live anywhere on disk (a folder of its own, a project
// with no node_modules, a CommonJS package) and still import
// `workflow-chatops`, `kysely` or `zod`. Node resolves a bare specifier from
// the importing file's folder upwards, so from such a folder it finds none of
// them. When that default resolution fails for a file that is not itself
// inside a node_modules folder, the specifier is resolved again from this
// package, which hands the module the tool's own copies: the same kysely and
// zod instances as the engine, and this package itself by its name (through
// its `exports`). Hooks registered with module.registerHooks run in the
// loading thread, synchronously, for import and require alike. Node never
// strips types under node_modules, so a workflow published as a package must
// ship JavaScript.

// Resolving from this file (import.meta.resolve) reaches this package's
// node_modules, walking up from dist/src/workflows/ or src/workflows/, and
// its own name.

let registered = false;

/** Registers the resolve hook once per process; later calls do nothing. */
export function registerWorkflowModuleHooks(): void {
  if (registered) return;
  registered = true;
  registerHooks({
    resolve(specifier, context, nextResolve) {
      try {
        return nextResolve(specifier, context);
      } catch (error) {
        if (!isBare(specifier) || !isNotFound(error) || !fromUserCode(context.parentURL)) throw error;
        try {
          // Resolved as an import from here, whoever asks: a require() gets
          // the same ES module the engine uses (through require(esm)), not a
          // package's CommonJS build, which would be a second instance.
          // CommonJS resolution takes a path, and ignores a parentURL passed
          // to nextResolve, so it is given the file itself.
          const url = import.meta.resolve(specifier);
          return nextResolve(context.conditions.includes('require') ? fileURLToPath(url) : url, context);
        } catch {
          throw error; // the module's own resolution error is the one that explains it
        }
      }
    },
    // TypeScript that Node takes for CommonJS (a .ts in a "type": "commonjs"
    // package, a .cts) is handed to the CommonJS loader itself. Node 22 runs
    // it through the ES module loader's CommonJS wrapper instead, whose
    // require() bypasses resolve hooks, so `require('workflow-chatops')` from
    // such a file would not find the package. The CommonJS loader strips the
    // types itself. Only for what Node already decided is CommonJS: handing it
    // a module with ES syntax would make it require() the module that is
    // importing it ("Cannot require() ES Module … in a cycle").
    load(url, context, nextLoad) {
      const loaded = nextLoad(url, context);
      // A require() is already in the CommonJS loader, which wants the source.
      if (loaded.format !== 'commonjs-typescript' || !fromUserCode(url) || context.conditions.includes('require')) return loaded;
      return { format: 'commonjs', source: undefined, shortCircuit: true };
    },
  });
}

function isBare(specifier: string): boolean {
  return !/^(\.{0,2}\/|[a-z][a-z0-9+.-]*:|#)/i.test(specifier);
}

function isNotFound(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

// Packages resolve their own dependencies; only the user's files get the fallback.
function fromUserCode(parentURL: string | undefined): boolean {
  return parentURL !== undefined && parentURL.startsWith('file:') && !parentURL.includes('/node_modules/');
}
