import { truncate } from './truncate.ts';

// Text from elsewhere (an error, a server's output, a name) as one line in a
// message of ours: a line break would end the message early in a log line or
// a chat reply, a control character (ESC) can move the cursor or recolour a
// terminal, and a bidirectional control can make the line read in another
// order than it is (Trojan Source).

export interface OneLineOptions {
  /** What stands between the text's lines: ' ' by default; '; ' keeps them apart. */
  join?: string;
  /** At most this many characters, the last one "…" when cut. */
  max?: number;
}

const LINE_BREAK = /\r\n|[\n\r\v\f\u0085\u2028\u2029]/;
/** Spaces of every kind, C0 and C1 controls, and the bidirectional controls: each run becomes one space. */
const BLANKS = /[\s\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]+/gu;

/** `value` (a string, an Error as "Name: message", anything else as String() gives it) on one line, trimmed, its blank lines dropped. */
export function oneLine(value: unknown, options: OneLineOptions = {}): string {
  const line = text(value)
    .split(LINE_BREAK)
    .map((l) => l.replace(BLANKS, ' ').trim())
    .filter((l) => l !== '')
    .join(options.join ?? ' ');
  return options.max === undefined ? line : truncate(line, options.max);
}

function text(value: unknown): string {
  if (typeof value === 'string') return value;
  try {
    return String(value);
  } catch {
    // An object without a prototype has no toString.
    return Object.prototype.toString.call(value);
  }
}
