// The Ollama client (src/workflows/ollama.ts) at the HTTP level, against a real
// local server: what test/postings.test.ts checks through the workflow's
// handlers (messages for each failure, the caller's abort, the timeout) is not
// repeated here; this file covers the connection handling, credentials, an
// abort or a stall while the body streams, the health probe, and which
// failures are overloads (429, 503, a timeout) with their Retry-After.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { describe, test } from 'node:test';
import { isOverload } from '../src/lib/overload.ts';
import { createOllamaClient, describeNetworkError, OllamaError } from '../src/workflows/ollama.ts';
import { ollamaService } from '../src/workflows/postings/index.ts';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
}

/** A local server counting connections and recording requests; `reply` answers each (or not). */
async function server(reply: (seen: Seen, res: http.ServerResponse) => void) {
  const seen: Seen[] = [];
  const sockets: Socket[] = [];
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const entry = { method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization };
      seen.push(entry);
      srv.emit('seen', entry, res);
      reply(entry, res);
    });
  });
  srv.on('connection', (socket: Socket) => sockets.push(socket));
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    sockets,
    srv,
    close: async () => {
      srv.closeAllConnections();
      srv.close();
      await once(srv, 'close');
    },
  };
}

const answer = (res: http.ServerResponse, body = '{"response":"ok","done":true}') => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(body);
};

const noSignal = () => new AbortController().signal;

describe('ollama client: connections', () => {
  test('sequential calls reuse one keep-alive connection', async () => {
    const s = await server((_, res) => answer(res));
    try {
      // Capped at one: uncapped, undici opens a second connection for the call
      // that follows a finished one (see `connections` in ollama.ts).
      const client = createOllamaClient({ url: s.url, model: 'm', timeoutMs: 5_000, connections: 1 });
      for (let i = 0; i < 5; i++) assert.equal(await client.generate(`p${i}`, noSignal()), 'ok');
      assert.equal(s.seen.length, 5);
      assert.equal(s.sockets.length, 1, 'one connection for five calls');
    } finally {
      await s.close();
    }
  });

  test('uncapped by default: every call in flight has its own connection at once', { timeout: 20_000 }, async () => {
    // Nothing is answered until all six requests are at the server, so a cap
    // below six would leave calls waiting for a connection forever.
    const held: http.ServerResponse[] = [];
    const s = await server((_, res) => {
      held.push(res);
      if (held.length === 6) for (const r of held) answer(r);
    });
    try {
      const client = createOllamaClient({ url: s.url, model: 'm', timeoutMs: 5_000 });
      const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => client.generate(`p${i}`, noSignal())));
      assert.deepEqual(answers, Array(6).fill('ok'));
      assert.equal(s.sockets.length, 6);
    } finally {
      await s.close();
    }
  });

  test('`connections` caps the sockets; the calls beyond it wait for a free one', async () => {
    const s = await server((_, res) => answer(res));
    try {
      const client = createOllamaClient({ url: s.url, model: 'm', timeoutMs: 5_000, connections: 2 });
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => client.generate(`p${i}`, noSignal())));
      assert.deepEqual(answers, Array(8).fill('ok'));
      assert.equal(s.seen.length, 8);
      assert.equal(s.sockets.length, 2);
    } finally {
      await s.close();
    }
  });
});

describe('ollama client: credentials in the URL', () => {
  test('are sent as basic auth and shown nowhere: endpoint, error messages, causes', async () => {
    const s = await server((seen, res) => {
      if (seen.url === '/proxy/api/tags') answer(res, '{"models":[]}');
      else {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end('{"error":"server busy"}');
      }
    });
    const withCredentials = `http://ana:s%3Acret@127.0.0.1:${s.port}/proxy/`;
    try {
      const client = createOllamaClient({ url: withCredentials, model: 'm', timeoutMs: 5_000 });
      assert.equal(client.endpoint, `${s.url}/proxy/api/generate`);
      await assert.rejects(client.generate('p', noSignal()), (error: unknown) => {
        assert.ok(error instanceof OllamaError);
        assert.equal(error.message, `ollama at ${s.url}/proxy/api/generate answered 503 Service Unavailable: server busy`);
        return true;
      });
      await ollamaService(withCredentials).probe(noSignal());
      const basic = `Basic ${Buffer.from('ana:s:cret').toString('base64')}`;
      assert.deepEqual(
        s.seen.map((r) => [r.method, r.url, r.authorization]),
        [
          ['POST', '/proxy/api/generate', basic],
          ['GET', '/proxy/api/tags', basic],
        ],
      );
    } finally {
      await s.close();
    }

    // Nothing listens on the port any more.
    const client = createOllamaClient({ url: withCredentials, model: 'm', timeoutMs: 5_000 });
    await assert.rejects(client.generate('p', noSignal()), (error: unknown) => {
      assert.ok(error instanceof OllamaError);
      assert.match(error.message, new RegExp(`^cannot reach ollama at ${s.url}/proxy/api/generate: connect ECONNREFUSED .*\\(ECONNREFUSED\\)$`));
      assert.doesNotMatch(`${error.message} ${String(error.cause)} ${JSON.stringify(error.cause)}`, /cret|ana/);
      return true;
    });
    await assert.rejects(ollamaService(withCredentials).probe(noSignal()), (error: unknown) => {
      assert.match(String(error), new RegExp(`cannot reach ollama at ${s.url}/proxy/api/tags: connect ECONNREFUSED`));
      assert.doesNotMatch(String(error), /cret|ana/);
      return true;
    });
  });
});

describe('ollama client: while the answer streams', () => {
  // Headers and the first bytes of the body, then nothing: the body is read
  // inside the same guard as the request.
  const stall = (_: Seen, res: http.ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"response":"par');
  };

  test("the caller's abort ends the read with the caller's own reason and drops the connection", async () => {
    const s = await server(stall);
    try {
      const client = createOllamaClient({ url: s.url, model: 'm', timeoutMs: 60_000 });
      const controller = new AbortController();
      const arrived = once(s.srv, 'seen') as Promise<[Seen, http.ServerResponse]>;
      const call = client.generate('p', controller.signal);
      const [, res] = await arrived;
      await new Promise<void>((resolve) => res.write('t', () => resolve())); // the body has begun
      const closed = once(res, 'close');
      const reason = new Error('stopped by test');
      controller.abort(reason);
      await assert.rejects(call, (error) => error === reason);
      await closed;
    } finally {
      await s.close();
    }
  });

  test('an answer that stalls mid-body is a timeout naming OLLAMA_TIMEOUT_MS, and the connection is dropped', async () => {
    const s = await server(stall);
    try {
      const client = createOllamaClient({ url: s.url, model: 'slow', timeoutMs: 50 });
      const closed = once(s.srv, 'connection').then(([socket]) => once(socket as Socket, 'close'));
      await assert.rejects(client.generate('p', noSignal()), (error: unknown) => {
        assert.ok(error instanceof OllamaError, String(error));
        assert.equal(error.message, `ollama at ${s.url}/api/generate gave no answer within 50 ms (OLLAMA_TIMEOUT_MS, model slow)`);
        return true;
      });
      await closed;
    } finally {
      await s.close();
    }
  });

  test("a signal aborted before the call: the caller's reason", async () => {
    const s = await server((_, res) => answer(res));
    try {
      const client = createOllamaClient({ url: s.url, model: 'm', timeoutMs: 5_000 });
      const reason = new Error('already stopped');
      await assert.rejects(client.generate('p', AbortSignal.abort(reason)), (error) => error === reason);
    } finally {
      await s.close();
    }
  });
});

describe('ollama probe (health monitor)', () => {
  test('up on a 2xx of GET /api/tags; a non-2xx says what it answered', async () => {
    let status = 200;
    const s = await server((_, res) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end('{"models":[]}');
    });
    try {
      const service = ollamaService(`${s.url}/`);
      assert.equal(service.name, 'ollama');
      await service.probe(noSignal());
      status = 502;
      await assert.rejects(service.probe(noSignal()), new Error(`ollama at ${s.url}/api/tags answered 502 Bad Gateway`));
      assert.deepEqual(
        s.seen.map((r) => [r.method, r.url]),
        [
          ['GET', '/api/tags'],
          ['GET', '/api/tags'],
        ],
      );
    } finally {
      await s.close();
    }
  });

  test("a probe that gets no answer ends with the monitor's signal, with its reason", async () => {
    const s = await server(() => {});
    try {
      const controller = new AbortController();
      const arrived = once(s.srv, 'seen');
      const probe = ollamaService(s.url).probe(controller.signal);
      await arrived;
      const reason = new Error('probe timed out');
      controller.abort(reason);
      await assert.rejects(probe, (error) => error === reason);
    } finally {
      await s.close();
    }
  });
});

test('a name with several addresses, all refused: the message lists each (Node throws an AggregateError with an empty message)', () => {
  const error = Object.assign(new AggregateError([new Error('connect ECONNREFUSED ::1:11434'), new Error('connect ECONNREFUSED 127.0.0.1:11434')], ''), {
    code: 'ECONNREFUSED',
  });
  assert.equal(describeNetworkError(error), 'connect ECONNREFUSED ::1:11434; connect ECONNREFUSED 127.0.0.1:11434 (ECONNREFUSED)');
  assert.equal(
    describeNetworkError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })),
    'connect ECONNREFUSED 127.0.0.1:1 (ECONNREFUSED)',
  );
});

describe('ollama client: overload', () => {
  // Ollama answers 503 when its queue is full (OLLAMA_MAX_QUEUE); proxies and
  // hosted servers say 429, often with a Retry-After. A timeout says the same.
  const cases: { status: number; headers: Record<string, string>; retryAfterMs: number | undefined }[] = [
    { status: 503, headers: {}, retryAfterMs: undefined },
    { status: 503, headers: { 'retry-after': '2' }, retryAfterMs: 2_000 },
    { status: 429, headers: { 'retry-after': '7' }, retryAfterMs: 7_000 },
  ];
  for (const { status, headers, retryAfterMs } of cases) {
    test(`${status}${headers['retry-after'] ? ` with Retry-After ${headers['retry-after']}` : ''}: an OllamaError marked as an overload, with the wait asked for`, async () => {
      const s = await server((_, res) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end('{"error":"server busy"}');
      });
      try {
        const client = createOllamaClient({ url: s.url, model: 'm', timeoutMs: 5_000 });
        await assert.rejects(client.generate('p', noSignal()), (error: unknown) => {
          assert.ok(error instanceof OllamaError, String(error));
          assert.ok(isOverload(error), 'marked as an overload');
          assert.equal(error.retryAfterMs, retryAfterMs);
          assert.match(error.message, new RegExp(`^ollama at ${s.url}/api/generate answered ${status} .*: server busy$`));
          return true;
        });
      } finally {
        await s.close();
      }
    });
  }

  test('a Retry-After date is the time until it', async () => {
    const s = await server((_, res) => {
      res.writeHead(429, { 'retry-after': new Date(Date.now() + 60_000).toUTCString() });
      res.end();
    });
    try {
      const client = createOllamaClient({ url: s.url, model: 'm', timeoutMs: 5_000 });
      await assert.rejects(client.generate('p', noSignal()), (error: unknown) => {
        assert.ok(isOverload(error));
        assert.ok(error.retryAfterMs !== undefined && error.retryAfterMs > 50_000 && error.retryAfterMs <= 60_000, String(error.retryAfterMs));
        return true;
      });
    } finally {
      await s.close();
    }
  });

  test('a timeout is an overload too; a 500 or a refused connection is not', async () => {
    const silent = await server(() => {});
    const failing = await server((_, res) => {
      res.writeHead(500);
      res.end('{"error":"model crashed"}');
    });
    try {
      await assert.rejects(createOllamaClient({ url: silent.url, model: 'm', timeoutMs: 50 }).generate('p', noSignal()), (error: unknown) => {
        assert.ok(error instanceof OllamaError && isOverload(error), String(error));
        assert.match(error.message, /gave no answer within 50 ms/);
        return true;
      });
      await assert.rejects(createOllamaClient({ url: failing.url, model: 'm', timeoutMs: 5_000 }).generate('p', noSignal()), (error: unknown) => {
        assert.ok(error instanceof OllamaError && !isOverload(error), String(error));
        return true;
      });
    } finally {
      await silent.close();
      await failing.close();
    }
    await assert.rejects(createOllamaClient({ url: failing.url, model: 'm', timeoutMs: 5_000 }).generate('p', noSignal()), (error: unknown) => {
      assert.ok(error instanceof OllamaError && !isOverload(error), String(error));
      assert.match(error.message, /cannot reach ollama/);
      return true;
    });
  });
});
