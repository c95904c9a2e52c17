// The Ollama stand-in for bench/io-bound.ts, in a process of its own so that
// its work is not counted against the engine's event loop. It shares the
// machine's CPUs with the process it serves, so it must cost little per
// request: whatever it spends is taken from the client being measured.
//
//   node bench/io-server.ts [--delay-ms 200] [--server raw|http|stub]
//
// Answers every POST /api/generate after --delay-ms with one fixed Ollama
// answer, GET /api/tags at once. Prints `LISTENING <url>`; on a `stats` line
// on stdin prints `STATS {"requests","connections","cpuSeconds"}` (since the
// previous `stats`); exits when stdin closes (the parent went away) or on SIGTERM.
//
// --server http (default): node:http, keeping nothing per request (no
//   history, no JSON parsing: the body is drained unread) and the answer
//   serialised once.
// --server raw: the same over node:net with a minimal HTTP/1.1 reader
//   (Content-Length bodies only, which every client here sends).
// --server stub: test/helpers/ollama-stub.ts, the tests' server (parses every
//   body, records every request), for comparison.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { startOllamaStub } from '../test/helpers/ollama-stub.ts';
import { intFlag, parseFlags } from './lib.ts';

const flags = parseFlags(process.argv.slice(2));
const delayMs = intFlag(flags, 'delay-ms', 200);
const kind = String(flags.get('server') ?? 'raw');
if (kind !== 'http' && kind !== 'raw' && kind !== 'stub') throw new Error('--server must be raw, http or stub');

const ANSWER = JSON.stringify({ model: 'llama3.2', response: 'A role building data pipelines with TypeScript and PostgreSQL.', done: true });
const TAGS = JSON.stringify({ models: [{ name: 'llama3.2' }] });
let requests = 0;
let connections = 0;

let url: string;
let close: () => Promise<void>;
if (kind === 'stub') {
  const stub = await startOllamaStub({ delayMs });
  // The stub keeps every request for tests' assertions; here that is only memory.
  setInterval(() => stub.requests.splice(0), 1_000).unref();
  ({ url, close } = stub);
} else {
  const server = kind === 'http' ? httpServer() : rawServer();
  const open = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    connections++;
    open.add(socket);
    socket.on('close', () => open.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // close() waits for every connection to end, and keep-alive clients never end theirs.
  close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of open) socket.destroy();
    });
}

let cpu = process.cpuUsage();
process.stdout.write(`LISTENING ${url}\n`);
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'stats') return;
  const used = process.cpuUsage(cpu);
  cpu = process.cpuUsage();
  process.stdout.write(`STATS ${JSON.stringify({ requests, connections, cpuSeconds: (used.user + used.system) / 1e6 })}\n`);
  requests = 0;
  connections = 0;
});
const exit = () => void close().finally(() => process.exit(0));
process.stdin.on('end', exit);
process.on('SIGTERM', exit);

function httpServer(): http.Server {
  const answer = Buffer.from(ANSWER);
  const answerHeaders = { 'content-type': 'application/json', 'content-length': answer.length };
  return http.createServer((req, res) => {
    req.resume();
    if (req.method === 'POST' && req.url === '/api/generate') {
      requests++;
      // A client that went away makes end() a no-op on a destroyed socket: nothing to track.
      setTimeout(() => res.writeHead(200, answerHeaders).end(answer), delayMs);
    } else if (req.method === 'GET' && req.url === '/api/tags') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(TAGS);
    } else {
      res.writeHead(404).end();
    }
  });
}

function rawServer(): net.Server {
  const response = (status: string, body: string) =>
    Buffer.from(`HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: keep-alive\r\n\r\n${body}`);
  const generated = response('200 OK', ANSWER);
  const tags = response('200 OK', TAGS);
  const notFound = response('404 Not Found', '');
  return net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {}); // a client that went away
    let pending: Buffer | undefined;
    socket.on('data', (chunk: Buffer) => {
      let data = pending ? Buffer.concat([pending, chunk]) : chunk;
      for (;;) {
        const headEnd = data.indexOf('\r\n\r\n');
        if (headEnd < 0) break;
        const head = data.toString('latin1', 0, headEnd);
        if (/\r\ntransfer-encoding:/i.test(head)) {
          socket.end('HTTP/1.1 411 Length Required\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
          return;
        }
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (data.length < headEnd + 4 + length) break;
        data = data.subarray(headEnd + 4 + length);
        if (head.startsWith('POST /api/generate ')) {
          requests++;
          setTimeout(() => socket.destroyed || socket.write(generated), delayMs);
        } else socket.write(head.startsWith('GET /api/tags ') ? tags : notFound);
      }
      pending = data.length > 0 ? data : undefined;
    });
  });
}
