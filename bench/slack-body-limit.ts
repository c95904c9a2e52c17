// What unsigned oversized posts to POST /slack/events cost the serving
// process (docs/security.md, "Slack requests"): the real CLI's `serve` in
// HTTP mode, as its own OS process, takes --posts concurrent unsigned POSTs
// of --mb MB each (half declaring their Content-Length, half streamed in
// chunks with none), sent from this process as fast as the server reads
// them, from one reused buffer (the client holds no body). Figures: the
// server's peak resident memory during the posts (VmRSS sampled every 20 ms
// from /proc, and its kernel high-water mark VmHWM), the answers, and how
// many bytes each post got onto the wire before the server cut it.
//
//   node bench/slack-body-limit.ts [--posts 10] [--mb 256]
//
// Target: the server stays under 300 MB resident.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { startCli } from '../test/helpers/cli.ts';
import { FORM, postSigned, slashCommandBody } from '../test/helpers/slack-sign.ts';
import { startSlackStub } from '../test/helpers/slack-stub.ts';
import { assert, freshDatabase, intFlag, openServer, parseFlags, peakRssMb, printResult, watchdog } from './lib.ts';

const SECRET = 'bench-body-limit-secret';
const TARGET_MB = 300;

const flags = parseFlags(process.argv.slice(2));
const posts = intFlag(flags, 'posts', 10);
const mb = intFlag(flags, 'mb', 256);

/** VmRSS and VmHWM of a process, in MB. */
function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) / 1024;
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

interface PostOutcome {
  status: number | null;
  error: string | null;
  bytesSent: number;
  ms: number;
}

/** One unsigned POST of `bytes`, written as fast as the connection takes it, until the server answers or cuts it. */
function oversizedPost(port: number, bytes: number, declare: boolean): Promise<PostOutcome> {
  const piece = Buffer.alloc(64 * 1024, 'x');
  const started = performance.now();
  return new Promise((resolve) => {
    let status: number | null = null;
    let done = false;
    const finish = (error: string | null) => {
      if (done) return;
      done = true;
      resolve({ status, error, bytesSent: request.socket?.bytesWritten ?? 0, ms: performance.now() - started });
      request.destroy();
    };
    const request = http.request({
      host: '127.0.0.1',
      port,
      path: '/slack/events',
      method: 'POST',
      headers: { 'content-type': FORM, ...(declare ? { 'content-length': String(bytes) } : {}) },
    });
    request.on('response', (response) => {
      status = response.statusCode ?? null;
      response.resume();
      response.on('end', () => finish(null));
    });
    request.on('error', (error: NodeJS.ErrnoException) => finish(error.code ?? error.message));
    request.on('close', () => finish(null));
    let sent = 0;
    const pump = () => {
      while (!done && sent < bytes) {
        const chunk = bytes - sent >= piece.length ? piece : piece.subarray(0, bytes - sent);
        sent += chunk.length;
        if (!request.write(chunk)) return void request.once('drain', pump);
      }
      if (!done) request.end();
    };
    pump();
  });
}

watchdog();
const server = await openServer();
const database = await freshDatabase(server.url, `wfbench_bodylimit_${process.pid}`);
const stub = await startSlackStub();
const serving = startCli(['serve'], {
  DATABASE_URL: database.url,
  SLACK_SIGNING_SECRET: SECRET,
  SLACK_BOT_TOKEN: 'xoxb-bench',
  SLACK_API_URL: stub.url,
  WORKFLOW_ACCESS: JSON.stringify([{ role: 'viewer', to: ['*'] }]),
  PORT: '0',
  LOG_LEVEL: 'error',
});
try {
  const [, portText] = await serving.waitFor(/HTTP on port (\d+)/, 60_000);
  const port = Number(portText);
  const pid = serving.child.pid!;
  const url = `http://127.0.0.1:${port}/slack/events`;

  // Warm: one signed request answered, so what follows measures the posts and not start-up.
  assert(
    (await postSigned(url, slashCommandBody({ text: 'help', user_id: 'U0BENCH' }), FORM, { secret: SECRET })).status === 200,
    'a signed request is served',
  );
  const before = memory(pid);

  let peak = before.rss;
  const sampler = setInterval(() => (peak = Math.max(peak, memory(pid).rss)), 20);
  const started = performance.now();
  const outcomes = await Promise.all(Array.from({ length: posts }, (_, i) => oversizedPost(port, mb * 1024 * 1024, i % 2 === 0)));
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  const after = memory(pid);
  peak = Math.max(peak, after.rss);

  // Still serving.
  assert((await postSigned(url, slashCommandBody({ text: 'help', user_id: 'U0BENCH' }), FORM, { secret: SECRET })).status === 200, 'served after the posts');

  const refused = outcomes.filter((o) => o.status === 413).length;
  const cut = outcomes.filter((o) => o.status === null).length;
  const maxSentMb = Math.max(...outcomes.map((o) => o.bytesSent)) / 1024 / 1024;
  const round = (n: number) => Math.round(n * 10) / 10;
  printResult({
    system: 'Slack app, HTTP mode: oversized unsigned posts',
    config: `${posts} concurrent unsigned POST /slack/events of ${mb} MB (${Math.ceil(posts / 2)} with Content-Length, ${Math.floor(posts / 2)} chunked)`,
    items: posts,
    seconds,
    itemsPerSecond: posts / seconds,
    peakRssMb: peakRssMb(),
    sampledPeakRssMb: peakRssMb(),
    cpuSeconds: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    details: {
      serverRssMb: { before: round(before.rss), peakSampled: round(peak), after: round(after.rss), highWaterMark: round(after.hwm) },
      answers: { status413: refused, cutWithoutAnswer: cut, other: posts - refused - cut },
      outcomes: outcomes.map((o) => ({ status: o.status, error: o.error, sentMb: round(o.bytesSent / 1024 / 1024), ms: Math.round(o.ms) })),
      figures: [
        {
          figure: `server peak RSS, ${posts} concurrent ${mb} MB unsigned posts`,
          value: `${round(peak)} MB (from ${round(before.rss)} MB)`,
          target: `< ${TARGET_MB} MB`,
          met: peak < TARGET_MB && after.hwm < TARGET_MB,
        },
        { figure: 'largest part of a post sent before the server cut it', value: `${round(maxSentMb)} MB of ${mb} MB`, target: '', met: true },
      ],
    },
  });
} finally {
  serving.child.kill('SIGTERM');
  await serving.exited;
  await stub.close();
  await database.drop().catch((error: Error) => process.stderr.write(`could not drop the database: ${error.message}\n`));
  await server.release();
}
