// A local HTTP server the adoption fixture's handlers call
// (test/fixtures/adoption/workflow.ts): it records which process called for
// which subject, and answers after a delay the test can change, or never
// while held.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Call {
  pid: number;
  step: string;
  subject: number;
  /** Order of arrival. */
  seq: number;
}

export interface CallsStub {
  url: string;
  calls: Call[];
  setDelay(ms: number): void;
  close(): Promise<void>;
}

export async function startCallsStub(options: { delayMs?: number } = {}): Promise<CallsStub> {
  let delayMs = options.delayMs ?? 0;
  const calls: Call[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const call = JSON.parse(body) as Omit<Call, 'seq'>;
      calls.push({ ...call, seq: calls.length });
      const timer = setTimeout(() => res.end('ok'), delayMs);
      res.on('close', () => clearTimeout(timer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/call`,
    calls,
    setDelay(ms: number) {
      delayMs = ms;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
