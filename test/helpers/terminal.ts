// A stand-in terminal for tests: a stream that says it is a TTY, and what a
// screen would show after the bytes written to it (enough of the ANSI
// sequences that readline, the progress bar and the log use: carriage
// return, line feed, cursor moves, line and screen erases; colours ignored).
import { PassThrough } from 'node:stream';

export interface FakeTerminal {
  stream: NodeJS.WriteStream & PassThrough;
  /** Everything written, escape sequences included. */
  readonly raw: string;
  /** The screen's lines as shown now, trailing spaces trimmed. */
  screen(): string[];
}

export function fakeTerminal(columns = 120): FakeTerminal {
  const stream = new PassThrough() as NodeJS.WriteStream & PassThrough;
  Object.assign(stream, { isTTY: true, columns, rows: 40, getColorDepth: () => 8, hasColors: () => true });
  let raw = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => (raw += chunk));
  return {
    stream,
    get raw() {
      return raw;
    },
    screen: () => render(raw, columns),
  };
}

function render(text: string, columns: number): string[] {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  const line = () => (lines[row] ??= []);
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\x1b' && text[i + 1] === '[') {
      const match = /^\x1b\[([0-9;?]*)([A-Za-z])/.exec(text.slice(i));
      if (!match) continue;
      i += match[0].length - 1;
      const n = match[1] === '' ? undefined : Number(match[1]!.split(';')[0]);
      switch (match[2]) {
        case 'G':
          col = (n ?? 1) - 1;
          break;
        case 'A':
          row = Math.max(0, row - (n ?? 1));
          break;
        case 'B':
          row += n ?? 1;
          break;
        case 'C':
          col += n ?? 1;
          break;
        case 'D':
          col = Math.max(0, col - (n ?? 1));
          break;
        case 'K':
          if ((n ?? 0) === 0) line().length = Math.min(line().length, col);
          else if (n === 1) line().fill(' ', 0, col);
          else lines[row] = [];
          break;
        case 'J':
          line().length = Math.min(line().length, col);
          lines.length = row + 1;
          break;
        default:
          break; // colours and the rest change nothing that is read here
      }
      continue;
    }
    if (ch === '\r') col = 0;
    else if (ch === '\n') {
      row++;
      col = 0;
    } else {
      if (col >= columns) {
        row++;
        col = 0;
      }
      const l = line();
      while (l.length < col) l.push(' ');
      l[col++] = ch;
    }
  }
  for (let r = 0; r < lines.length; r++) lines[r] ??= [];
  const shown = lines.map((l) => l.join('').trimEnd());
  while (shown.length > 0 && shown.at(-1) === '') shown.pop();
  return shown;
}
