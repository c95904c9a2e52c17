import pino, { type Logger } from 'pino';
import { prettyLogLine } from './lib/pretty-log.ts';
import { writeAbove } from './lib/status-line.ts';

// Secrets must never reach logs: tokens and connection strings are redacted
// wherever they appear in a logged object.
const REDACT = [
  '*.token',
  '*.botToken',
  '*.appToken',
  '*.signingSecret',
  '*.password',
  '*.connectionString',
  '*.DATABASE_URL',
  '*.DATABASE_LOCK_URL',
  '*.SLACK_BOT_TOKEN',
  '*.SLACK_APP_TOKEN',
  '*.SLACK_SIGNING_SECRET',
  'config.*.token',
  'headers.authorization',
  '*.headers.authorization',
];

export type { Logger };

/** json: one JSON object a line, for machines; pretty: time, level, message and fields, for people. */
export type LogFormat = 'json' | 'pretty';

/**
 * A logger writing to `destination` (stderr by default) in `format`: by
 * default pretty on a terminal, JSON anywhere else (LOG_FORMAT overrides).
 * On a terminal each line is written above the console prompt or the
 * progress bar rather than into it (src/lib/status-line.ts).
 */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr, format?: LogFormat): Logger {
  const terminal = (destination as NodeJS.WriteStream).isTTY === true;
  const pretty = (format ?? (terminal ? 'pretty' : 'json')) === 'pretty';
  const colour = pretty && terminal && !process.env.NO_COLOR;
  const sink = {
    write(line: string) {
      const text = pretty ? prettyLogLine(line, { colour }) : line;
      if (terminal) writeAbove(() => destination.write(text));
      else destination.write(text);
    },
  };
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' }, base: { pid: process.pid } }, sink);
}

/** Removes the password from a postgres URL before it is shown anywhere. */
export function redactUrl(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:/@]*:)[^@]*@/, '$1[redacted]@');
}
