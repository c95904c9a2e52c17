/**
 * What PostgreSQL text and jsonb can hold: no NUL, no lone UTF-16 surrogate.
 * Both arrive from outside (chat input, handler errors) and the row that
 * carries them must still be written.
 */
export function storable(text: string): string {
  return text.replace(/\u0000/g, '\uFFFD').replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}
