import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { createClient } from './connect.ts';

const FIRST_RETRY_MS = 250;
const MAX_RETRY_MS = 5_000;

/**
 * The wait before reconnect attempt `attempt` (0 for the first after a loss):
 * capped exponential backoff with equal jitter.
 *
 * - Exponential: a restart of a few seconds is bridged in a few quick tries;
 *   a long outage costs one connection attempt per cap.
 * - Capped at 5 s: a listener comes back at most that long after the
 *   database does, and its subscribers catch up only then (the dispatcher's
 *   poll runs every 5 s too).
 * - Jitter: a PostgreSQL restart drops every instance's listeners at the same
 *   moment; random waits keep them from reconnecting in lockstep. Equal
 *   jitter (half fixed, half random) rather than full jitter keeps a floor,
 *   so a server that refuses connections at once is not retried in a burst.
 */
export function reconnectDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** attempt);
  return ceiling / 2 + random() * (ceiling / 2);
}

export interface ListenerOptions {
  /**
   * A direct session connection (DATABASE_LOCK_URL when set): a
   * transaction-pooling proxy hands each statement to any server session, so
   * LISTEN (and a session advisory lock on `session`) would not stay with us.
   */
  connectionString: string;
  /** Shows in pg_stat_activity: other processes count serving instances by it, tests terminate it by it. */
  applicationName: string;
  channels: readonly string[];
}

type ListenerEvents = {
  notification: [message: pg.Notification];
  /** The session ended (server restart, terminated backend, network); reconnecting follows. Never after close(). */
  lost: [error: Error];
  /** LISTENing again after a loss: notifications sent meanwhile are gone, so subscribers catch up. */
  reconnected: [];
};

/**
 * LISTENs on a set of channels over one dedicated connection and keeps it
 * up: the one reconnect loop of the process, with one backoff policy
 * (reconnectDelay).
 *
 * Each subscriber (run events, the detached-run dispatcher, continuous
 * workflows) owns an instance rather than sharing one per process, because
 * each connection means something of its own: the dispatcher's name is how
 * other processes see that this one serves the queue, the continuous leader
 * lock is released by closing its session, and the run-event listener opens
 * and closes with each chat surface's watch. Sharing would save two
 * connections at the cost of explicit unlocks and reference counting.
 */
export class Listener extends EventEmitter<ListenerEvents> {
  private readonly options: ListenerOptions;
  /** The session while it is up and LISTENing; null while disconnected. */
  private client: pg.Client | null = null;
  /** A connection being opened (start or a retry); close() ends it too. */
  private opening: pg.Client | null = null;
  private retry: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(options: ListenerOptions) {
    super();
    this.options = options;
  }

  /** Whether the session is up and LISTENing. */
  get connected(): boolean {
    return this.client !== null;
  }

  /**
   * The live session, for state that must live and die with it (the
   * continuous leader's advisory lock: 'lost' then says the lock is gone).
   * Null while disconnected. A statement on it holds up notifications, so
   * keep it short.
   */
  get session(): pg.ClientBase | null {
    return this.client;
  }

  /**
   * Connects and LISTENs. Rejects if that fails; with `retry`, it then goes on
   * trying as after a loss, and emits 'reconnected' once it gets there.
   */
  async start(options: { retry?: boolean } = {}): Promise<void> {
    try {
      await this.connect();
    } catch (error) {
      if (options.retry) this.reconnect(0);
      throw error;
    }
  }

  private async connect(): Promise<void> {
    const client = createClient({ connectionString: this.options.connectionString, applicationName: this.options.applicationName });
    this.opening = client;
    // True until this session is lost or given up; its events count only until then.
    let live = true;
    const gone = (error: Error) => {
      if (!live) return;
      live = false;
      void client.end().catch(() => {});
      // While opening, the failure is the caller's (connect rejects).
      if (this.client !== client) return;
      this.client = null;
      if (this.closed) return;
      this.emit('lost', error);
      this.reconnect(0);
    };
    client.on('error', gone);
    client.on('end', () => gone(new Error('listening connection ended')));
    // Emitted from the first LISTEN on, before the others are in place.
    client.on('notification', (message) => {
      if (live && !this.closed) this.emit('notification', message);
    });
    try {
      await client.connect();
      for (const channel of this.options.channels) await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
      if (this.closed) throw new Error('listener closed');
      if (!live) throw new Error('listening connection ended while it was set up');
    } catch (error) {
      live = false;
      await client.end().catch(() => {});
      throw error;
    } finally {
      if (this.opening === client) this.opening = null;
    }
    this.client = client;
  }

  private reconnect(attempt: number): void {
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      if (this.closed) return;
      this.connect().then(
        () => this.emit('reconnected'),
        () => this.reconnect(attempt + 1),
      );
    }, reconnectDelay(attempt));
    this.retry.unref();
  }

  /** Stops for good: no more events, no more attempts; ends the session (and what it held). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    const clients = [this.client, this.opening];
    this.client = null;
    this.opening = null;
    await Promise.all(clients.map((client) => client?.end().catch(() => {})));
  }
}
