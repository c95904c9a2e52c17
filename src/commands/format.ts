import type { ExpectedWork, Metrics } from '../db/schema.ts';

// Work and metrics as text, the same on every surface: the CLI prints these
// as they are, the chat escapes and bounds them for Slack.

/**
 * Work per step ("summary 300, skills 0"). `null` is work not counted yet
 * ("-"); an empty object was counted and is "none", not a blank.
 */
export function formatWork(work: ExpectedWork | null): string {
  if (!work) return '-';
  const steps = Object.entries(work);
  if (steps.length === 0) return 'none';
  return steps.map(([step, n]) => `${step} ${n}`).join(', ');
}

/** The metrics a run changed, each with its signed change ("with_summary +300, total -2"); "no change" when none did. */
export function formatDelta(delta: Metrics): string {
  return (
    Object.entries(delta)
      .filter(([, v]) => numeric(v) !== 0)
      .map(([k, v]) => `${k} ${formatNumber(numeric(v), true)}`)
      .join(', ') || 'no change'
  );
}

/** Metrics arrive as numbers, or as numeric strings when a driver returns bigints as text. */
export function numeric(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
  return undefined;
}

/** A metric's value for a table: "-" when unknown, at most four decimals, "+" before a positive change when `signed`. */
export function formatNumber(value: number | undefined, signed = false): string {
  if (value === undefined) return '-';
  const text = Number.isInteger(value) ? String(value) : String(Number(value.toFixed(4)));
  return signed && value > 0 ? `+${text}` : text;
}
