import path from 'node:path';
import type { Config } from './config.ts';
import { configureConnections, createClient, createKysely, createPool, type Db } from './db/connect.ts';
import { ensureEmbeddedDatabase } from './db/embedded.ts';
import { applyGrants, checkAppRole, currentRole, grantsNeeded } from './db/grants.ts';
import { migrateToLatest } from './db/migrate.ts';
import { ensureWorkTrigger } from './db/queries/continuous.ts';
import { clearFingerprint, recordFingerprint, storedFingerprint } from './db/queries/setup-fingerprint.ts';
import { createCommands, type Commands } from './commands/commands.ts';
import { Engine } from './engine/engine.ts';
import { HealthMonitor } from './engine/monitor.ts';
import { Retention } from './engine/retention.ts';
import { Store } from './engine/store.ts';
import type { Logger } from './log.ts';
import { checkWorkflowQueries } from './workflows/check-queries.ts';
import { migrateWorkflows } from './workflows/module-migrations.ts';
import { loadWorkflows, syncWorkflows, type WorkflowRegistry } from './workflows/registry.ts';
import { setupFingerprint } from './workflows/setup-fingerprint.ts';

/** Everything a surface needs, wired once: database, schema, workflows, engine, and the command layer's parts. */
export interface App extends Commands {
  config: Config;
  log: Logger;
  connectionString: string;
  /** The schema owner's: migrations and grants (DATABASE_MIGRATION_URL, the embedded superuser, or connectionString). */
  migrationConnectionString: string;
  /** True when the connection string belongs to the embedded server. */
  embedded: boolean;
  registry: WorkflowRegistry;
  engine: Engine;
  /** Not ticking until serve starts it; `workflow health` runs a pass on it anywhere. */
  monitor: HealthMonitor;
  db: Db;
  /** What this process's setup applied: the engine's migrations and each workflow module's (by workflow id). */
  applied: AppliedMigrations;
  close(): Promise<void>;
}

export interface AppliedMigrations {
  engine: string[];
  workflows: Map<number, string[]>;
}

/** /healthz and /metrics statements: the longest a scrape waits (metrics.ts: 2 × its 2 s health timeout). */
const FIGURES_STATEMENT_TIMEOUT_MS = 4_000;

/**
 * After migrating as the owner, gives the app's role (DATABASE_URL's) its
 * grants when something is missing (new tables, a fresh role), and warns when
 * that role could rewrite the audit log anyway (then false).
 */
async function grantAppRole(setup: Db, role: string, log: Logger): Promise<boolean> {
  if (role === (await currentRole(setup)).role) return true;
  const check = await checkAppRole(setup, role);
  if (check.problem) {
    log.warn({ role }, `DATABASE_URL's role can rewrite the audit log: ${check.problem} (docs/security.md, The database)`);
    return false;
  }
  if (await grantsNeeded(setup, role)) {
    await applyGrants(setup, role);
    log.info({ role }, "granted the app's role its privileges (workflow db grants prints them)");
  }
  return true;
}

/** The role a connection string logs in as: its user, or (none given) what the server says. */
export async function roleOf(connectionString: string): Promise<string> {
  const user = decodeURIComponent(new URL(connectionString).username);
  if (user) return user;
  const client = createClient({ connectionString, applicationName: 'workflow-setup' });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<{ role: string }>('SELECT current_user AS role')).rows[0]!.role;
  } finally {
    await client.end().catch(() => {});
  }
}

export function embeddedDataDir(config: Config): string {
  return path.resolve(config.WORKFLOW_DATA_DIR, 'pg');
}

export async function openApp(config: Config, log: Logger): Promise<App> {
  // Workflow modules load before the database starts: a broken module should
  // fail fast, naming its file, without side effects.
  const registry = await loadWorkflows(config.WORKFLOW_MODULES, { config, log });
  // WORKFLOW_SCHEDULES replaces the schedule a module declares.
  for (const [id, schedule] of Object.entries(config.WORKFLOW_SCHEDULES)) {
    const workflow = registry.find(Number(id));
    if (workflow) workflow.schedule = schedule;
    else log.warn({ workflowId: Number(id) }, 'WORKFLOW_SCHEDULES names a workflow that is not loaded; ignored');
  }
  configureConnections({ connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS });
  const embedded = config.DATABASE_URL === undefined;
  const embeddedUrls = embedded ? await ensureEmbeddedDatabase(embeddedDataDir(config), log) : undefined;
  const connectionString = config.DATABASE_URL ?? embeddedUrls!.appUrl;
  // The owner migrates and grants; the app runs as DATABASE_URL's role (docs/security.md, The database).
  const migrationConnectionString = embeddedUrls?.ownerUrl ?? config.DATABASE_MIGRATION_URL ?? connectionString;

  const setupPool = createPool({ connectionString: migrationConnectionString, applicationName: 'workflow-setup', max: 1 });
  const setup = createKysely(setupPool);
  const applied: AppliedMigrations = { engine: [], workflows: new Map() };
  try {
    const appRole = migrationConnectionString !== connectionString ? await roleOf(connectionString) : undefined;
    // The same code, on a database it set up last: nothing below would
    // change anything, so one SELECT replaces it (src/workflows/setup-fingerprint.ts).
    const [fingerprint, stored] = await Promise.all([setupFingerprint(setup, registry, appRole), storedFingerprint(setup)]);
    if (fingerprint !== undefined && fingerprint === stored) {
      log.debug({ fingerprint }, 'setup fingerprint matches: migrations, query checks, sync, triggers and grants skipped');
    } else {
      log.debug({ fingerprint, stored }, 'setup fingerprint differs: running the whole setup');
      // No other process may skip the setup on the strength of the old one while this one changes things.
      if (stored !== undefined) await clearFingerprint(setup);
      applied.engine = await migrateToLatest(setup);
      // A broken module is refused before it is registered: its own migrations
      // first (its queries read their tables), then its queries, LIMIT 0 and
      // rolled back. Only the module's migrations may have written by then.
      applied.workflows = await migrateWorkflows(setup, registry);
      await checkWorkflowQueries(setup, registry);
      await syncWorkflows(setup, registry);
      // Made by the owner: the app's role may not create functions or triggers.
      for (const w of registry.all()) if (w.continuous) await ensureWorkTrigger(setup, w.id, w.continuous.table);
      const granted = appRole === undefined || (await grantAppRole(setup, appRole, log));
      // Not recorded after a warning about the app's role: it is said at every start until fixed.
      if (fingerprint !== undefined && granted) await recordFingerprint(setup, fingerprint);
    }
  } finally {
    await setup.destroy();
  }

  const engine = new Engine({
    connectionString,
    lockConnectionString: config.DATABASE_LOCK_URL ?? connectionString,
    workflows: registry.all(),
    log,
    heartbeatMs: config.WORKFLOW_HEARTBEAT_MS,
    forceGraceMs: config.WORKFLOW_FORCE_GRACE_MS,
    timeouts: { statementMs: config.DATABASE_STATEMENT_TIMEOUT_MS, lockMs: config.DATABASE_LOCK_TIMEOUT_MS },
    maxAdoptions: config.WORKFLOW_MAX_ADOPTIONS,
  });
  const retention = new Retention({ db: engine.db, log: log.child({ component: 'retention' }), retentionDays: config.WORKFLOW_RETENTION_DAYS });
  const monitor = new HealthMonitor({
    db: engine.db,
    lockConnectionString: config.DATABASE_LOCK_URL ?? connectionString,
    instanceId: engine.instanceId,
    workflows: registry.all(),
    log: log.child({ component: 'monitor' }),
    intervalMs: config.HEALTH_INTERVAL_MS,
    heartbeatMs: config.WORKFLOW_HEARTBEAT_MS,
    retention,
  });
  const commands = createCommands(engine, registry, monitor, retention);
  // /healthz and /metrics on a pool of their own: two connections whose
  // statements the server cancels when the scrape gives up
  // (src/chat/slack/metrics.ts waits 2 s for /healthz, 4 s for /metrics).
  const figuresPool = createPool({
    connectionString,
    applicationName: `workflow-metrics:${engine.instanceId}`,
    max: 2,
    statementTimeoutMs: FIGURES_STATEMENT_TIMEOUT_MS,
    lockTimeoutMs: FIGURES_STATEMENT_TIMEOUT_MS,
  });
  commands.health.readFiguresFrom(new Store(createKysely(figuresPool), engine.instanceId));
  return {
    config,
    log,
    connectionString,
    migrationConnectionString,
    embedded,
    registry,
    engine,
    ...commands,
    monitor,
    db: engine.db,
    applied,
    close: async () => {
      await monitor.close();
      await engine.close();
      await figuresPool.end().catch(() => {});
    },
  };
}
