import type { ExpectedWork, Metrics } from '../db/schema.ts';
import { personLabel } from '../lib/person.ts';
import { inOrder, type RunView } from './results.ts';

// Work and metrics as text, the same on every surface: the CLI prints these
// as they are, the chat escapes and bounds them for Slack.

/**
 * Work per step ("summary 300, skills 300"), in `steps` order (the
 * workflow's). `null` is work not counted yet ("-"); an empty object was
 * counted and is "none", not a blank.
 */
export function formatWork(work: ExpectedWork | null, steps: readonly string[] = []): string {
  if (!work) return '-';
  const names = inOrder(steps, Object.keys(work)).filter((step) => step in work);
  if (names.length === 0) return 'none';
  return names.map((step) => `${step} ${work[step]}`).join(', ');
}

/** The metrics a run changed, each with its signed change ("with_summary +300, total -2"), in `names` order; "no change" when none did. */
export function formatDelta(delta: Metrics, names: readonly string[] = []): string {
  return (
    inOrder(names, Object.keys(delta))
      .filter((k) => k in delta && numeric(delta[k]) !== 0 && numeric(delta[k]) !== undefined)
      .map((k) => `${k} ${formatNumber(numeric(delta[k]), true)}`)
      .join(', ') || 'no change'
  );
}

/** A run's metrics split into those it changed and those it did not, each in the declared order. */
export function metricChanges(view: Pick<RunView, 'metricNames' | 'stateBefore' | 'stateAfter' | 'delta'>): { changed: string[]; unchanged: string[] } {
  const seen = [...Object.keys(view.stateBefore ?? {}), ...Object.keys(view.stateAfter ?? {}), ...Object.keys(view.delta ?? {})];
  const names = inOrder(view.metricNames ?? [], seen).filter((name) => seen.includes(name));
  const changed: string[] = [];
  const unchanged: string[] = [];
  for (const name of names) {
    const b = numeric(view.stateBefore?.[name]);
    const a = numeric(view.stateAfter?.[name]);
    const d = numeric(view.delta?.[name]) ?? (a !== undefined && b !== undefined ? a - b : undefined);
    // Unknown (a run ended by recovery has no state after) is not "unchanged": it stays in the table, after "-".
    if (d === 0) unchanged.push(name);
    else changed.push(name);
  }
  return { changed, unchanged };
}

/**
 * A run's status in plain words ("completed", "stopped by @ana", "forced out
 * by run #13"), with `who` naming people as the surface does (a mention in
 * Slack, a name in a terminal).
 */
export function statusWords(view: RunView, who: (stored: string) => string = personLabel): string {
  switch (view.status) {
    case 'queued':
      return 'queued';
    case 'running':
      return view.stopRequestedBy ? `stopping (asked by ${who(view.stopRequestedBy)})` : 'running';
    case 'completed':
      return 'completed';
    case 'failed':
      return view.endedReason === 'refused' ? 'refused' : 'failed';
    case 'stopped':
      if (view.endedReason === 'forced' || view.takenOverByRunId !== null) {
        return `forced out${view.takenOverByRunId !== null ? ` by run #${view.takenOverByRunId}` : ''}${view.stoppedBy ? ` (forced by ${who(view.stoppedBy)})` : ''}`;
      }
      if (view.endedReason === 'shutdown') return 'stopped by a shutdown';
      return view.stoppedBy ? `stopped by ${who(view.stoppedBy)}` : 'stopped';
    case 'abandoned':
      return 'abandoned: its process went away';
  }
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
