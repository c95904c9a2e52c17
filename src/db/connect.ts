import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import { CUSTOM_PLANS, PreparingClient } from './prepared.ts';
import type { EngineTables } from './schema.ts';

// int8 (ids, counts) as JS numbers: every id this engine makes stays far below
// 2^53, and numbers keep the rest of the code free of string arithmetic.
const INT8_OID = 20;
const NUMERIC_OID = 1700;
const typeParsers: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8_OID) return (value: string) => Number(value);
    if (oid === NUMERIC_OID) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format as 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * How long a connection may take to open, and (for a pool) how long a caller
 * waits for a free connection: an unreachable server or an exhausted pool
 * answers within it instead of hanging. Process-wide, set once from
 * DATABASE_CONNECT_TIMEOUT_MS (configureConnections).
 */
let connectTimeoutMs = 5_000;

export function configureConnections(options: { connectTimeoutMs: number }): void {
  connectTimeoutMs = options.connectTimeoutMs;
}

export interface PoolOptions {
  connectionString: string;
  /** Shows in pg_stat_activity; force uses it to find a run's connections. */
  applicationName: string;
  max?: number;
  /**
   * Server-side limits for every statement on this pool's connections
   * (statement_timeout, lock_timeout, sent as startup parameters). The server
   * cancels a statement that overruns, so a caller that gives up never leaves
   * it running and holding a connection: pg's client-side query_timeout
   * would only reject the promise while the statement ran on, keeping its
   * connection busy (the way slow /metrics scrapes once emptied the pool).
   * Unset: no limit, for the run pools and migrations, whose statements are
   * the work itself.
   */
  statementTimeoutMs?: number;
  lockTimeoutMs?: number;
}

export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    application_name: options.applicationName,
    max: options.max ?? 10,
    // The hot statements go as named prepared statements (src/db/prepared.ts).
    Client: PreparingClient,
    types: typeParsers,
    connectionTimeoutMillis: connectTimeoutMs,
    ...(options.statementTimeoutMs !== undefined && { statement_timeout: options.statementTimeoutMs }),
    ...(options.lockTimeoutMs !== undefined && { lock_timeout: options.lockTimeoutMs }),
  });
  // A client's error (server restart, terminated backend) must not crash the
  // process, idle or checked out between two queries of a transaction; the
  // next query on that client reports it where it matters.
  pool.on('error', () => {});
  pool.on('connect', (client) => {
    client.on('error', () => {});
    // Queued before anything else on the new connection (src/db/prepared.ts: why custom plans).
    client.query(CUSTOM_PLANS).catch(() => {});
  });
  return pool;
}

export function createClient(options: Pick<PoolOptions, 'connectionString' | 'applicationName'>): pg.Client {
  return new pg.Client({
    connectionString: options.connectionString,
    application_name: options.applicationName,
    types: typeParsers,
    connectionTimeoutMillis: connectTimeoutMs,
  });
}

export type Db<Extra = object> = Kysely<EngineTables & Extra>;

export function createKysely<Extra = object>(pool: pg.Pool): Db<Extra> {
  return new Kysely<EngineTables & Extra>({ dialect: new PostgresDialect({ pool }) });
}
