import type pg from 'pg';
import { createClient } from '../db/connect.ts';
import { advisoryUnlock, tryAdvisoryLock, waitAdvisoryLock } from '../db/queries/locks.ts';

export const CONTROL_CHANNEL = 'workflow_control';

export type ControlMessage = { type: 'stop'; runId: number; by: string };

/**
 * A run's dedicated connection (docs/architecture.md, Ownership): it holds
 * the run's session advisory lock for the run's whole life and LISTENs for
 * control messages. Its loss means the lock is gone, so the run must stop
 * writing at once (docs/architecture.md, Fencing); `onLost` fires on the
 * first error or end of the connection.
 */
export class RunLock {
  private readonly client: pg.Client;
  private lost = false;
  private closed = false;
  private lostListeners: ((error: Error) => void)[] = [];
  private controlListeners: ((message: ControlMessage) => void)[] = [];
  private heldKey: number | null = null;

  private constructor(client: pg.Client) {
    this.client = client;
    client.on('error', (error) => this.markLost(error));
    client.on('end', () => this.markLost(new Error('lock connection ended')));
    client.on('notification', (message) => {
      if (message.channel !== CONTROL_CHANNEL || !message.payload) return;
      try {
        const parsed = JSON.parse(message.payload) as ControlMessage;
        for (const listener of this.controlListeners) listener(parsed);
      } catch {
        // Not ours to interpret.
      }
    });
  }

  private markLost(error: Error): void {
    if (this.lost || this.closed) return;
    this.lost = true;
    for (const listener of this.lostListeners) listener(error);
  }

  static async connect(connectionString: string, applicationName: string): Promise<RunLock> {
    const client = createClient({ connectionString, applicationName });
    await client.connect();
    return new RunLock(client);
  }

  get pid(): number {
    return (this.client as unknown as { processID: number }).processID;
  }

  get isLost(): boolean {
    return this.lost;
  }

  async tryAcquire(key: number): Promise<boolean> {
    const ok = await tryAdvisoryLock(this.client, key);
    if (ok) this.heldKey = key;
    return ok;
  }

  async waitAcquire(key: number, timeoutMs: number): Promise<boolean> {
    const ok = await waitAdvisoryLock(this.client, key, timeoutMs);
    if (ok) this.heldKey = key;
    return ok;
  }

  /**
   * Whether the lock is still ours: the connection answers within
   * `timeoutMs`. Checked before a run's last writes and when ownership is in
   * doubt. A connection that stays silent (a network partition sends no
   * reset) counts as lost: the server may have ended the session and freed
   * the lock long ago, and waiting for TCP to give up takes minutes.
   */
  async verify(timeoutMs = 5_000): Promise<boolean> {
    if (this.lost || this.closed) return false;
    let timer: NodeJS.Timeout | undefined;
    const silent = new Promise<'silent'>((resolve) => {
      timer = setTimeout(() => resolve('silent'), timeoutMs);
    });
    try {
      const answer = await Promise.race([this.client.query('SELECT 1').then(() => 'answered' as const), silent]);
      if (answer === 'silent') {
        this.markLost(new Error(`lock connection silent for ${timeoutMs} ms`));
        // Its socket is dropped so the pending query settles and nothing more is sent on it.
        (this.client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
        return false;
      }
      return !this.lost;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  async listen(): Promise<void> {
    await this.client.query(`LISTEN ${CONTROL_CHANNEL}`);
  }

  onLost(listener: (error: Error) => void): void {
    this.lostListeners.push(listener);
  }

  onControl(listener: (message: ControlMessage) => void): void {
    this.controlListeners.push(listener);
  }

  /** Releases the lock (if the connection still works) and closes the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.heldKey !== null && !this.lost) await advisoryUnlock(this.client, this.heldKey);
    } catch {
      // Closing the connection releases a session lock anyway.
    }
    await this.client.end().catch(() => {});
  }
}
