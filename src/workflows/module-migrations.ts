import type { Kysely, Migration, MigrationProvider } from 'kysely';
import { FolderMigrationProvider, migrateWith, MODULE_MIGRATION_FILE } from '../db/migrate.ts';
import { oneLine } from '../lib/one-line.ts';
import { type MigrationSource, WorkflowModuleError, type WorkflowRegistry } from './registry.ts';

// A workflow's own tables come with it (its `migrations`), so a workflow is
// one self-contained folder. Each workflow keeps its own history, in
// `workflow_<id>_migrations`: its migration names are its own business and
// never collide with the engine's or another workflow's, and the id, not the
// file, is what stays stable when a module moves.

/** The table that records which of a workflow's migrations are applied. */
export function workflowMigrationTable(workflowId: number): string {
  return `workflow_${workflowId}_migrations`;
}

/**
 * Applies the pending migrations of every workflow that has some, after the
 * engine's (their tables may reference the engine's) and before anything is
 * checked or registered. A migration that fails is rolled back and stops
 * start-up with an error naming its module. Returns the names applied, per
 * workflow id.
 */
export async function migrateWorkflows<DB>(db: Kysely<DB>, registry: WorkflowRegistry): Promise<Map<number, string[]>> {
  const applied = new Map<number, string[]>();
  for (const { workflow, file, migrations } of registry.modules()) {
    if (!migrations) continue;
    try {
      applied.set(workflow.id, await migrateWith(db, provider(migrations), { table: workflowMigrationTable(workflow.id) }));
    } catch (error) {
      throw new WorkflowModuleError(file, oneLine(error instanceof Error ? error.message : error, { max: 500 }), { cause: error });
    }
  }
  return applied;
}

function provider(source: MigrationSource): MigrationProvider {
  if ('folder' in source) return new FolderMigrationProvider(source.folder, MODULE_MIGRATION_FILE);
  const migrations: Record<string, Migration> = source.migrations;
  return { getMigrations: async () => migrations };
}

/** A workflow's migrations' names, without loading a folder's files: what its migration history depends on. */
export async function migrationNames(source: MigrationSource): Promise<string[]> {
  if ('folder' in source) return new FolderMigrationProvider(source.folder, MODULE_MIGRATION_FILE).names();
  return Object.keys(source.migrations).sort();
}
