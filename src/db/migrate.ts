import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DEFAULT_MIGRATION_TABLE, Migrator, type Kysely, type Migration, type MigrationProvider, type MigrationResultSet } from 'kysely';
import { appliedMigrations } from './queries/applied-migrations.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

// The folder beside src/: the sources' migrations/*.ts, or the build's
// dist/migrations/*.js (with .d.ts files, skipped). A migration's name has no
// extension, so a database migrated by either counts the same ones as done.
const ENGINE_MIGRATION_FILE = /^(\d{4}_[^.]*)\.(ts|js)$/;

/** A workflow's own folder: any name, in the module formats Node loads (declaration files are not migrations). */
export const MODULE_MIGRATION_FILE = /^(?!.*\.d\.[cm]?ts$)([^.][^/]*?)\.([cm]?ts|[cm]?js)$/;

// FileMigrationProvider wants path/fs adapters and picks up .d.ts files;
// reading a folder is a few lines.
export class FolderMigrationProvider implements MigrationProvider {
  private readonly folder: string;
  private readonly pattern: RegExp;

  constructor(folder: string, pattern: RegExp = ENGINE_MIGRATION_FILE) {
    this.folder = folder;
    this.pattern = pattern;
  }

  /** The migrations' names, without loading them. */
  async names(): Promise<string[]> {
    return (await this.files()).map((f) => f.replace(this.pattern, '$1'));
  }

  async getMigrations(): Promise<Record<string, Migration>> {
    const files = await this.files();
    const migrations: Record<string, Migration> = {};
    for (const file of files) {
      const name = file.replace(this.pattern, '$1');
      if (name in migrations) throw new MigrationError(`${path.join(this.folder, file)}: a second migration named ${name}`);
      let module: Partial<Migration>;
      try {
        module = (await import(pathToFileURL(path.join(this.folder, file)).href)) as Partial<Migration>;
      } catch (error) {
        throw new MigrationError(`migration ${path.join(this.folder, file)} does not load: ${(error as Error).message ?? error}`, { cause: error });
      }
      if (typeof module.up !== 'function') throw new MigrationError(`migration ${path.join(this.folder, file)} exports no up(db) function`);
      migrations[name] = module as Migration;
    }
    return migrations;
  }

  private async files(): Promise<string[]> {
    return (await fs.readdir(this.folder)).filter((f) => this.pattern.test(f)).sort();
  }
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

/** The engine's migrations' names, from the folder, without loading them. */
export function engineMigrationNames(): Promise<string[]> {
  return new FolderMigrationProvider(MIGRATIONS_DIR).names();
}

/**
 * Brings the schema up to date. Safe to call from several processes at once:
 * kysely's Migrator serialises them with its own lock table.
 */
export async function migrateToLatest<DB>(db: Kysely<DB>): Promise<string[]> {
  // Unordered: migrations written side by side on parallel branches may land in any order.
  return migrateWith(db, new FolderMigrationProvider(MIGRATIONS_DIR), { allowUnorderedMigrations: true });
}

/**
 * Applies a provider's pending migrations, recorded in `table` (and locked
 * through `<table>_lock`), so that several histories share one database.
 * Returns the names applied.
 */
export async function migrateWith<DB>(
  db: Kysely<DB>,
  provider: MigrationProvider,
  options: { table?: string; allowUnorderedMigrations?: boolean } = {},
): Promise<string[]> {
  // Nothing to do, the usual case at every start: one SELECT instead of the
  // Migrator's lock round trips, and no migration module loaded. Only when
  // the recorded names are exactly the folder's: anything else (a pending
  // migration, or one recorded that the code does not have) is the
  // Migrator's to apply or refuse.
  if (provider instanceof FolderMigrationProvider) {
    const [names, applied] = await Promise.all([provider.names(), appliedMigrations(db, options.table ?? DEFAULT_MIGRATION_TABLE)]);
    if (applied && applied.length === names.length && names.every((n) => applied.includes(n))) return [];
  }
  const tables = options.table === undefined ? {} : { migrationTableName: options.table, migrationLockTableName: `${options.table}_lock` };
  const migrator = new Migrator({ db, provider, allowUnorderedMigrations: options.allowUnorderedMigrations ?? false, ...tables });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    if (error instanceof MigrationError) throw error;
    const failed = results?.find((r) => r.status === 'Error');
    throw new MigrationError(`migration ${failed?.migrationName ?? '?'} failed: ${(error as Error).message ?? error}`, { cause: error });
  }
  return (results ?? [])
    .filter((r: MigrationResultSet['results'] extends (infer R)[] | undefined ? R : never) => r.status === 'Success')
    .map((r) => r.migrationName);
}
