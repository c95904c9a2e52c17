import { EventEmitter } from 'node:events';
import type { Kysely } from 'kysely';
import { createClient } from '../db/connect.ts';
import { notify } from '../db/queries/audit.ts';

export const EVENTS_CHANNEL = 'workflow_events';

/** A run's lifecycle, published by whichever process changed it, heard by every serving instance. */
export type RunEvent = { type: 'run_started' | 'run_ended'; runId: number; workflowId: number };

export async function publishRunEvent(db: Kysely<any>, event: RunEvent): Promise<void> {
  await notify(db, EVENTS_CHANNEL, event).catch(() => {
    // A lost notification costs a late chat message, never correctness:
    // listeners also poll the runs they are showing.
  });
}

/**
 * LISTENs for run events on a dedicated connection and re-emits them as
 * 'event'. Reconnects with backoff when the connection is lost, emitting
 * 'reconnected' so listeners can catch up on what they missed.
 */
export class RunEventListener extends EventEmitter {
  private client: ReturnType<typeof createClient> | null = null;
  private closed = false;
  private retryMs = 250;
  private readonly connectionString: string;
  private readonly applicationName: string;

  constructor(connectionString: string, applicationName: string) {
    super();
    this.connectionString = connectionString;
    this.applicationName = applicationName;
  }

  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = createClient({ connectionString: this.connectionString, applicationName: this.applicationName });
    client.on('notification', (message) => {
      if (message.channel !== EVENTS_CHANNEL || !message.payload) return;
      try {
        this.emit('event', JSON.parse(message.payload) as RunEvent);
      } catch {
        // Not ours.
      }
    });
    client.on('error', () => this.reconnectSoon());
    client.on('end', () => this.reconnectSoon());
    await client.connect();
    await client.query(`LISTEN ${EVENTS_CHANNEL}`);
    this.client = client;
    this.retryMs = 250;
  }

  private reconnecting = false;

  private reconnectSoon(): void {
    if (this.closed || this.reconnecting) return;
    this.reconnecting = true;
    this.client = null;
    const retry = () => {
      if (this.closed) return;
      this.connect().then(
        () => {
          this.reconnecting = false;
          this.emit('reconnected');
        },
        () => {
          this.retryMs = Math.min(this.retryMs * 2, 10_000);
          setTimeout(retry, this.retryMs).unref();
        },
      );
    };
    setTimeout(retry, this.retryMs).unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client?.end().catch(() => {});
  }
}
