// Times people read beside a timestamp: "in 44 s", "3 min 05 s ago". Whole
// seconds: a refusal read a second later should not look more precise than it is.

/** A span of seconds as "44 s", "3 min 05 s" or "2 h 05 min". */
export function spanText(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  return `${Math.floor(s / 86_400)} d ${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')} h`;
}

/** `at` relative to `now`: "in 44 s", "16 s ago", or "just now" within half a second. */
export function relativeTime(at: Date | string, now: Date = new Date()): string {
  const ms = (typeof at === 'string' ? Date.parse(at) : at.getTime()) - now.getTime();
  if (!Number.isFinite(ms)) return '';
  if (Math.abs(ms) < 500) return 'just now';
  return ms > 0 ? `in ${spanText(ms / 1000)}` : `${spanText(-ms / 1000)} ago`;
}

/** An instant as people read it in a terminal: "2025-05-01 12:00:44 UTC". */
export function utcText(at: Date | string): string {
  const date = typeof at === 'string' ? new Date(at) : at;
  return Number.isFinite(date.getTime()) ? `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC` : String(at);
}
