import type { Agent } from 'undici';
import type { Config } from '../config.ts';
import { asOverload, parseRetryAfter } from '../lib/overload.ts';

// A minimal client for Ollama's /api/generate, shared by workflows that call a
// local model. Every failure becomes one readable OllamaError so the engine's
// retry and the interaction's error column say what went wrong; an abort from
// the caller's signal is rethrown as the caller's own reason, unchanged.
//
// It speaks through undici's request() on an Agent of its own rather than
// through global fetch: at hundreds of calls in flight the HTTP client's CPU
// per call is what bounds a 2-CPU machine, and fetch (web streams, a Request
// and a Response per call, plus AbortSignal.any and AbortSignal.timeout to
// combine the caller's signal with the timeout) costs several times what
// request() does (bench/RESULTS.md). The timeout is the Agent's
// own headersTimeout and bodyTimeout, so a call needs no signal of its own.
//
// A 429 or 503 (Ollama's answer when its queue is full, OLLAMA_MAX_QUEUE) and a
// timeout are OllamaErrors marked as overloads (src/lib/overload.ts): the
// engine retries them no sooner than a Retry-After, and `concurrency: 'auto'`
// lowers its limit.
// undici loads with the first call, not with the workflow: a process that
// calls no model (the CLI's list, status, help) does not pay for it.

export class OllamaError extends Error {
  override name = 'OllamaError';
}

export interface OllamaOptions {
  /** Base URL, e.g. http://127.0.0.1:11434 (a path prefix for a proxy is kept; user:password@ is sent as basic auth). */
  url: string;
  model: string;
  /**
   * How long the model may take to start its answer, and then the longest
   * silence within it. Ollama sends a non-streamed answer in one piece once
   * generated, so for Ollama this bounds the whole call; a proxy that trickles
   * bytes is bounded by the item's own timeout instead.
   */
  timeoutMs: number;
  /**
   * The most connections open to Ollama at once; calls beyond it wait in the
   * client for a free one, where the timeout does not run yet. Default: no
   * cap, each call gets a connection at once (as with global fetch). A caller
   * that knows how many calls it has in flight should pass that number:
   * uncapped, undici's pool opens about twice as many, because a finished
   * call's successor is sent before its connection is free again.
   */
  connections?: number;
}

export interface OllamaClient {
  readonly model: string;
  /** The endpoint without credentials, fit for logs and messages. */
  readonly endpoint: string;
  /** The model's whole answer to `prompt`. */
  generate(prompt: string, signal: AbortSignal): Promise<string>;
}

export function ollamaFromConfig(config: Config): OllamaClient | undefined {
  if (!config.OLLAMA_URL) return undefined;
  return createOllamaClient({ url: config.OLLAMA_URL, model: config.OLLAMA_MODEL, timeoutMs: config.OLLAMA_TIMEOUT_MS });
}

export function createOllamaClient(options: OllamaOptions): OllamaClient {
  const target = resolve(options.url, '/api/generate');
  const { model, timeoutMs } = options;
  const agent = ollamaAgent(timeoutMs, options.connections);
  const headers = { 'content-type': 'application/json', ...target.authorization };

  return {
    model,
    endpoint: target.shown,
    async generate(prompt, signal) {
      let status: number;
      let statusText: string;
      let body: string;
      let retryAfter: string | string[] | undefined;
      try {
        const response = await (agent.loaded ?? (await agent.load())).request({
          origin: target.origin,
          path: target.path,
          method: 'POST',
          headers,
          body: JSON.stringify({ model, prompt, stream: false }),
          signal,
        });
        status = response.statusCode;
        statusText = response.statusText ?? '';
        retryAfter = response.headers['retry-after'];
        // Read inside the try: the body arrives after the headers, and a stop
        // or timeout while it streams must end it too.
        body = await response.body.text();
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        if (isTimeout(error)) {
          throw asOverload(new OllamaError(`ollama at ${target.shown} gave no answer within ${timeoutMs} ms (OLLAMA_TIMEOUT_MS, model ${model})`));
        }
        throw new OllamaError(`cannot reach ollama at ${target.shown}: ${describeNetworkError(error)}`, { cause: error });
      }

      if (status < 200 || status > 299) {
        const error = new OllamaError(`ollama at ${target.shown} answered ${status}${statusText ? ` ${statusText}` : ''}: ${errorText(body)}`);
        throw status === 429 || status === 503 ? asOverload(error, parseRetryAfter(retryAfter)) : error;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        throw new OllamaError(`ollama at ${target.shown} answered with a body that is not JSON: ${snippet(body)}`);
      }
      const answer = (parsed as { response?: unknown } | null)?.response;
      if (typeof answer !== 'string') {
        throw new OllamaError(`ollama at ${target.shown} answered without a "response" string (model ${model}): ${snippet(body)}`);
      }
      return answer;
    },
  };
}

/**
 * Ollama is up when GET /api/tags (its model list, cheap: no model is loaded)
 * answers 2xx. The health monitor's check, over the same kind of client as the
 * model calls, so that a URL the workflow can use is also one it can probe.
 */
export function createOllamaProbe(baseUrl: string): { endpoint: string; probe(signal: AbortSignal): Promise<void> } {
  const target = resolve(baseUrl, '/api/tags');
  // The monitor bounds each probe with its signal; the Agent's own timeouts only back it up.
  const agent = ollamaAgent(60_000);
  const headers = { ...target.authorization };
  return {
    endpoint: target.shown,
    async probe(signal) {
      let status: number;
      let statusText: string;
      try {
        const response = await (agent.loaded ?? (await agent.load())).request({ origin: target.origin, path: target.path, method: 'GET', headers, signal });
        status = response.statusCode;
        statusText = response.statusText ?? '';
        await response.body.dump();
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        throw new Error(`cannot reach ollama at ${target.shown}: ${describeNetworkError(error)}`, { cause: error });
      }
      if (status < 200 || status > 299) throw new Error(`ollama at ${target.shown} answered ${status}${statusText ? ` ${statusText}` : ''}`);
    },
  };
}

interface LazyAgent {
  /** The Agent once made; calls use it directly from then on. */
  loaded: Agent | undefined;
  load(): Promise<Agent>;
}

// Keep-alive with undici's defaults (4 s idle, or the server's Keep-Alive
// hint). Idle sockets are unref'd by undici, so the Agent keeps no process alive.
function ollamaAgent(timeoutMs: number, connections?: number): LazyAgent {
  let loading: Promise<Agent> | undefined;
  const lazy: LazyAgent = {
    loaded: undefined,
    load: () =>
      (loading ??= import('undici').then(({ Agent }) => {
        lazy.loaded = new Agent({
          connections: connections ?? null,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
          // A host that does not accept a connection within 10 s is not there; never longer than the timeout.
          connect: { timeout: Math.min(timeoutMs, 10_000) },
        });
        return lazy.loaded;
      })),
  };
  return lazy;
}

interface Target {
  origin: string;
  path: string;
  /** The URL without credentials, fit for logs and messages. */
  shown: string;
  /** Basic auth from the URL's user:password, if any (a proxy in front of Ollama). */
  authorization: { authorization?: string };
}

function resolve(baseUrl: string, endpoint: string): Target {
  const url = new URL(`${baseUrl.replace(/\/+$/, '')}${endpoint}`);
  const authorization =
    url.username || url.password
      ? { authorization: `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}` }
      : {};
  url.username = '';
  url.password = '';
  return { origin: url.origin, path: `${url.pathname}${url.search}`, shown: url.href, authorization };
}

function isTimeout(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
}

// "connect ECONNREFUSED 127.0.0.1:11434 (ECONNREFUSED)". When a name resolves
// to several addresses Node tries them all and throws an AggregateError with
// an empty message: its parts say what happened.
export function describeNetworkError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = 'code' in error && error.code !== undefined ? ` (${String(error.code)})` : '';
  const parts = error instanceof AggregateError ? error.errors.filter((e): e is Error => e instanceof Error).map((e) => e.message) : [];
  const message = error.message || parts.join('; ') || error.name;
  return `${message}${code}`;
}

// Ollama explains its refusals as {"error": "..."}; anything else is shown raw.
function errorText(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: unknown } | null;
    if (typeof parsed?.error === 'string') return parsed.error;
  } catch {
    // not JSON: fall through
  }
  return snippet(body) || '(empty body)';
}

function snippet(text: string, max = 200): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max)}…` : line;
}
