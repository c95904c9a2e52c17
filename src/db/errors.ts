// Which errors mean "the database is not reachable right now" (as opposed to
// a bad query): the surfaces answer those with an outage message instead of a
// failure, and the pools reconnect on their own once the server is back.

/** Node socket errors seen when the server is down, restarting or unreachable. */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * SQLSTATEs of an outage: class 08 (connection exception), 57P01–57P03
 * (admin/crash shutdown, cannot connect now: the server is starting or
 * stopping), 53300 (too many connections).
 */
function isOutageState(code: string): boolean {
  return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300';
}

const MESSAGES = [
  /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH)\b/,
  /Connection terminated/i,
  /timeout exceeded when trying to connect/i,
  /Client has encountered a connection error/i,
  /Connection terminated unexpectedly/i,
  /the database system is (starting up|shutting down|in recovery mode)/i,
  /Client was closed and is not queryable/i,
];

export function isConnectionError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (SOCKET_CODES.has(code) || (/^[0-9A-Z]{5}$/.test(code) && isOutageState(code)))) return true;
    const message = (e as { message?: unknown }).message;
    if (typeof message === 'string' && MESSAGES.some((m) => m.test(message))) return true;
    // AggregateError (several addresses refused) and wrapped causes.
    const inner = (e as { errors?: unknown[] }).errors;
    if (Array.isArray(inner) && inner.some((x) => isConnectionError(x))) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export const DATABASE_UNAVAILABLE = 'database unavailable, try again shortly';

/**
 * The database answered but could not do it in time: a lock held elsewhere
 * past lock_timeout (55P03 lock_not_available) or a statement cancelled at
 * statement_timeout (57014 query_canceled). Commands answer DATABASE_BUSY
 * instead of hanging; nothing was done (the statement's transaction rolled
 * back).
 */
export function isBusyError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === '55P03' || code === '57014') return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export const DATABASE_BUSY = 'database busy, try again';
