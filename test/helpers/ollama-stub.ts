// A local HTTP server speaking Ollama's API (/api/generate, /api/tags), so the
// example workflow's model path is tested at its protocol.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface OllamaStub {
  url: string;
  /** Requests received on /api/generate. */
  requests: { model: string; prompt: string }[];
  /** Requests whose client went away before the answer (aborted). */
  aborted: number;
  /** Requests on /api/tags: the health monitor's probes. */
  probes: number;
  /** Answers held back until released (for stop/abort tests); see `hold`. */
  setDelay(ms: number): void;
  close(): Promise<void>;
}

/** Answers summary prompts with a sentence and skills prompts with a JSON array. */
export async function startOllamaStub(options: { delayMs?: number } = {}): Promise<OllamaStub> {
  let delayMs = options.delayMs ?? 0;
  const stub: Omit<OllamaStub, 'url' | 'close' | 'setDelay'> = { requests: [], aborted: 0, probes: 0 };
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/api/tags') {
      stub.probes++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ models: [{ name: 'llama3.2' }] }));
      return;
    }
    if (req.method !== 'POST' || req.url !== '/api/generate') {
      res.statusCode = 404;
      res.end();
      return;
    }
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const request = JSON.parse(body) as { model: string; prompt: string };
      stub.requests.push(request);
      const answer = request.prompt.startsWith('List the technical skills')
        ? '["typescript", "postgresql"]'
        : 'A role building data pipelines with TypeScript and PostgreSQL.';
      const timer = setTimeout(() => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ model: request.model, response: answer, done: true }));
      }, delayMs);
      res.on('close', () => {
        if (!res.writableEnded) {
          clearTimeout(timer);
          stub.aborted++;
        }
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(stub, {
    url: `http://127.0.0.1:${port}`,
    setDelay(ms: number) {
      delayMs = ms;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  }) as OllamaStub;
}
