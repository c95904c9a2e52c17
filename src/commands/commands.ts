import type { Engine } from '../engine/engine.ts';
import type { HealthMonitor } from '../engine/monitor.ts';
import type { Retention } from '../engine/retention.ts';
import { Health } from './health.ts';
import { RunMessages } from './run-messages.ts';
import { RunViews } from './run-views.ts';
import { CommandService, type WorkflowLookup } from './service.ts';

/** What the surfaces (CLI, console, Slack) are handed: each part does one thing. */
export interface Commands {
  /** Executes commands and button clicks, and audits them. */
  service: CommandService;
  /** Runs as views, one at a time or as they start and end. */
  views: RunViews;
  /** Which instance posts each run's chat message, and where. */
  messages: RunMessages;
  /** The monitor's findings and the database figures for /healthz, /metrics and alerts. */
  health: Health;
}

export function createCommands(engine: Engine, workflows: WorkflowLookup, monitor?: HealthMonitor, retention?: Retention): Commands {
  const views = new RunViews(engine);
  const health = new Health(engine, monitor);
  return {
    service: new CommandService(engine, workflows, { views, health, retention }),
    views,
    messages: new RunMessages(engine),
    health,
  };
}
