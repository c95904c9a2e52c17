import { EventEmitter } from 'node:events';
import type { Kysely } from 'kysely';
import { Listener } from '../db/listener.ts';
import { notify } from '../db/queries/audit.ts';

export const EVENTS_CHANNEL = 'workflow_events';

/** A run's lifecycle, published by whichever process changed it, heard by every serving instance. */
export type RunEvent = { type: 'run_started' | 'run_ended'; runId: number; workflowId: number };

export async function publishRunEvent<DB>(db: Kysely<DB>, event: RunEvent): Promise<void> {
  await notify(db, EVENTS_CHANNEL, event).catch(() => {
    // A lost notification costs a late chat message, never correctness:
    // listeners also poll the runs they are showing.
  });
}

/**
 * Run events from every process, re-emitted as 'event', over a Listener of
 * their own; 'reconnected' after a lost connection, so watchers can catch up
 * on what they missed.
 */
export class RunEventListener extends EventEmitter {
  private readonly listener: Listener;

  constructor(connectionString: string, applicationName: string) {
    super();
    this.listener = new Listener({ connectionString, applicationName, channels: [EVENTS_CHANNEL] });
    this.listener.on('notification', (message) => {
      if (message.channel !== EVENTS_CHANNEL || !message.payload) return;
      try {
        this.emit('event', JSON.parse(message.payload) as RunEvent);
      } catch {
        // Not ours.
      }
    });
    this.listener.on('reconnected', () => this.emit('reconnected'));
  }

  start(): Promise<void> {
    return this.listener.start();
  }

  close(): Promise<void> {
    return this.listener.close();
  }
}
