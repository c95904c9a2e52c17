/**
 * At most `max` UTF-16 units, ending in "…" when cut, never splitting a
 * surrogate pair. Units, not code points, because that is what limits count
 * (Slack's included: it never counts more than these).
 */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = Math.max(0, max - 1);
  const code = text.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}
