import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Logger } from '../../log.ts';

// In front of Bolt's HTTPReceiver on POST /slack/events (docs/security.md,
// "Slack requests"). Bolt reads a request's whole body into memory before it
// checks the signature, so anyone who can reach the URL could make the
// process hold gigabytes with unsigned posts; and it refuses old timestamps
// only, so a request signed for a time far ahead stays replayable until then.
// This refuses, before reading a byte of the body, what says it is over
// MAX_BODY_BYTES (413) or carries a timestamp off by more than five minutes
// either way (401), and reads the rest while counting, refusing (413) the
// moment the count passes the limit. What it read is handed to Bolt as the
// buffered body Bolt would have read itself (its `rawBody`), and Bolt checks
// the signature as before.

/** Slack's largest payloads (a block_actions with its message) are tens of KB. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** Slack's own rule for the request timestamp, applied both ways. */
export const MAX_CLOCK_SKEW_SECONDS = 5 * 60;

export interface RequestGuardOptions {
  /** The paths Slack posts to. */
  paths: readonly string[];
  log: Logger;
  maxBodyBytes?: number;
  /** Unix seconds now; for tests. */
  now?: () => number;
}

/** Wraps the receiver's request listener: Slack's posts are checked first, anything else passes through. */
export function guardSlackRequests(next: RequestListener, options: RequestGuardOptions): RequestListener {
  const maxBytes = options.maxBodyBytes ?? MAX_BODY_BYTES;
  const now = options.now ?? (() => Date.now() / 1000);
  const { log } = options;

  return (req, res) => {
    const path = (req.url ?? '').replace(/[?#].*$/s, '');
    if (req.method !== 'POST' || !options.paths.includes(path)) return next(req, res);

    const declared = req.headers['content-length'];
    if (declared !== undefined && !(Number(declared) <= maxBytes)) {
      log.warn({ contentLength: declared }, 'slack request refused: body over the limit (declared)');
      return refuse(req, res, 413, `body over ${maxBytes} bytes`);
    }
    // A missing timestamp is left to Bolt: Slack's ssl_check posts carry none, and Bolt refuses anything else without one.
    const stamp = req.headers['x-slack-request-timestamp'];
    if (stamp !== undefined) {
      const seconds = Number(stamp);
      if (typeof stamp !== 'string' || !/^\d{1,12}$/.test(stamp) || Math.abs(now() - seconds) > MAX_CLOCK_SKEW_SECONDS) {
        log.warn({ timestamp: String(stamp).slice(0, 40) }, 'slack request refused: timestamp more than 5 minutes off');
        return refuse(req, res, 401, 'request timestamp more than 5 minutes off');
      }
    }

    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    const onData = (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > maxBytes) {
        refused = true;
        chunks.length = 0;
        log.warn({ bytes: size }, 'slack request refused: body over the limit (streamed)');
        refuse(req, res, 413, `body over ${maxBytes} bytes`);
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => {
      req.off('data', onData);
      if (refused) return;
      // Bolt takes a request whose rawBody is a Buffer as already read.
      (req as IncomingMessage & { rawBody?: Buffer }).rawBody = Buffer.concat(chunks, size);
      next(req, res);
    });
    req.once('error', () => req.destroy());
  };
}

/** Answers and closes the connection: the rest of the body is not read. */
function refuse(req: IncomingMessage, res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) return void req.destroy();
  const body = `${message}\n`;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body, () => req.socket.destroy());
}
