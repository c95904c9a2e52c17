import type { App } from '../app.ts';
import { embeddedDataDir } from '../app.ts';
import { ConsoleChat } from '../chat/console.ts';
import { slackMode } from '../chat/slack/mode.ts';
import type { ChatClient } from '../chat/slack/notifier.ts';
import { monitorEventMessage } from '../chat/blocks/health.ts';
import { Adopter } from '../engine/adoption.ts';
import { ContinuousStarter } from '../engine/continuous.ts';
import { Scheduler } from '../engine/scheduler.ts';
import { Dispatcher } from '../engine/dispatcher.ts';
import { Joiner } from '../engine/join.ts';
import type { ActiveRun, RunSummary } from '../engine/engine.ts';
import { countPostings, replaceDemoPostings } from '../workflows/postings/demo.ts';
import { POSTINGS_WORKFLOW_ID } from '../workflows/postings/index.ts';
import type { PostingsTables } from '../workflows/postings/schema.ts';

/**
 * `serve` / `npm start`: the runner up and a surface to drive it — the Slack
 * app when Slack is configured (Socket Mode or HTTP, with /healthz and
 * /metrics), else the console chat — until SIGINT or SIGTERM, or `quit` in
 * the console.
 */
export async function serve(app: App): Promise<number> {
  // The example's tables exist whenever its workflow is loaded (its migrations are the app's).
  const postings = app.db.withTables<PostingsTables>();
  if (app.registry.find(POSTINGS_WORKFLOW_ID) && (await countPostings(postings)) === 0) {
    const count = await replaceDemoPostings(postings, 1_000);
    app.log.info({ count }, 'loaded demo postings into the empty postings table');
  }
  // Runs whose owner is gone or handed off, of the workflows defined here (docs/architecture.md, Adoption).
  const adopter = new Adopter(app.engine, {
    connectionString: app.config.DATABASE_LOCK_URL ?? app.connectionString,
    workflowIds: app.registry
      .all()
      .filter((w) => w.adopt)
      .map((w) => w.id),
    log: app.log,
  });
  // Running batches of distributed workflows that other instances own: this one works on them too (docs/architecture.md, Participants).
  const joiner = new Joiner(app.engine, {
    connectionString: app.connectionString,
    lockConnectionString: app.config.DATABASE_LOCK_URL,
    workflows: app.registry.all(),
    heartbeatMs: app.config.WORKFLOW_HEARTBEAT_MS,
    log: app.log,
  });
  const dispatcher = new Dispatcher(app.engine, app.config.DATABASE_LOCK_URL ?? app.connectionString);
  const continuous = new ContinuousStarter({
    engine: app.engine,
    connectionString: app.config.DATABASE_LOCK_URL ?? app.connectionString,
    workflows: app.registry.all(),
    log: app.log,
  });
  for (const id of app.config.WORKFLOW_CONTINUOUS) {
    if (!app.registry.find(id)?.continuous)
      app.log.warn({ workflowId: id }, 'WORKFLOW_CONTINUOUS lists a workflow that is not continuous here (not loaded, or its module ignores the setting)');
  }
  // Scheduled workflows: the leading instance starts them on time (src/engine/scheduler.ts).
  const scheduler = new Scheduler({
    engine: app.engine,
    connectionString: app.config.DATABASE_LOCK_URL ?? app.connectionString,
    workflows: app.registry.all(),
    log: app.log,
  });
  // Independent of one another, each on a connection of its own: started
  // together, the prompt waits for the slowest of them, not for their sum.
  await Promise.all([
    adopter.start().then(async () => {
      // After the adopter's first pass: what is left without an owner nobody adopts.
      const recovered = await app.engine.recoverAbandoned();
      if (recovered.length) app.log.warn({ runs: recovered.map((r) => r.id) }, 'marked runs abandoned');
    }),
    joiner.start(),
    dispatcher.start(),
    continuous.start(),
    scheduler.start(),
  ]);
  // The health monitor: every instance ticks, one (the lock holder) recovers and alerts.
  app.monitor.start();
  app.engine.on('run-started', (run: ActiveRun) => app.log.info({ runId: run.id, workflowId: run.workflow.id }, 'run started'));
  app.engine.on('run-ended', (summary: RunSummary) => app.log.info({ runId: summary.run.id, outcome: summary.outcome }, 'run ended'));

  let quit: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    quit = resolve;
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });

  const where = app.embedded ? `embedded PostgreSQL in ${embeddedDataDir(app.config)}` : 'DATABASE_URL';
  const workflows = app.registry
    .all()
    .map((w) => `${w.id} ${w.name}${w.services.length ? ` (uses ${w.services.map((s) => s.name).join(', ')})` : ''}`)
    .join(', ')
    // Said here, once, rather than by every process that loads the example workflow.
    .concat(app.config.OLLAMA_URL ? `; ollama at ${withoutCredentials(app.config.OLLAMA_URL)}, model ${app.config.OLLAMA_MODEL}` : '');
  let closeSurface: () => Promise<void>;
  const mode = slackMode(app.config);
  if (mode) {
    // Bolt and prom-client load here, not for the console chat.
    const [{ createSlackApp }, { createObservability }, { startAlerts }] = await Promise.all([
      import('../chat/slack/app.ts'),
      import('../chat/slack/metrics.ts'),
      import('../chat/slack/alerts.ts'),
    ]);
    const observability = createObservability({ health: app.health, engineAlive: () => dispatcher.alive, metricsToken: app.config.METRICS_TOKEN });
    const slack = createSlackApp({
      config: app.config,
      service: app.service,
      views: app.views,
      messages: app.messages,
      log: app.log,
      routes: observability.routes,
    });
    const { port } = await slack.start(app.config.PORT);
    if (app.embedded) {
      // Slack means people other than the one at this terminal depend on it.
      process.stderr.write(
        `warning: serving Slack on the embedded PostgreSQL in ${embeddedDataDir(app.config)}: a development database on this machine (one server, no backups, no replication); set DATABASE_URL for production (docs/operations.md)\n`,
      );
      app.log.warn({ dataDir: embeddedDataDir(app.config) }, 'serving Slack on the embedded development database; set DATABASE_URL for production');
    }
    process.stderr.write(
      `workflow-chatops serving Slack (${mode === 'socket' ? 'Socket Mode' : `HTTP on port ${port}, POST /slack/events`}; /healthz and /metrics on port ${port}) on ${where}; workflows: ${workflows}\n`,
    );
    const stopAlerts = startAlerts({
      health: app.health,
      client: slack.app.client as unknown as ChatClient,
      log: app.log,
      channel: app.config.SLACK_NOTIFY_CHANNEL,
    });
    closeSurface = async () => {
      await stopAlerts();
      await slack.stop();
    };
  } else {
    // One banner: the console prints it as its greeting.
    const banner =
      `workflow-chatops serving on ${where}; workflows: ${workflows}\n` +
      'console chat: type help (or run 3001); numbers choose the [n] buttons; quit or Ctrl-C to stop. Also: npx workflow run 3001 in another terminal.';
    const chat = new ConsoleChat({ service: app.service, views: app.views, input: process.stdin, output: process.stdout, banner });
    // On a terminal, leaving the chat (quit, Ctrl-C, Ctrl-D) stops serving; with no terminal
    // (a process manager, stdin closed) the chat ends at once and the service goes on.
    void chat.start().then(() => {
      if (process.stdin.isTTY) quit();
    });
    const unsubscribe = app.health.onMonitorEvent((event) => chat.showMessage(monitorEventMessage(event)));
    closeSurface = () => {
      unsubscribe();
      return chat.close();
    };
  }

  await stopped;
  await app.monitor.close();
  await continuous.close();
  await scheduler.close();
  return shutDown(app, dispatcher, adopter, joiner, closeSurface);
}

/**
 * Graceful shutdown (SIGTERM/SIGINT): take no more queued runs and adopt no
 * more; let in-flight handlers finish for WORKFLOW_SHUTDOWN_GRACE_MS, abort
 * the rest (their interactions go back to pending) and release the runs for
 * adoption by another instance, or this one after its restart
 * (docs/architecture.md, Adoption); a workflow with `adopt: false` ends its
 * run `stopped` with reason `shutdown` (the run events tell Slack, which is
 * still up). Then close Slack and the database. A second signal cuts the
 * grace period short; a watchdog exits if something hangs.
 */
async function shutDown(app: App, dispatcher: Dispatcher, adopter: Adopter, joiner: Joiner, closeSurface: () => Promise<void>): Promise<number> {
  const grace = app.config.WORKFLOW_SHUTDOWN_GRACE_MS;
  const running = app.engine.activeRuns().map((r) => r.id);
  process.stderr.write(
    `shutting down…${running.length ? ` giving run${running.length > 1 ? 's' : ''} #${running.join(', #')} up to ${grace} ms to finish in-flight work` : ''}\n`,
  );
  let ended = false;
  const watchdog = setTimeout(() => {
    process.stderr.write('shutdown did not finish in time; exiting\n');
    process.exit(ended ? 0 : 1);
  }, grace + 900);
  watchdog.unref();
  const now = () => {
    process.stderr.write('second signal: aborting in-flight work now\n');
    for (const run of app.engine.activeRuns()) run.stop({ kind: 'shutdown' });
  };
  process.once('SIGINT', now);
  process.once('SIGTERM', now);
  try {
    await dispatcher.close();
    await adopter.close();
    // Participations end as a stop does: what finished is committed, the rest left pending for the run's owner.
    const [summaries] = await Promise.all([app.engine.shutdown(grace, { handoff: 'always' }), joiner.close(grace)]);
    ended = true;
    for (const s of summaries) {
      if (s.outcome === 'handed_off') process.stderr.write(`run #${s.run.id} released for another instance to take over\n`);
      app.log.info({ runId: s.run.id, status: s.run.status, reason: s.run.ended_reason, outcome: s.outcome }, 'run ended by shutdown');
    }
    await closeSurface().catch((error: unknown) => app.log.warn({ err: error }, 'closing the chat surface failed'));
    return 0;
  } finally {
    process.off('SIGINT', now);
    process.off('SIGTERM', now);
  }
}

function withoutCredentials(url: string): string {
  const parsed = new URL(url);
  parsed.username = '';
  parsed.password = '';
  return parsed.href;
}
