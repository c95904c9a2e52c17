import path from 'node:path';
import type { Config } from './config.ts';
import { createKysely, createPool, type Db } from './db/connect.ts';
import { ensureEmbeddedServer } from './db/embedded.ts';
import { migrateToLatest } from './db/migrate.ts';
import { createCommands, type Commands } from './commands/commands.ts';
import { Engine } from './engine/engine.ts';
import { HealthMonitor } from './engine/monitor.ts';
import type { Logger } from './log.ts';
import { loadWorkflows, syncWorkflows, type WorkflowRegistry } from './workflows/registry.ts';

/** Everything a surface needs, wired once: database, schema, workflows, engine, and the command layer's parts. */
export interface App extends Commands {
  config: Config;
  log: Logger;
  connectionString: string;
  /** True when the connection string belongs to the embedded server. */
  embedded: boolean;
  registry: WorkflowRegistry;
  engine: Engine;
  /** Not ticking until serve starts it; `workflow health` runs a pass on it anywhere. */
  monitor: HealthMonitor;
  db: Db;
  close(): Promise<void>;
}

export function embeddedDataDir(config: Config): string {
  return path.resolve(config.WORKFLOW_DATA_DIR, 'pg');
}

export async function openApp(config: Config, log: Logger): Promise<App> {
  // Workflow modules load before the database starts: a broken module should
  // fail fast, naming its file, without side effects.
  const registry = await loadWorkflows(config.WORKFLOW_MODULES, { config, log });
  const embedded = config.DATABASE_URL === undefined;
  const connectionString = config.DATABASE_URL ?? (await ensureEmbeddedServer(embeddedDataDir(config), log));

  const setupPool = createPool({ connectionString, applicationName: 'workflow-setup', max: 1 });
  const setup = createKysely(setupPool);
  try {
    await migrateToLatest(setup);
    await syncWorkflows(setup, registry);
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
  });
  const monitor = new HealthMonitor({
    db: engine.db,
    lockConnectionString: config.DATABASE_LOCK_URL ?? connectionString,
    instanceId: engine.instanceId,
    workflows: registry.all(),
    log: log.child({ component: 'monitor' }),
    intervalMs: config.HEALTH_INTERVAL_MS,
    heartbeatMs: config.WORKFLOW_HEARTBEAT_MS,
  });
  return {
    config,
    log,
    connectionString,
    embedded,
    registry,
    engine,
    ...createCommands(engine, registry, monitor),
    monitor,
    db: engine.db,
    close: async () => {
      await monitor.close();
      await engine.close();
    },
  };
}
