import type { RunView } from '../../commands/results.ts';
import type { RunMessages } from '../../commands/run-messages.ts';
import type { RunViews, RunWatch } from '../../commands/run-views.ts';
import type { Actor, CommandService } from '../../commands/service.ts';
import { isActive } from '../../db/run-states.ts';
import type { Logger } from '../../log.ts';
import { sleep } from '../../lib/sleep.ts';
import { failuresMessage, runMessage } from '../blocks/run.ts';

// Run messages in Slack: when a run starts (from Slack, the CLI, --detach or
// any other instance), exactly one serving instance posts its message — in
// the channel it was requested in, else SLACK_NOTIFY_CHANNEL — and keeps it
// current with chat.update (never the response_url, which expires after 30
// minutes), at most once every few seconds per message (Tier 3), and only
// when what it shows has changed. NOTIFY carries the lifecycle; polling the
// shown runs covers a missed notification.

/** The part of the Web API client the notifier uses. */
export interface ChatClient {
  chat: {
    postMessage(args: { channel: string; text: string; blocks: unknown[]; thread_ts?: string }): Promise<{ ts?: string; channel?: string }>;
    update(args: { channel: string; ts: string; text: string; blocks: unknown[] }): Promise<unknown>;
  };
}

export interface NotifierOptions {
  service: CommandService;
  views: RunViews;
  messages: RunMessages;
  client: ChatClient;
  log: Logger;
  /** Where runs that were not requested in a channel report (SLACK_NOTIFY_CHANNEL); none → not posted. */
  notifyChannel?: string;
  /** Least time between two updates of one message. Default 3 s (Slack's Tier 3 for chat.update). */
  minUpdateMs?: number;
  /** How often the shown runs are re-read. Default 3 s. */
  pollMs?: number;
  /** How often running runs are listed to catch a start whose NOTIFY was missed. Default 30 s. */
  discoverMs?: number;
}

export interface Notifier {
  start(): Promise<void>;
  /** Stops listening and polling; pending final updates are sent first. */
  stop(): Promise<void>;
  /** The runs whose messages this instance is keeping current (for tests and health). */
  shown(): number[];
}

interface Shown {
  runId: number;
  channel: string;
  ts: string;
  content: string;
  updatedAt: number;
}

/** Ended runs whose message is kept for a late amendment (a forced-out run naming its replacement). */
const FINISHED_KEPT = 200;
const SYSTEM_ACTOR: Actor = { id: 'slack-notifier', source: 'slack' };
/** A fixed clock for comparing renders: elapsed time shows as "-" whatever the run. */
const CLOCKLESS = new Date(0);

export function createNotifier(options: NotifierOptions): Notifier {
  const { service, views, messages, client, log } = options;
  const minUpdateMs = options.minUpdateMs ?? 3_000;
  const pollMs = options.pollMs ?? 3_000;
  const discoverMs = options.discoverMs ?? 30_000;

  const shown = new Map<number, Shown[]>();
  /**
   * Messages of runs that ended lately, kept for one more update: a run
   * forced out ends before the run that replaces it exists, and its end is
   * announced again once it can name it.
   */
  const finished = new Map<number, Shown[]>();
  const rememberFinished = (runId: number, entries: Shown[]) => {
    finished.set(runId, entries);
    if (finished.size > FINISHED_KEPT) finished.delete(finished.keys().next().value!);
  };
  /** One chain of work per run, so its post, updates and final update never overlap or reorder. */
  const chains = new Map<number, Promise<void>>();
  /** Runs with a refresh already queued: polls do not pile up behind a slow API. */
  const refreshQueued = new Set<number>();
  const stopping = new AbortController();
  let watch: RunWatch | undefined;
  let timers: NodeJS.Timeout[] = [];

  function enqueue(runId: number, work: () => Promise<void>): Promise<void> {
    const previous = chains.get(runId) ?? Promise.resolve();
    const next = previous
      .then(work)
      .catch((error: unknown) => log.error({ err: error, runId }, 'run message: Slack call failed'))
      .finally(() => {
        if (chains.get(runId) === next) chains.delete(runId);
      });
    chains.set(runId, next);
    return next;
  }

  function render(view: RunView): { text: string; blocks: unknown[]; content: string } {
    const message = runMessage(view);
    // What the message says, without its clock (elapsed time): a run that
    // makes no progress is not re-sent just because a second has passed.
    const still = runMessage(view, { now: CLOCKLESS });
    return { text: message.text, blocks: message.blocks, content: JSON.stringify([still.text, still.blocks]) };
  }

  /** Posts the run's message unless it is shown already or another instance claimed it. */
  async function announce(runId: number): Promise<void> {
    if (shown.has(runId)) return refresh(runId, false);
    const channel = await messages.channel(runId, options.notifyChannel);
    const claim = channel ? await messages.claim(runId, channel) : undefined;
    if (!channel || !claim) return;
    const view = await views.get(runId);
    if (!view) return;
    if (claim.ts) {
      // Its poster no longer serves (a run adopted after its instance died): keep that message current from here.
      shown.set(runId, [{ runId, channel, ts: claim.ts, content: '', updatedAt: 0 }]);
      return refresh(runId, !isActive(view.status));
    }
    const message = render(view);
    const posted = await client.chat.postMessage({ channel, text: message.text, blocks: message.blocks });
    if (!posted.ts) throw new Error(`chat.postMessage returned no ts for run #${runId}`);
    const postedChannel = posted.channel ?? channel;
    await messages.setTs(runId, channel, posted.ts);
    shown.set(runId, [{ runId, channel: postedChannel, ts: posted.ts, content: message.content, updatedAt: Date.now() }]);
    log.debug({ runId, channel, ts: posted.ts }, 'run message posted');
    // Ended while it was being posted, or an ended run found late: the post is final.
    if (!isActive(view.status)) {
      rememberFinished(runId, shown.get(runId)!);
      shown.delete(runId);
      await postFailures(view, postedChannel, posted.ts);
    }
  }

  /**
   * A finished run's failed items go in a thread under its message, not in
   * the channel: the message says how many failed, the thread says which
   * and why. Posted by the instance that posted or finished the message.
   */
  async function postFailures(view: RunView, channel: string, ts: string): Promise<void> {
    if (view.interactionsFailed === 0) return;
    const failures = await views.failures(view.id);
    if (failures.length === 0) return;
    const reply = failuresMessage(view, failures);
    await client.chat.postMessage({ channel, thread_ts: ts, text: reply.text, blocks: reply.blocks });
  }

  /**
   * Brings the run's messages up to date. Throttled: a change inside the
   * interval waits for it (a later poll or the final update sends it).
   * `final` waits out the interval instead, so the finished message is never lost.
   */
  async function refresh(runId: number, final: boolean): Promise<void> {
    const messages = shown.get(runId);
    if (!messages) return;
    const view = await views.get(runId);
    if (!view) {
      shown.delete(runId);
      return;
    }
    const ended = !isActive(view.status);
    const message = render(view);
    for (const entry of messages) {
      if (entry.content === message.content) continue;
      const wait = entry.updatedAt + minUpdateMs - Date.now();
      if (wait > 0) {
        if (!final && !ended) continue;
        await sleep(wait, stopping.signal);
      }
      try {
        await client.chat.update({ channel: entry.channel, ts: entry.ts, text: message.text, blocks: message.blocks });
        entry.content = message.content;
        entry.updatedAt = Date.now();
      } catch (error) {
        const code = (error as { data?: { error?: string } }).data?.error;
        if (code === 'message_not_found' || code === 'channel_not_found' || code === 'cant_update_message') {
          log.warn({ runId, channel: entry.channel, code }, 'run message gone; no longer updating it');
          entry.content = message.content;
          continue;
        }
        throw error;
      }
    }
    if (ended) {
      shown.delete(runId);
      rememberFinished(runId, messages);
      for (const entry of messages) await postFailures(view, entry.channel, entry.ts);
    }
  }

  /** A run that ended has changed since (it now names the run that replaced it): update its message once more. */
  async function amend(runId: number, entries: Shown[]): Promise<void> {
    const view = await views.get(runId);
    if (!view) return;
    const message = render(view);
    for (const entry of entries) {
      if (entry.content === message.content) continue;
      await client.chat.update({ channel: entry.channel, ts: entry.ts, text: message.text, blocks: message.blocks });
      entry.content = message.content;
    }
  }

  /** A run ended: a final update of the message shown, or its only message if the start was missed. */
  async function finish(runId: number): Promise<void> {
    if (shown.has(runId)) return refresh(runId, true);
    const earlier = finished.get(runId);
    if (earlier) return amend(runId, earlier);
    await announce(runId);
  }

  function poll(): void {
    for (const runId of shown.keys()) {
      if (refreshQueued.has(runId)) continue;
      refreshQueued.add(runId);
      void enqueue(runId, () => {
        refreshQueued.delete(runId);
        return refresh(runId, false);
      });
    }
  }

  async function discover(): Promise<void> {
    const result = await service.execute({ verb: 'list' }, SYSTEM_ACTOR);
    if (result.kind !== 'runs') return;
    for (const run of result.runs) {
      if (run.status === 'running' && !shown.has(run.id) && !chains.has(run.id)) void enqueue(run.id, () => announce(run.id));
    }
  }

  return {
    async start() {
      watch = await views.watch();
      watch.on('run', (type, view) => {
        if (stopping.signal.aborted) return;
        void enqueue(view.id, () => (type === 'run_started' ? announce(view.id) : finish(view.id)));
      });
      watch.on('reconnected', () => {
        poll();
        discover().catch((error: unknown) => log.warn({ err: error }, 'run message discovery failed'));
      });
      timers = [
        setInterval(poll, pollMs),
        setInterval(() => void discover().catch((error: unknown) => log.warn({ err: error }, 'run message discovery failed')), discoverMs),
      ];
      for (const timer of timers) timer.unref();
      await discover().catch((error: unknown) => log.warn({ err: error }, 'run message discovery failed'));
    },
    async stop() {
      for (const timer of timers) clearInterval(timer);
      timers = [];
      // Final updates stop waiting out the interval and go now.
      stopping.abort();
      await watch?.close();
      watch = undefined;
      await Promise.allSettled([...chains.values()]);
    },
    shown: () => [...shown.keys()],
  };
}
