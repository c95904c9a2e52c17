/**
 * A handler's way to say "the service I call is overloaded" (HTTP 429 or 503,
 * a Retry-After, a timeout), as opposed to "this item failed". The item is
 * retried like any failed attempt (after at least `retryAfterMs` when given),
 * and a workflow with `concurrency: 'auto'` lowers its limit at once.
 *
 * Recognised by a registered symbol rather than by `instanceof`, so that a
 * workflow module that loaded its own copy of this file (src/ beside the
 * build's dist/) is still understood.
 */
const OVERLOAD = Symbol.for('workflow-chatops.overload');

export class OverloadError extends Error {
  override name = 'OverloadError';
  /** How long the service asked us to wait before trying again (Retry-After), if it said. */
  readonly retryAfterMs: number | undefined;
  readonly [OVERLOAD] = true;

  constructor(message: string, options: { retryAfterMs?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryAfterMs = options.retryAfterMs;
  }
}

export function isOverload(error: unknown): error is Error & { readonly retryAfterMs: number | undefined } {
  return typeof error === 'object' && error !== null && (error as { [OVERLOAD]?: unknown })[OVERLOAD] === true;
}

/**
 * A Retry-After header's value in ms: delay-seconds or an HTTP date
 * (RFC 9110, 10.2.3); undefined when absent or unreadable. Capped at an hour,
 * since a far-off date is a misconfigured clock more often than a real ask.
 */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return undefined;
  let ms: number;
  if (/^\d+$/.test(text)) ms = Number(text) * 1000;
  else {
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    ms = Math.max(0, at - now);
  }
  return Math.min(ms, 3_600_000);
}

/**
 * Marks an error of its own class (a client's, say OllamaError) as an
 * overload too, so that callers catching the client's errors still do.
 */
export function asOverload<E extends Error>(error: E, retryAfterMs?: number): E & { readonly retryAfterMs: number | undefined } {
  return Object.assign(error, { [OVERLOAD]: true as const, retryAfterMs });
}
