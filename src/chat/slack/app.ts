import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { App, HTTPReceiver, LogLevel, SocketModeReceiver, type CustomRoute, type Logger as BoltLogger } from '@slack/bolt';
import type { RunMessages } from '../../commands/run-messages.ts';
import type { RunViews } from '../../commands/run-views.ts';
import type { CommandService } from '../../commands/service.ts';
import { DEFAULT_ACCESS, DEFAULT_ACCESS_WARNING } from '../../access-grants.ts';
import type { Config } from '../../config.ts';
import type { Logger } from '../../log.ts';
import { createActorResolver } from './actor.ts';
import { slackMode, type SlackMode } from './mode.ts';
import { registerListeners, type ReplyClient, type SlackDeps } from './listeners.ts';
import { createApprovalSweeper, type ApprovalSweeper } from './approvals.ts';
import { createNotifier, type ChatClient, type Notifier, type NotifierOptions } from './notifier.ts';
import { guardSlackRequests } from './request-guard.ts';
import { teamGuard } from './team-guard.ts';

// The Bolt app (docs/slack.md): Socket Mode when SLACK_APP_TOKEN is set (no
// public URL needed), else HTTP on PORT with `POST /slack/events` for slash
// commands, interactivity and events, requests verified with
// SLACK_SIGNING_SECRET. SLACK_API_URL points the Web API client elsewhere
// (a proxy, or a test's stand-in for Slack).

export { slackMode, type SlackMode } from './mode.ts';

export interface SlackAppOptions {
  config: Config;
  service: CommandService;
  views: RunViews;
  messages: RunMessages;
  log: Logger;
  /** More routes on the same HTTP server (GET /healthz, /metrics). In Socket Mode they get a server of their own on PORT. */
  routes?: CustomRoute[];
  /** Run message timing (defaults: updates at most every 3 s, polled every 3 s). */
  notifier?: Pick<NotifierOptions, 'minUpdateMs' | 'pollMs' | 'discoverMs'>;
  /** How often force requests are swept (posted, updated, expired); default: the notifier's pollMs, else 2 s. */
  approvalsPollMs?: number;
}

export interface SlackApp {
  app: App;
  mode: SlackMode;
  notifier: Notifier;
  approvals: ApprovalSweeper;
  /**
   * Starts the receiver and the run notifier; resolves with the bound HTTP port
   * (port 0 picks a free one; in Socket Mode the routes' server, 0 when there are no routes).
   */
  start(port?: number): Promise<{ port: number }>;
  stop(): Promise<void>;
}

/** The Web API base URL as the client wants it: with a trailing slash. */
export function slackApiUrl(config: Config): string | undefined {
  const url = config.SLACK_API_URL;
  if (!url) return undefined;
  return url.endsWith('/') ? url : `${url}/`;
}

export function createSlackApp(options: SlackAppOptions): SlackApp {
  const { config, service, views, messages, log } = options;
  const mode = slackMode(config);
  if (!mode) throw new Error('Slack needs SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode)');
  if (!config.SLACK_BOT_TOKEN) throw new Error('SLACK_BOT_TOKEN is required for the Slack app (the bot token, xoxb-…)');

  const logger = boltLogger(log.child({ component: 'slack' }), config.LOG_LEVEL);
  const apiUrl = slackApiUrl(config);
  const clientOptions = apiUrl ? { slackApiUrl: apiUrl } : {};
  const routes = options.routes ?? [];

  const receiver =
    mode === 'socket'
      ? new SocketModeReceiver({
          appToken: config.SLACK_APP_TOKEN!,
          logger,
          customRoutes: routes,
          // The Socket Mode client opens its connection through the Web API (apps.connections.open).
          installerOptions: { clientOptions, port: config.PORT },
        })
      : new HTTPReceiver({
          signingSecret: config.SLACK_SIGNING_SECRET!,
          endpoints: '/slack/events',
          port: config.PORT,
          customRoutes: routes,
          logger,
          // Acknowledge at once: the response goes out when the listener calls ack().
          processBeforeResponse: false,
        });
  if (receiver instanceof HTTPReceiver) {
    receiver.requestListener = guardSlackRequests(receiver.requestListener, { paths: ['/slack/events'], log: log.child({ component: 'slack-http' }) });
  }

  const app = new App({
    token: config.SLACK_BOT_TOKEN,
    receiver,
    logger,
    clientOptions,
    // auth.test runs in start(), where a failure is reported, not in the constructor.
    deferInitialization: true,
    convoStore: false,
  });

  if (!config.WORKFLOW_ACCESS) log.warn(DEFAULT_ACCESS_WARNING);
  const deps: SlackDeps = {
    service,
    log: log.child({ component: 'slack' }),
    client: app.client as unknown as ReplyClient,
    actors: createActorResolver({ grants: config.WORKFLOW_ACCESS ?? DEFAULT_ACCESS, client: app.client, log }),
  };
  if (config.SLACK_TEAM_ID) app.use(teamGuard(config.SLACK_TEAM_ID, deps));
  else log.warn('SLACK_TEAM_ID is not set: requests from any workspace or organisation the app is installed in are served (docs/security.md)');
  registerListeners(app, deps);
  app.error(async (error) => {
    log.error({ err: error }, 'slack: unhandled error');
  });

  const notifier = createNotifier({
    service,
    views,
    messages,
    client: app.client as unknown as ChatClient,
    log: log.child({ component: 'slack-notifier' }),
    notifyChannel: config.SLACK_NOTIFY_CHANNEL,
    ...options.notifier,
  });

  const approvals = createApprovalSweeper({
    service,
    client: app.client as unknown as ChatClient,
    log: log.child({ component: 'slack-approvals' }),
    notifyChannel: config.SLACK_NOTIFY_CHANNEL,
    pollMs: options.approvalsPollMs ?? options.notifier?.pollMs,
  });

  let started = false;
  return {
    app,
    mode,
    notifier,
    approvals,
    async start(port = config.PORT) {
      await app.init();
      await notifier.start();
      approvals.start();
      started = true;
      try {
        if (mode === 'http') {
          const server = (await app.start(port)) as Server;
          return { port: (server.address() as AddressInfo).port };
        }
        // Socket Mode serves the extra routes (health, metrics) on a server of its own.
        const routesServer = receiver as unknown as { httpServer?: Server; httpServerPort?: number };
        const server = routesServer.httpServer;
        if (server) routesServer.httpServerPort = port;
        const listening = server && !server.listening ? once(server, 'listening') : undefined;
        await app.start();
        if (!server) return { port: 0 };
        await listening;
        return { port: (server.address() as AddressInfo).port };
      } catch (error) {
        await notifier.stop();
        await approvals.stop();
        started = false;
        throw error;
      }
    },
    async stop() {
      if (!started) return;
      started = false;
      await notifier.stop();
      await approvals.stop();
      await app.stop();
    },
  };
}

/** Bolt's logger interface over pino. */
function boltLogger(log: Logger, level: string): BoltLogger {
  const write =
    (method: 'debug' | 'info' | 'warn' | 'error') =>
    (...msg: unknown[]) => {
      const error = msg.find((m) => m instanceof Error);
      const text = msg.map((m) => (m instanceof Error ? m.message : typeof m === 'string' ? m : JSON.stringify(m))).join(' ');
      if (error) log[method]({ err: error }, text);
      else log[method](text);
    };
  let current = toBoltLevel(level);
  return {
    debug: write('debug'),
    info: write('info'),
    warn: write('warn'),
    error: write('error'),
    setLevel: (next) => void (current = next),
    getLevel: () => current,
    setName: () => {},
  };
}

function toBoltLevel(level: string): LogLevel {
  switch (level) {
    case 'trace':
    case 'debug':
      return LogLevel.DEBUG;
    case 'info':
      return LogLevel.INFO;
    case 'warn':
      return LogLevel.WARN;
    default:
      return LogLevel.ERROR;
  }
}
