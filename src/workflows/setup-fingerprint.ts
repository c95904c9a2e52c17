import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { engineMigrationNames } from '../db/migrate.ts';
import { checkedStatements } from './check-queries.ts';
import type { ResolvedWorkflow } from './define.ts';
import { migrationNames } from './module-migrations.ts';
import { storedDefinition, type WorkflowRegistry } from './registry.ts';

// The setup openApp does at every start (src/app.ts) depends on the code and
// on the database. The fingerprint covers the code's side: the engine's
// migrations, each module's migrations, id, name, description, stored
// definition, continuous table and the SQL of every query the check runs,
// and which role the app runs as. The database's side is covered by keeping
// one fingerprint, written by the last process that did the whole setup:
// any other code that migrates, checks or syncs replaces it, so the next
// process of this code does it all again. A changed query, a new migration,
// a module added or removed all change it, so the check runs again before
// the workflow is used.

/** Bump when what the setup does changes, so that a database set up by an older version is set up again. */
const SETUP_VERSION = 2;

/** The hash of what the setup depends on in the code, or undefined when it cannot be computed (then the whole setup runs). */
export async function setupFingerprint<DB>(db: Kysely<DB>, registry: WorkflowRegistry, appRole: string | undefined): Promise<string | undefined> {
  const modules = registry.modules();
  const statements = checkedStatements(
    db,
    modules.map((m) => m.workflow as ResolvedWorkflow<DB>),
  );
  if (statements === undefined) return undefined;
  let moduleMigrations: string[][];
  try {
    moduleMigrations = await Promise.all(modules.map((m) => (m.migrations ? migrationNames(m.migrations) : [])));
  } catch {
    return undefined;
  }
  const described = {
    version: SETUP_VERSION,
    engineMigrations: await engineMigrationNames(),
    appRole: appRole ?? null,
    workflows: modules.map(({ workflow: w }, i) => ({
      id: w.id,
      name: w.name,
      description: w.description,
      definition: storedDefinition(w),
      continuous: w.continuous?.table ?? null,
      migrations: moduleMigrations[i],
    })),
    statements,
  };
  return createHash('sha256').update(JSON.stringify(described)).digest('hex');
}
