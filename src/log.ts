import pino, { type Logger } from 'pino';

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

export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' }, base: { pid: process.pid } }, destination as pino.DestinationStream);
}

/** Removes the password from a postgres URL before it is shown anywhere. */
export function redactUrl(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:/@]*:)[^@]*@/, '$1[redacted]@');
}
