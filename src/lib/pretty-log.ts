// One pino JSON line as a person reads it on a terminal:
//
//   14:03:07.412 WARN  run given up without writing  runId=12 cause={"kind":"fenced"}
//
// time of day, level, message, then the other fields as key=value (strings
// bare when they are one plain word, everything else as JSON, so that no
// control character from a value reaches the terminal); an error's stack on
// the lines below, indented. Colour only when asked (a terminal without
// NO_COLOR).

const LEVELS: Readonly<Record<number, { name: string; colour: string }>> = {
  10: { name: 'TRACE', colour: '\x1b[90m' },
  20: { name: 'DEBUG', colour: '\x1b[36m' },
  30: { name: 'INFO', colour: '\x1b[32m' },
  40: { name: 'WARN', colour: '\x1b[33m' },
  50: { name: 'ERROR', colour: '\x1b[31m' },
  60: { name: 'FATAL', colour: '\x1b[41m' },
};
const RESET = '\x1b[0m';
const DIM = '\x1b[2m';
/** Fields every line has, or that the line shows in its own place. */
const SHOWN_APART = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'v']);
const PLAIN = /^[\w.:/@+-]{1,200}$/;
// Control characters (ESC moves the cursor, recolours) and the bidirectional controls, which can reorder what is shown.
const UNSAFE = /[\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/gu;

export function prettyLogLine(json: string, options: { colour: boolean }): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return `${safe(json.trimEnd())}\n`;
  }
  const paint = (code: string, text: string) => (options.colour ? `${code}${text}${RESET}` : text);
  const level = LEVELS[entry.level as number] ?? { name: String(entry.level ?? '?').toUpperCase(), colour: '' };
  const time = typeof entry.time === 'number' ? clock(new Date(entry.time)) : '';
  const fields: string[] = [];
  let stack: string | undefined;
  for (const [key, value] of Object.entries(entry)) {
    if (SHOWN_APART.has(key)) continue;
    if ((key === 'err' || key === 'error') && isSerializedError(value)) {
      fields.push(`${key}=${show(value.message ?? value.type ?? 'error')}`);
      stack = value.stack;
      continue;
    }
    fields.push(`${key}=${show(value)}`);
  }
  const message = typeof entry.msg === 'string' ? safe(entry.msg) : '';
  let line = `${paint(DIM, time)} ${paint(level.colour, level.name.padEnd(5))} ${message}`;
  if (fields.length > 0) line += `  ${paint(DIM, fields.join(' '))}`;
  if (stack) {
    // The first line of a stack repeats the message shown above.
    const frames = stack.split('\n').slice(1);
    if (frames.length > 0) line += `\n${paint(DIM, frames.map((f) => `    ${safe(f.trim())}`).join('\n'))}`;
  }
  return `${line}\n`;
}

function show(value: unknown): string {
  if (typeof value === 'string' && PLAIN.test(value)) return value;
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  return safe(JSON.stringify(value) ?? String(value));
}

/** JSON.stringify escapes control characters already; this also covers message text and stack lines. */
function safe(text: string): string {
  return text.replace(UNSAFE, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function clock(date: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

function isSerializedError(value: unknown): value is { type?: string; message?: string; stack?: string } {
  return typeof value === 'object' && value !== null && ('message' in value || 'stack' in value);
}
