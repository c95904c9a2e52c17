import pg from 'pg';
import type { Kysely, QueryResult, RawBuilder } from 'kysely';

// Named prepared statements for the engine's hot statements (claim, page
// read, completion). An unnamed statement is parsed and planned again on
// every call: ~0.3–0.5 ms of server CPU for each of these (their plans are
// cheap to run and dear to make), paid once per page, ~4 µs of the server's
// CPU per item in bench/noop-engine.ts. A named one is parsed once per
// connection; the server then plans it per call until five calls show that
// its generic plan costs no more, and reuses that plan from then on.
//
// Kysely sends every statement unnamed (`client.query(text, values)`), so
// the pools' clients are PreparingClients: a statement whose text was
// registered by executePrepared goes as `{ name, text, values }`, and pg
// parses it on a connection only the first time. Everything else is sent as
// before. The statements stay Kysely `sql` templates, compiled per call: the
// step's pending query is embedded in two of them, and compiling costs
// little next to a statement.
//
// Registered texts are kept for the process's life, as the server keeps a
// named statement for its connection's. A text that varies from call to call
// (a pending query with a value inlined in its SQL) would make both grow
// without end, so past MAX_NAMED texts the rest go unnamed.
//
// Behind PgBouncer in transaction mode, protocol-level named statements need
// PgBouncer 1.21 or later with max_prepared_statements set
// (docs/operations.md).

const MAX_NAMED = 200;
const names = new Map<string, string>();

function register(text: string): void {
  if (names.size < MAX_NAMED && !names.has(text)) names.set(text, `wf_hot_${names.size + 1}`);
}

type Query = (this: pg.Client, config: unknown, values?: unknown, callback?: unknown) => unknown;
const query = pg.Client.prototype.query as unknown as Query;

/** A pg client that sends registered texts as named statements (see the top of this file). */
export class PreparingClient extends pg.Client {}

PreparingClient.prototype.query = function (this: pg.Client, config: unknown, values?: unknown, callback?: unknown) {
  if (typeof config === 'string') {
    const name = names.get(config);
    // Kysely passes its parameters as an array, never a callback.
    if (name !== undefined && (values === undefined || Array.isArray(values))) return query.call(this, { name, text: config, values }, callback);
  }
  return query.call(this, config, values, callback);
} as unknown as pg.Client['query'];

/** Runs a hot statement as a named prepared statement (on a pool of PreparingClients; unnamed on any other). */
export function executePrepared<DB, R>(db: Kysely<DB>, statement: RawBuilder<R>): Promise<QueryResult<R>> {
  const compiled = statement.compile(db);
  register(compiled.sql);
  return db.executeQuery(compiled);
}
