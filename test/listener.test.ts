// The one LISTEN-and-reconnect loop (src/db/listener.ts) against a real
// PostgreSQL: notifications arrive; a terminated backend is replaced, with
// 'lost' and 'reconnected' in between; close() stops for good.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { sql } from 'kysely';
import type pg from 'pg';
import { createKysely, createPool, type Db } from '../src/db/connect.ts';
import { Listener, reconnectDelay } from '../src/db/listener.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const EVENT_TIMEOUT_MS = 10_000;

/** Resolves with the event's arguments; rejects if it does not come in time. Subscribe before acting. */
function next(listener: Listener, event: 'lost' | 'reconnected'): Promise<unknown[]> {
  return once(listener, event, { signal: AbortSignal.timeout(EVENT_TIMEOUT_MS) });
}

/** Polls `check` until it returns something other than undefined, or fails at the deadline. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = EVENT_TIMEOUT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
}

describe('Listener', () => {
  let database: TestDatabase;
  let db: Db;
  const opened: Listener[] = [];

  before(async () => {
    database = await createTestDatabase('listener');
    db = createKysely(createPool({ connectionString: database.url, applicationName: 'listener-test', max: 2 }));
  });

  after(async () => {
    await Promise.all(opened.map((l) => l.close()));
    await db?.destroy();
    await database?.drop();
  });

  function listener(channels: string[], connectionString = database.url): { listener: Listener; applicationName: string } {
    const applicationName = `listener-test:${randomBytes(4).toString('hex')}`;
    const l = new Listener({ connectionString, applicationName, channels });
    opened.push(l);
    return { listener: l, applicationName };
  }

  async function backends(applicationName: string): Promise<number[]> {
    const { rows } = await sql<{ pid: number }>`SELECT pid FROM pg_stat_activity WHERE application_name = ${applicationName}`.execute(db);
    return rows.map((r) => r.pid);
  }

  async function notify(channel: string, payload: string): Promise<void> {
    await sql`SELECT pg_notify(${channel}, ${payload})`.execute(db);
  }

  /** Collects notifications until one with `payload` arrives; returns all seen up to it. */
  function collectUntil(l: Listener, payload: string): Promise<Array<[string, string | undefined]>> {
    const seen: Array<[string, string | undefined]> = [];
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        l.off('notification', onMessage);
        reject(new Error(`no notification '${payload}' within ${EVENT_TIMEOUT_MS} ms (saw ${JSON.stringify(seen)})`));
      }, EVENT_TIMEOUT_MS);
      const onMessage = (message: pg.Notification) => {
        seen.push([message.channel, message.payload]);
        if (message.payload !== payload) return;
        clearTimeout(timer);
        l.off('notification', onMessage);
        resolve(seen);
      };
      l.on('notification', onMessage);
    });
  }

  test('backoff: capped exponential with equal jitter', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 30].map((attempt) => [reconnectDelay(attempt, () => 0), reconnectDelay(attempt, () => 1)]),
      [
        [125, 250],
        [250, 500],
        [500, 1_000],
        [1_000, 2_000],
        [2_000, 4_000],
        [2_500, 5_000],
        [2_500, 5_000],
      ],
    );
  });

  test('notifications on its channels arrive, on others not; the session is the one LISTENing', async () => {
    const { listener: l, applicationName } = listener(['listener_a', 'listener_b']);
    assert.equal(l.connected, false);
    await l.start();
    assert.equal(l.connected, true);
    const [pid] = await backends(applicationName);
    const { rows } = await l.session!.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    assert.equal(rows[0]!.pid, pid);

    const seen = collectUntil(l, 'last');
    await notify('listener_a', 'one');
    await notify('listener_other', 'not ours');
    await notify('listener_b', 'two');
    await notify('listener_a', 'last');
    assert.deepEqual(await seen, [
      ['listener_a', 'one'],
      ['listener_b', 'two'],
      ['listener_a', 'last'],
    ]);
  });

  test("a terminated backend: 'lost', then 'reconnected' on a new session, and later notifications arrive", async () => {
    const { listener: l, applicationName } = listener(['listener_c']);
    await l.start();
    const [before] = await backends(applicationName);
    assert.ok(before, 'the listener has a backend');
    const firstSession = l.session;

    const lost = next(l, 'lost');
    const reconnected = next(l, 'reconnected');
    const { rows } = await sql<{ ok: boolean }>`SELECT pg_terminate_backend(${before}::int) AS ok`.execute(db);
    assert.equal(rows[0]!.ok, true);
    const [error] = await lost;
    assert.ok(error instanceof Error);
    await reconnected;

    assert.equal(l.connected, true);
    assert.notEqual(l.session, firstSession, 'a new session');
    const after = await backends(applicationName);
    assert.equal(after.length, 1, `one connection, not ${after.length}`);
    assert.notEqual(after[0], before);

    const seen = collectUntil(l, 'after');
    await notify('listener_c', 'after');
    assert.deepEqual(await seen, [['listener_c', 'after']]);
  });

  test("start({ retry: true }) that fails keeps trying, and says 'reconnected' when it gets there", async () => {
    // A database that does not exist yet: every attempt fails until it is created.
    const name = `${database.name}_later`;
    const url = new URL(database.url);
    url.pathname = `/${name}`;
    const { listener: l } = listener(['listener_d'], url.toString());
    try {
      const reconnected = next(l, 'reconnected');
      await assert.rejects(l.start({ retry: true }), /does not exist/);
      assert.equal(l.connected, false);
      await sql`CREATE DATABASE ${sql.id(name)}`.execute(db);
      await reconnected;
      assert.equal(l.connected, true);
      const { rows } = await l.session!.query<{ db: string }>('SELECT current_database() AS db');
      assert.equal(rows[0]!.db, name);
    } finally {
      await l.close();
      await sql`DROP DATABASE IF EXISTS ${sql.id(name)} WITH (FORCE)`.execute(db);
    }
  });

  test('close() ends the session without a lost event, and stops reconnecting after a loss', async () => {
    const { listener: l, applicationName } = listener(['listener_e']);
    await l.start();
    let lostEvents = 0;
    let reconnects = 0;
    l.on('lost', () => lostEvents++);
    l.on('reconnected', () => reconnects++);

    // Lose the session, then close before the first retry is due (at least reconnectDelay(0, () => 0) = 125 ms).
    const lost = next(l, 'lost');
    const [pid] = await backends(applicationName);
    await sql`SELECT pg_terminate_backend(${pid!}::int)`.execute(db);
    await lost;
    await l.close();
    assert.equal(l.connected, false);
    assert.equal(l.session, null);

    // Waiting for an absence needs a window: the first two retries would both be due within
    // reconnectDelay(0) + reconnectDelay(1) <= 750 ms, and their connection would show.
    const window = Date.now() + reconnectDelay(0, () => 1) + reconnectDelay(1, () => 1) + 1_000;
    while (Date.now() < window) {
      assert.deepEqual(await backends(applicationName), [], 'no connection after close()');
      await delay(50);
    }
    assert.equal(reconnects, 0);
    assert.equal(lostEvents, 1);

    // Closing a connected listener ends its session (what releases a lock held on it) and emits nothing.
    const { listener: other, applicationName: otherName } = listener(['listener_e']);
    await other.start();
    let otherLost = 0;
    other.on('lost', () => otherLost++);
    assert.equal((await backends(otherName)).length, 1);
    await other.close();
    await waitFor('the closed session to go', async () => ((await backends(otherName)).length === 0 ? true : undefined));
    assert.equal(otherLost, 0);
  });
});
