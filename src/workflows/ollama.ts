import type { Config } from '../config.ts';

// A minimal client for Ollama's /api/generate, shared by workflows that call a
// local model. Every failure becomes one readable OllamaError so the engine's
// retry and the interaction's error column say what went wrong; an abort from
// the caller's signal is rethrown as the caller's own reason, unchanged.

export class OllamaError extends Error {
  override name = 'OllamaError';
}

export interface OllamaOptions {
  /** Base URL, e.g. http://127.0.0.1:11434 (a path prefix for a proxy is kept). */
  url: string;
  model: string;
  /** Per request, on top of the caller's signal. */
  timeoutMs: number;
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
  const endpoint = `${options.url.replace(/\/+$/, '')}/api/generate`;
  const shown = withoutCredentials(endpoint);
  const { model, timeoutMs } = options;

  return {
    model,
    endpoint: shown,
    async generate(prompt, signal) {
      const timeout = AbortSignal.timeout(timeoutMs);
      let status: number;
      let statusText: string;
      let body: string;
      try {
        const response = await fetch(endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model, prompt, stream: false }),
          signal: AbortSignal.any([signal, timeout]),
        });
        ({ status, statusText } = response);
        // Read inside the try: the body arrives after the headers, and a stop
        // or timeout while it streams must end it too.
        body = await response.text();
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        if (timeout.aborted) {
          throw new OllamaError(`ollama at ${shown} gave no answer within ${timeoutMs} ms (OLLAMA_TIMEOUT_MS, model ${model})`);
        }
        throw new OllamaError(`cannot reach ollama at ${shown}: ${describeFetchError(error)}`, { cause: error });
      }

      if (status < 200 || status > 299) {
        throw new OllamaError(`ollama at ${shown} answered ${status}${statusText ? ` ${statusText}` : ''}: ${errorText(body)}`);
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        throw new OllamaError(`ollama at ${shown} answered with a body that is not JSON: ${snippet(body)}`);
      }
      const answer = (parsed as { response?: unknown } | null)?.response;
      if (typeof answer !== 'string') {
        throw new OllamaError(`ollama at ${shown} answered without a "response" string (model ${model}): ${snippet(body)}`);
      }
      return answer;
    },
  };
}

function withoutCredentials(url: string): string {
  const parsed = new URL(url);
  parsed.username = '';
  parsed.password = '';
  return parsed.href;
}

// undici reports every network failure as "fetch failed"; the reason is in its cause.
function describeFetchError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause : undefined;
  const code = cause && 'code' in cause ? ` (${String(cause.code)})` : '';
  return cause ? `${cause.message}${code}` : error.message;
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
