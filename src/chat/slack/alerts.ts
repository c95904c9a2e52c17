import type { Health } from '../../commands/health.ts';
import type { Logger } from '../../log.ts';
import { monitorEventMessage } from '../blocks/health.ts';
import type { ChatClient } from './notifier.ts';

// The health monitor's alerts in Slack: recovered runs, stuck runs, external
// services going down and coming back, posted to SLACK_NOTIFY_CHANNEL. Only
// the active monitor emits events (one instance per database), so every
// instance can subscribe and each alert is still posted once.

export interface AlertsOptions {
  health: Pick<Health, 'onMonitorEvent'>;
  client: ChatClient;
  log: Logger;
  /** SLACK_NOTIFY_CHANNEL; none → alerts are only logged. */
  channel: string | undefined;
}

/** Starts posting; returns the function that stops it (and waits for posts in flight). */
export function startAlerts(options: AlertsOptions): () => Promise<void> {
  const { client, log, channel } = options;
  let chain: Promise<void> = Promise.resolve();
  const unsubscribe = options.health.onMonitorEvent((event) => {
    if (!channel) {
      log.info({ event }, 'health monitor event (no SLACK_NOTIFY_CHANNEL to post it to)');
      return;
    }
    const message = monitorEventMessage(event);
    // In order: a service's "down" must not arrive after its "back".
    chain = chain
      .then(() => client.chat.postMessage({ channel, text: message.text, blocks: message.blocks }))
      .then(
        () => {},
        (error: unknown) => log.error({ err: error, event: event.type }, 'health alert: Slack call failed'),
      );
  });
  return async () => {
    unsubscribe();
    await chain;
  };
}
