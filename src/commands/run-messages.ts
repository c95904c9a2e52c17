import type { Engine } from '../engine/engine.ts';

/**
 * Where a chat surface posts each run's message, and which instance posts it:
 * every serving instance hears every run event, and exactly one posts
 * (src/chat/slack/notifier.ts).
 */
export class RunMessages {
  private readonly engine: Engine;

  constructor(engine: Engine) {
    this.engine = engine;
  }

  /** The channel a run reports to: where it was requested, else the fallback (the notify channel). */
  async channel(runId: number, fallback: string | undefined): Promise<string | undefined> {
    const run = await this.engine.store.run(runId);
    return run?.notify_channel ?? fallback;
  }

  /** For exactly one live instance: the one that posts (ts null) or keeps current (its ts) this run's message in this channel. */
  claim(runId: number, channel: string): Promise<{ ts: string | null } | undefined> {
    return this.engine.store.claimRunMessage(runId, channel);
  }

  /** The posted message's ts, for later updates (by this instance or after a restart). */
  setTs(runId: number, channel: string, ts: string): Promise<void> {
    return this.engine.store.setRunMessageTs(runId, channel, ts);
  }
}
