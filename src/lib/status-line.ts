// A line at the bottom of the terminal that its owner redraws in place: the
// console chat's prompt (with what is being typed) and the CLI's progress
// bar. Anything else written to the terminal meanwhile, a log line above all,
// would land in the middle of it; writeAbove clears the line first and has it
// redrawn after, so the other output scrolls up above it.

export interface StatusLine {
  /** Erases the line, leaving the cursor at the start of the empty line. */
  clear(): void;
  /** Draws it again as it was. */
  redraw(): void;
}

const shown = new Set<StatusLine>();

/** Registers a line being shown; the returned function unregisters it (when it is gone or no longer redrawn). */
export function showStatusLine(line: StatusLine): () => void {
  shown.add(line);
  return () => {
    shown.delete(line);
  };
}

/** Runs `write` with every status line cleared, and redraws them after it. */
export function writeAbove(write: () => void): void {
  if (shown.size === 0) return write();
  for (const line of shown) line.clear();
  try {
    write();
  } finally {
    for (const line of shown) line.redraw();
  }
}
