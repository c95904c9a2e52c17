import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
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

export interface PoolOptions {
  connectionString: string;
  /** Shows in pg_stat_activity; force uses it to find a run's connections. */
  applicationName: string;
  max?: number;
}

export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    application_name: options.applicationName,
    max: options.max ?? 10,
    types: typeParsers,
  });
  // A client's error (server restart, terminated backend) must not crash the
  // process, idle or checked out between two queries of a transaction; the
  // next query on that client reports it where it matters.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

export function createClient(options: Omit<PoolOptions, 'max'>): pg.Client {
  return new pg.Client({
    connectionString: options.connectionString,
    application_name: options.applicationName,
    types: typeParsers,
  });
}

export type Db<Extra = object> = Kysely<EngineTables & Extra>;

export function createKysely<Extra = object>(pool: pg.Pool): Db<Extra> {
  return new Kysely<EngineTables & Extra>({ dialect: new PostgresDialect({ pool }) });
}
