// A stand-in model server of limited capacity, speaking Ollama's
// POST /api/generate: `capacity` calls are served at once for `serviceMs`
// each, the rest wait in order, and a call that finds `2 × capacity` already
// waiting is answered 503 at once (as Ollama does past OLLAMA_MAX_QUEUE).
// Used by test/adaptive-concurrency.test.ts and bench/adaptive.ts; the
// capacity can change while it runs.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface CapacityServer {
  url: string;
  /** Calls served (answered 200), in order of their answer. */
  served: { prompt: string; queuedMs: number; arrivedAt: number }[];
  /** When each 503 was sent (performance.now() of this process). */
  rejected: number[];
  /** The most calls in service at once so far. */
  maxInService: number;
  setCapacity(capacity: number): void;
  close(): Promise<void>;
}

export async function startCapacityServer(options: { capacity: number; serviceMs: number; queueFactor?: number }): Promise<CapacityServer> {
  let capacity = options.capacity;
  const queueFactor = options.queueFactor ?? 2;
  let inService = 0;
  const queue: { start: () => void; gone: () => boolean }[] = [];
  const state: Omit<CapacityServer, 'url' | 'setCapacity' | 'close'> = { served: [], rejected: [], maxInService: 0 };

  const next = () => {
    while (inService < capacity && queue.length > 0) {
      const call = queue.shift()!;
      if (!call.gone()) call.start();
    }
  };

  const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/api/generate') {
      res.statusCode = 404;
      res.end();
      return;
    }
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const arrivedAt = performance.now();
      const prompt = (JSON.parse(body) as { prompt: string }).prompt;
      const start = () => {
        inService++;
        if (inService > state.maxInService) state.maxInService = inService;
        const queuedMs = performance.now() - arrivedAt;
        setTimeout(() => {
          inService--;
          if (!res.destroyed) {
            state.served.push({ prompt, queuedMs, arrivedAt });
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ response: `done: ${prompt}`, done: true }));
          }
          next();
        }, options.serviceMs);
      };
      if (inService < capacity && queue.length === 0) return start();
      if (queue.length >= queueFactor * capacity) {
        state.rejected.push(performance.now());
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end('{"error":"server busy, please try again. maximum pending requests exceeded"}');
        return;
      }
      queue.push({ start, gone: () => res.destroyed });
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    setCapacity(c: number) {
      capacity = c;
      next();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}
