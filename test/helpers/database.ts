// Each test file gets its own database on the server of DATABASE_URL, so files
// never see each other's rows and can run against a shared server.
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';

/** Set by test/run.ts; names every database of one `npm test` so it can sweep them. */
export const TEST_RUN_ENV = 'WORKFLOW_TEST_RUN';

export interface TestDatabase {
  url: string;
  name: string;
  /** Drops the database, disconnecting whoever is still on it. Safe to call twice. */
  drop(): Promise<void>;
}

export async function createTestDatabase(prefix = 'test'): Promise<TestDatabase> {
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) {
    throw new Error(
      'DATABASE_URL is not set: run the tests with `npm test` (it starts an embedded PostgreSQL) or point DATABASE_URL at a server where test databases may be created',
    );
  }
  const name = `${cleanPrefix(prefix)}_${runTag()}_${randomBytes(4).toString('hex')}`;
  await createDatabase(serverUrl, name);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      await withClient(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`));
    },
  };
}

/** Drops what a test run left behind (a file that crashed before its drop()). */
export async function dropRunDatabases(serverUrl: string, run: string): Promise<string[]> {
  return withClient(serverUrl, async (client) => {
    const { rows } = await client.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE ('%\\_' || $1 || '\\_%')", [run]);
    for (const { datname } of rows) await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(datname)} WITH (FORCE)`);
    return rows.map((row) => row.datname);
  });
}

// CREATE DATABASE copies template1 and fails while anyone is connected to it;
// that is brief, so it is worth a few tries.
async function createDatabase(serverUrl: string, name: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await withClient(serverUrl, (client) => client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`));
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== '55006' || Date.now() > deadline) throw error;
      await delay(50);
    }
  }
}

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'workflow-tests' });
  client.on('error', () => {});
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => {});
  }
}

function runTag(): string {
  const run = process.env[TEST_RUN_ENV];
  return run && /^[a-z0-9]+$/.test(run) ? run : `p${process.pid}`;
}

function cleanPrefix(prefix: string): string {
  const clean = prefix
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/^[^a-z]+/, '')
    .slice(0, 30);
  return clean || 'test';
}
