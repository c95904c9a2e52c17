// A local HTTP server playing Slack's Web API (https://slack.com/api/<method>)
// for the app under test: it answers the methods the app calls, records each
// call (method + parsed body), and lets a test wait for a call matching a
// predicate, with a deadline. Every message or view the app sends through
// chat.* or views.* is checked against Block Kit's limits; a bad one is
// answered `invalid_blocks` as Slack would, and listed in `problems`.
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { blockKitProblems } from '../../src/chat/block-limits.ts';

export interface SlackCall {
  method: string;
  /** Form fields or JSON body; fields holding JSON (blocks, view, attachments…) parsed. */
  body: Record<string, any>;
  token: string | undefined;
  at: number;
  /** What the stub answered. */
  response: Record<string, any>;
}

export interface SlackStub {
  /** The Web API base URL, with its trailing slash (SLACK_API_URL). */
  url: string;
  /** A response_url for payloads; posts to it are recorded as method `response_url`. */
  responseUrl: string;
  calls: SlackCall[];
  /** Block Kit problems found in the app's messages, each naming its call. */
  problems: string[];
  /** Members of each user group, for usergroups.users.list. */
  groups: Map<string, string[]>;
  /** What apps.connections.open answers (a Socket Mode test's WebSocket URL); unset → an error. */
  socketUrl: string | undefined;
  /** Responses to chat.postEphemeral etc. can be made to fail: method → Slack error code. */
  failures: Map<string, string>;
  callsTo(method: string, predicate?: (call: SlackCall) => boolean): SlackCall[];
  /** Resolves with the first call (past or future) matching; rejects at the deadline naming what it waited for. */
  waitFor(method: string, predicate?: (call: SlackCall) => boolean, options?: { timeoutMs?: number; since?: number; what?: string }): Promise<SlackCall>;
  /** Index to pass as `since` so only later calls count. */
  mark(): number;
  close(): Promise<void>;
}

const JSON_FIELDS = new Set(['blocks', 'attachments', 'view', 'metadata', 'users', 'usergroups']);
/** Methods whose body carries a message or a view. */
const MESSAGE_METHODS = new Set([
  'response_url',
  'chat.postMessage',
  'chat.update',
  'chat.postEphemeral',
  'chat.scheduleMessage',
  'views.publish',
  'views.open',
  'views.update',
  'views.push',
]);

export async function startSlackStub(): Promise<SlackStub> {
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const calls: SlackCall[] = [];
  const problems: string[] = [];
  const groups = new Map<string, string[]>();
  const failures = new Map<string, string>();
  let tsCounter = 0;
  const nextTs = () => `${1_700_000_000 + Math.floor(tsCounter / 1000)}.${String(++tsCounter).padStart(6, '0')}`;

  const server = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (raw += chunk));
    req.on('end', () => {
      const path = (req.url ?? '').replace(/\?.*$/, '');
      const method = path.startsWith('/response/') ? 'response_url' : path.replace(/^\/api\//, '');
      const body = parseBody(raw, req.headers['content-type'] ?? '');
      const auth = req.headers.authorization;
      const token = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7) : (body.token as string | undefined);
      const call: SlackCall = { method, body, token, at: Date.now(), response: {} };
      calls.push(call);

      let answer: Record<string, unknown>;
      const found = MESSAGE_METHODS.has(method) ? blockKitProblems(method.startsWith('views.') ? body.view : { text: body.text, blocks: body.blocks }) : [];
      if (found.length) {
        problems.push(...found.map((p) => `${method} #${calls.length - 1}: ${p}`));
        answer = { ok: false, error: 'invalid_blocks', errors: found };
      } else if (failures.has(method)) {
        answer = { ok: false, error: failures.get(method) };
      } else {
        answer = respond(method, body);
      }
      call.response = answer;
      res.setHeader('content-type', 'application/json; charset=utf-8');
      res.end(JSON.stringify(answer));
      events.emit('call', call);
    });
  });

  function respond(method: string, body: Record<string, any>): Record<string, unknown> {
    switch (method) {
      case 'auth.test':
        return { ok: true, url: 'https://test.slack.com/', team: 'Test', user: 'workflow', team_id: 'T0TEST', user_id: 'U0BOT', bot_id: 'B0BOT' };
      case 'chat.postMessage': {
        const ts = nextTs();
        return { ok: true, channel: body.channel, ts, message: { type: 'message', text: body.text, blocks: body.blocks, ts, bot_id: 'B0BOT' } };
      }
      case 'chat.update':
        return { ok: true, channel: body.channel, ts: body.ts, text: body.text };
      case 'chat.postEphemeral':
        return { ok: true, message_ts: nextTs() };
      case 'views.publish':
        return { ok: true, view: { id: `V${calls.length}`, ...(body.view as object) } };
      case 'usergroups.users.list':
        return groups.has(body.usergroup) ? { ok: true, users: groups.get(body.usergroup) } : { ok: false, error: 'no_such_subteam' };
      case 'apps.connections.open':
        return stub.socketUrl ? { ok: true, url: stub.socketUrl } : { ok: false, error: 'not_allowed_token_type' };
      case 'response_url':
        return { ok: true };
      case 'users.info':
        return { ok: true, user: { id: body.user, name: String(body.user).toLowerCase() } };
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const matches = (call: SlackCall, method: string, predicate?: (call: SlackCall) => boolean) => call.method === method && (!predicate || predicate(call));

  const stub: SlackStub = {
    socketUrl: undefined,
    url: `http://127.0.0.1:${port}/api/`,
    responseUrl: `http://127.0.0.1:${port}/response/`,
    calls,
    problems,
    groups,
    failures,
    callsTo: (method, predicate) => calls.filter((c) => matches(c, method, predicate)),
    mark: () => calls.length,
    waitFor(method, predicate, options = {}) {
      const since = options.since ?? 0;
      const found = calls.slice(since).find((c) => matches(c, method, predicate));
      if (found) return Promise.resolve(found);
      const timeoutMs = options.timeoutMs ?? 10_000;
      return new Promise((resolve, reject) => {
        const onCall = (call: SlackCall) => {
          if (!matches(call, method, predicate)) return;
          clearTimeout(timer);
          events.off('call', onCall);
          resolve(call);
        };
        const timer = setTimeout(() => {
          events.off('call', onCall);
          const seen =
            calls
              .slice(since)
              .map((c) => c.method)
              .join(', ') || 'none';
          reject(new Error(`no ${method} call${options.what ? ` (${options.what})` : ''} within ${timeoutMs} ms; calls since: ${seen}`));
        }, timeoutMs);
        events.on('call', onCall);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return stub;
}

function parseBody(raw: string, contentType: string): Record<string, any> {
  if (contentType.includes('application/json')) {
    try {
      return JSON.parse(raw) as Record<string, any>;
    } catch {
      return { _raw: raw };
    }
  }
  const body: Record<string, any> = {};
  for (const [key, value] of new URLSearchParams(raw)) {
    if (JSON_FIELDS.has(key)) {
      try {
        body[key] = JSON.parse(value);
        continue;
      } catch {
        // keep the string
      }
    }
    body[key] = value;
  }
  return body;
}

/** Text of a recorded message: its fallback text and every text in its blocks, for matching. */
export function messageText(call: SlackCall): string {
  const parts: string[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (node && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        if (key === 'text' && typeof value === 'string') parts.push(value);
        else walk(value);
      }
    }
  };
  if (typeof call.body.text === 'string') parts.push(call.body.text);
  walk(call.body.blocks ?? call.body.view);
  return parts.join('\n');
}

/** The buttons of a recorded message or view, with their action ids and values. */
export function buttons(call: SlackCall): { action_id: string; value?: string; text: string; confirm?: unknown }[] {
  const found: { action_id: string; value?: string; text: string; confirm?: unknown }[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (node && typeof node === 'object') {
      const el = node as Record<string, any>;
      if (el.type === 'button') found.push({ action_id: el.action_id, value: el.value, text: el.text?.text ?? '', confirm: el.confirm });
      else Object.values(el).forEach(walk);
    }
  };
  walk(call.body.blocks ?? call.body.view?.blocks);
  return found;
}
