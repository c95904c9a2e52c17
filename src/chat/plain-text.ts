// A Block Kit message as terminal text, for the console chat: the same
// messages Slack shows, with mrkdwn simplified and buttons listed as
// numbered choices the user types.

export interface Choice {
  label: string;
  actionId: string;
  value: string;
  confirm?: { title: string; text: string };
}

export interface PlainMessage {
  text: string;
  choices: Choice[];
}

type Json = Record<string, any>;

/**
 * `message` is a chat message ({ text, blocks }) or a view ({ type: 'home', blocks });
 * `names` maps the Slack users it mentions to the names a terminal shows.
 */
export function plainText(message: { text?: string; blocks?: readonly unknown[]; names?: Record<string, string> }): PlainMessage {
  const names = message.names ?? {};
  const textOf = (t: unknown) => textOfIn(t, names);
  const lines: string[] = [];
  const choices: Choice[] = [];
  const button = (el: Json) => {
    if (el?.type !== 'button' || typeof el.action_id !== 'string') return;
    choices.push({
      label: textOf(el.text),
      actionId: el.action_id,
      value: typeof el.value === 'string' ? el.value : '',
      ...(el.confirm ? { confirm: { title: textOf(el.confirm.title), text: textOf(el.confirm.text) } } : {}),
    });
  };
  for (const block of (message.blocks ?? []) as Json[]) {
    switch (block?.type) {
      case 'header':
        lines.push(textOf(block.text));
        break;
      case 'section':
        if (block.text) lines.push(textOf(block.text));
        if (Array.isArray(block.fields)) lines.push(...block.fields.map((f: Json) => field(textOf(f))));
        if (block.accessory) button(block.accessory);
        break;
      case 'context':
        lines.push(
          (block.elements ?? [])
            .filter((e: Json) => e?.type !== 'image')
            .map(textOf)
            .join(' · '),
        );
        break;
      case 'actions':
        for (const el of block.elements ?? []) button(el);
        break;
      case 'divider':
        lines.push('');
        break;
      default:
        if (block?.text) lines.push(textOf(block.text));
    }
  }
  const text = lines.length ? lines.join('\n') : mrkdwnToText(message.text ?? '', names);
  return { text, choices };
}

function textOfIn(t: unknown, names: Record<string, string>): string {
  if (!t || typeof t !== 'object') return '';
  const { type, text } = t as Json;
  if (typeof text !== 'string') return '';
  return type === 'mrkdwn' ? mrkdwnToText(text, names) : text;
}

/** A field reads "*Label*\nvalue": on a terminal, "Label: value". */
function field(text: string): string {
  const newline = text.indexOf('\n');
  return newline > 0 ? `${text.slice(0, newline)}: ${text.slice(newline + 1)}` : text;
}

/**
 * mrkdwn as plain text: *bold*, _italic_ and ~strike~ lose their marks,
 * mentions, links and dates show their readable part, entities are decoded.
 * Code (blocks and spans) is kept as it is, its fences and backticks dropped.
 */
export function mrkdwnToText(text: string, names: Record<string, string> = {}): string {
  // Odd pieces are code blocks; even ones are split again on inline code spans.
  return text
    .split(/```\n?([\s\S]*?)\n?```/)
    .map((part, i) => (i % 2 === 1 ? decode(part) : inline(part, names)))
    .join('');
}

function inline(text: string, names: Record<string, string>): string {
  return text
    .split(/(`[^`\n]+`)/)
    .map((part, i) => (i % 2 === 1 ? decode(part.slice(1, -1)) : formatting(part, names)))
    .join('');
}

function formatting(text: string, names: Record<string, string>): string {
  return decode(
    text
      .replace(/<!date\^[^|>]*\|([^>]*)>/g, '$1')
      .replace(/<@([A-Z0-9]+)(?:\|([^>]*))?>/g, (_, id: string, name: string | undefined) => `@${name ?? (Object.hasOwn(names, id) ? names[id] : id)}`)
      .replace(/<#([A-Z0-9]+)(?:\|([^>]*))?>/g, (_, id, name) => `#${name ?? id}`)
      .replace(/<!(here|channel|everyone)>/g, '@$1')
      .replace(/<(https?:[^|>]+)\|([^>]+)>/g, '$2 ($1)')
      .replace(/<(https?:[^>]+)>/g, '$1')
      .replace(/(^|[\s(])\*([^*\n]+)\*(?=$|[\s.,;:!?)])/gm, '$1$2')
      .replace(/(^|[\s(])_([^_\n]+)_(?=$|[\s.,;:!?)])/gm, '$1$2')
      .replace(/(^|[\s(])~([^~\n]+)~(?=$|[\s.,;:!?)])/gm, '$1$2'),
  );
}

function decode(text: string): string {
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}
