import type { CommandService } from '../../commands/service.ts';
import type { Logger } from '../../log.ts';
import { forceRequestMessage } from '../blocks/force-request.ts';
import type { ChatClient } from './notifier.ts';

// Force requests in Slack (two-person approval): each serving instance sweeps
// every `pollMs`, marking requests past their time expired (each audited
// once, by whichever instance's UPDATE took it), posting new requests with
// their Approve and Reject buttons (in the channel they were asked in, else
// SLACK_NOTIFY_CHANNEL), and replacing a decided or expired request's
// message with its outcome. The database hands each message to one instance.

export interface ApprovalSweeper {
  start(): void;
  stop(): Promise<void>;
  /** One sweep now (tests, and after a request is filed here). */
  sweep(): Promise<void>;
}

export function createApprovalSweeper(options: {
  service: CommandService;
  client: ChatClient;
  log: Logger;
  notifyChannel?: string;
  /** Default 2 s: how late a request's message may appear, or an expiry show. */
  pollMs?: number;
}): ApprovalSweeper {
  const { service, client, log, notifyChannel } = options;
  const pollMs = options.pollMs ?? 2_000;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  async function once(): Promise<void> {
    await service.expireForceRequests();
    for (const { request, channel, ts } of await service.forceRequestMessages(notifyChannel)) {
      const message = forceRequestMessage(request);
      const blocks = message.blocks as unknown[];
      try {
        if (ts === null) {
          const posted = await client.chat.postMessage({ channel, text: message.text, blocks });
          if (posted.ts) await service.setForceRequestMessageTs(request.id, posted.ts);
        } else {
          await client.chat.update({ channel, ts, text: message.text, blocks });
        }
      } catch (error) {
        log.warn({ err: error, forceRequest: request.id, channel }, 'could not post or update a force request message');
      }
    }
  }

  function sweep(): Promise<void> {
    // One sweep at a time in this instance; a caller during one waits for it and the next.
    running = (running ?? Promise.resolve()).then(once).catch((error: unknown) => log.warn({ err: error }, 'force request sweep failed'));
    return running;
  }

  return {
    start() {
      timer ??= setInterval(() => void sweep(), pollMs);
    },
    async stop() {
      clearInterval(timer);
      timer = undefined;
      await running;
    },
    sweep,
  };
}
