// A local HTTP server the adoption fixture's handlers call
// (test/fixtures/adoption/workflow.ts): it records which process called for
// which subject of which run, and when, and answers after a delay the test
// can change, or, while held (hold()), not until the test releases the calls
// (release()). It also counts the calls it has not answered yet, and the most
// at once.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Call {
  pid: number;
  step: string;
  subject: number;
  /** The run the call is for (as the handler's log names it). */
  run?: number;
  /** Order of arrival. */
  seq: number;
  /** When it arrived, in ms since the epoch to the microsecond: comparable with the timestamps of a database on this machine. */
  at: number;
}

export interface CallsStub {
  url: string;
  calls: Call[];
  setDelay(ms: number): void;
  /** Calls from now on are not answered until release(). */
  hold(): void;
  /** Answers every held call and stops holding. */
  release(): void;
  /** Answers the calls held for one process; others stay held, and new calls are still held. */
  answerHeld(pid: number): void;
  /** The calls held (not answered yet), by process. */
  heldBy(pid: number): number;
  /** Calls received and not answered yet (held or waiting for their delay), from every process. */
  inFlight(): number;
  /** The most calls in flight at once so far. */
  maxInFlight(): number;
  close(): Promise<void>;
}

export async function startCallsStub(options: { delayMs?: number } = {}): Promise<CallsStub> {
  let delayMs = options.delayMs ?? 0;
  const calls: Call[] = [];
  let holding = false;
  const held = new Map<http.ServerResponse, number>();
  let inFlight = 0;
  let maxInFlight = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const call = JSON.parse(body) as Omit<Call, 'seq' | 'at'>;
      calls.push({ ...call, seq: calls.length, at: performance.timeOrigin + performance.now() });
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      // 'close' comes once a response is answered or its caller gone.
      res.on('close', () => inFlight--);
      if (holding) {
        held.set(res, call.pid);
        res.on('close', () => held.delete(res));
        return;
      }
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
    hold() {
      holding = true;
    },
    release() {
      holding = false;
      for (const res of [...held.keys()]) res.end('ok');
      held.clear();
    },
    answerHeld(pid: number) {
      for (const [res, from] of [...held]) if (from === pid) res.end('ok');
    },
    heldBy(pid: number) {
      return [...held.values()].filter((p) => p === pid).length;
    },
    inFlight: () => inFlight,
    maxInFlight: () => maxInFlight,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
