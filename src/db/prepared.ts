import pg from 'pg';
import type { Kysely, QueryResult, RawBuilder } from 'kysely';

// Named prepared statements for the engine's hot statements (claim, page
// read, completion). An unnamed statement is parsed, analysed and planned
// again on every call: ~0.3–0.5 ms of server CPU for each of these, paid once
// per page, most of it the parsing and analysis of their CTEs. A named one
// is parsed once per connection.
//
// Kysely sends every statement unnamed (`client.query(text, values)`), so
// the pools' clients are PreparingClients: a statement whose text was
// registered by executePrepared goes as `{ name, text, values }`, and pg
// parses it on a connection only the first time. Everything else is sent as
// before. The statements stay Kysely `sql` templates, compiled per call: the
// step's pending query is embedded in two of them, and compiling costs
// little next to a statement.
//
// They are still planned on every call (CUSTOM_PLANS, set on each pool
// connection): the claim and the page read embed the step's pending query
// with its values as parameters, and a generic plan, made without the
// values, cannot use a partial index on the pending predicate (`WHERE NOT
// done` is no help for `done = $1`); it would walk the whole table where the
// index walks the pending rows. Planning is the cheap part (~0.2 ms a page
// for the completion).
//
// Registered texts are kept for the process's life, as the server keeps a
// named statement for its connection's. A text is named from its second
// call on, so one that varies from call to call (a pending query with a value
// inlined in its SQL) is never prepared, and past MAX_NAMED texts the rest go
// unnamed: neither list grows without end.
//
// Behind PgBouncer in transaction mode, protocol-level named statements need
// PgBouncer 1.21 or later with max_prepared_statements set, and the setting
// CUSTOM_PLANS makes must be the role's (docs/operations.md).

/** Run on every new pool connection. */
export const CUSTOM_PLANS = 'SET plan_cache_mode = force_custom_plan';

const MAX_NAMED = 200;
const names = new Map<string, string>();
/** Texts seen once, not yet named. */
let seen = new Set<string>();

function register(text: string): void {
  if (names.has(text) || names.size >= MAX_NAMED) return;
  if (!seen.has(text)) {
    if (seen.size >= 10 * MAX_NAMED) seen = new Set();
    seen.add(text);
    return;
  }
  seen.delete(text);
  names.set(text, `wf_hot_${names.size + 1}`);
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
