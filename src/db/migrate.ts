import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Migrator, type Kysely, type Migration, type MigrationProvider, type MigrationResultSet } from 'kysely';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

// The folder beside src/: the sources' migrations/*.ts, or the build's
// dist/migrations/*.js (with .d.ts files, skipped). A migration's name has no
// extension, so a database migrated by either counts the same ones as done.
const MIGRATION_FILE = /^(\d{4}_[^.]*)\.(ts|js)$/;

// FileMigrationProvider wants path/fs adapters and picks up .d.ts files;
// reading our own folder is a few lines.
class FolderMigrationProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    const files = (await fs.readdir(MIGRATIONS_DIR)).filter((f) => MIGRATION_FILE.test(f)).sort();
    const migrations: Record<string, Migration> = {};
    for (const file of files) {
      migrations[file.replace(MIGRATION_FILE, '$1')] = (await import(pathToFileURL(path.join(MIGRATIONS_DIR, file)).href)) as Migration;
    }
    return migrations;
  }
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

/**
 * Brings the schema up to date. Safe to call from several processes at once:
 * kysely's Migrator serialises them with its own lock table.
 */
export async function migrateToLatest<DB>(db: Kysely<DB>): Promise<string[]> {
  // Unordered: migrations written side by side on parallel branches may land in any order.
  const migrator = new Migrator({ db, provider: new FolderMigrationProvider(), allowUnorderedMigrations: true });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    throw new MigrationError(`migration ${failed?.migrationName ?? '?'} failed: ${(error as Error).message ?? error}`);
  }
  return (results ?? [])
    .filter((r: MigrationResultSet['results'] extends (infer R)[] | undefined ? R : never) => r.status === 'Success')
    .map((r) => r.migrationName);
}
