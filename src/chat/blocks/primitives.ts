import type { ContextBlock, HeaderBlock, KnownBlock, MrkdwnElement, PlainTextElement, SectionBlock } from '@slack/types';
import { oneLine } from '../../lib/one-line.ts';
import { person } from '../../lib/person.ts';
import { truncate } from '../../lib/truncate.ts';
import { SLACK_LIMITS as L } from '../block-limits.ts';

// The pieces every message is built from. Each stays inside Slack's limits
// whatever the data, because Slack rejects a whole message over one field
// that is too long: a run's final report must not be lost to a 10 KB error or
// a long metric name.
//
// Data (names, users, errors) is escaped (&, <, >) everywhere, so a workflow
// name or an error cannot mention @channel or forge a link.

export interface Message {
  /** Fallback for notifications and screen readers: one short line. */
  text: string;
  blocks: KnownBlock[];
  /** Shown only to the person who asked (refusals, errors, queries). */
  ephemeral: boolean;
  /**
   * Display names of the Slack users the message mentions, by id: Slack
   * shows <@U…> as the user, a terminal shows the name (../plain-text.ts).
   * Never sent to Slack.
   */
  names?: Record<string, string>;
}

export function message(text: string, blocks: KnownBlock[], ephemeral = true): Message {
  return { text: truncate(text.trim() || '(no text)', 300), blocks: blocks.slice(0, L.messageBlocks), ephemeral };
}

export function header(text: string): HeaderBlock {
  return { type: 'header', text: plain(text, L.headerText) };
}

export function section(text: string): SectionBlock {
  return { type: 'section', text: mrkdwn(text) };
}

export function fields(texts: string[]): SectionBlock {
  return { type: 'section', fields: texts.slice(0, L.fields).map((t) => mrkdwn(t, L.fieldText)) };
}

export function context(texts: string[]): ContextBlock {
  return { type: 'context', elements: texts.slice(0, L.contextElements).map((t) => mrkdwn(t, L.contextText)) };
}

/** Lines of mrkdwn packed into as few sections as fit, at most `maxBlocks`, the rest counted. */
export function linesBlocks(lines: string[], maxBlocks: number, noun: string): KnownBlock[] {
  const budget = L.sectionText - 40;
  const blocks: KnownBlock[] = [];
  let chunk: string[] = [];
  let size = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = fitMrkdwn(lines[i]!, budget);
    if (size + line.length + 1 > budget && chunk.length > 0) {
      if (blocks.length + 1 >= maxBlocks) {
        chunk.push(`…and ${lines.length - i} more ${noun}`);
        blocks.push(section(chunk.join('\n')));
        return blocks;
      }
      blocks.push(section(chunk.join('\n')));
      chunk = [];
      size = 0;
    }
    chunk.push(line);
    size += line.length + 1;
  }
  if (chunk.length) blocks.push(section(chunk.join('\n')));
  return blocks;
}

/** Long text (help) as code blocks, split on line boundaries. */
export function textBlocks(text: string, maxBlocks: number): KnownBlock[] {
  const lines = text.split('\n').map((l) => escCode(truncate(l, 1_000)));
  const blocks: KnownBlock[] = [];
  let chunk: string[] = [];
  let size = 0;
  const budget = L.sectionText - 40;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (size + line.length + 1 > budget && chunk.length > 0) {
      if (blocks.length + 1 >= maxBlocks) {
        blocks.push(section(`\`\`\`\n${chunk.join('\n')}\n\`\`\`\n…and ${lines.length - i} more lines`));
        return blocks;
      }
      blocks.push(section(`\`\`\`\n${chunk.join('\n')}\n\`\`\``));
      chunk = [];
      size = 0;
    }
    chunk.push(line);
    size += line.length + 1;
  }
  if (chunk.length) blocks.push(section(`\`\`\`\n${chunk.join('\n')}\n\`\`\``));
  return blocks.length ? blocks : [section('(no help text)')];
}

export function plain(text: string, max: number): PlainTextElement {
  return { type: 'plain_text', text: truncate(text.trim() || '-', max), emoji: true };
}

export function mrkdwn(text: string, max: number = L.sectionText): MrkdwnElement {
  return { type: 'mrkdwn', text: fitMrkdwn(text.trim() ? text : '-', max) };
}

/**
 * Rows as code blocks in sections of at most 3,000 characters each, in at
 * most `maxBlocks` sections; what does not fit is counted at the end.
 */
export function tableBlocks(title: string, head: string, rows: string[], maxBlocks: number, noun: string): KnownBlock[] {
  if (maxBlocks < 1) return [];
  const blocks: KnownBlock[] = [];
  // Room for the rows of one section: its limit less the fences, the header row, the title and a "…and N more" tail.
  const room = () => L.sectionText - 60 - (blocks.length === 0 ? title.length + 1 : 0) - head.length;
  let chunk: string[] = [];
  let size = 0;
  const flush = (more: number) => {
    const prefix = blocks.length === 0 ? `${title}\n` : '';
    const tail = more > 0 ? `\n…and ${more} more ${noun}` : '';
    blocks.push(section(`${prefix}\`\`\`\n${[escCode(head), ...chunk].join('\n')}\n\`\`\`${tail}`));
    chunk = [];
    size = 0;
  };
  for (let i = 0; i < rows.length; i++) {
    const escaped = escCode(rows[i]!);
    const row = escaped.length > room() ? truncate(escaped, room()) : escaped;
    if (chunk.length > 0 && size + row.length + 1 > room()) {
      if (blocks.length + 1 >= maxBlocks) {
        flush(rows.length - i);
        return blocks;
      }
      flush(0);
    }
    chunk.push(row);
    size += row.length + 1;
  }
  flush(0);
  return blocks;
}

/** Slack needs &, < and > escaped in text; escaped, data can never become a mention or a link. */
export function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Truncates escaped mrkdwn without leaving half an entity or a code fence open. */
function fitMrkdwn(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = truncate(text, max - 4)
    .slice(0, -1)
    .replace(/&[a-z]{0,4}$/, '');
  if ((cut.match(/```/g)?.length ?? 0) % 2 === 1) cut = `${truncate(cut, max - 5).slice(0, -1)}…\n\`\`\``;
  else cut = `${cut}…`;
  return cut;
}

/** Data inside an inline code span: formatting characters in it stay literal. */
export function code(text: string, max: number): string {
  const clean = oneLine(text).replace(/`/g, "'");
  return clean ? `\`${esc(truncate(clean, max))}\`` : '-';
}

/**
 * A requester as stored ("U024BE7LH (ana)", "ana@laptop"): a Slack user
 * becomes a mention of the id alone, anything else is shown as data.
 */
export function who(stored: string): string {
  const p = person(stored);
  return p.slackId ? `<@${p.slackId}>` : code(p.name, 80);
}

/** The display names of the Slack users among `stored` requesters, for Message.names. */
export function namesOf(stored: readonly (string | null | undefined)[]): Record<string, string> | undefined {
  const names: Record<string, string> = {};
  for (const s of stored) {
    if (!s) continue;
    const p = person(s);
    if (p.slackId && p.name !== p.slackId) names[p.slackId] = p.name;
  }
  return Object.keys(names).length ? names : undefined;
}

/** The people a run's message names: requester, stopper, forcer. */
export function runNames(
  ...views: readonly ({ requestedBy: string; stopRequestedBy: string | null; stoppedBy: string | null; forcedBy: string | null } | undefined)[]
) {
  return namesOf(views.flatMap((v) => (v ? [v.requestedBy, v.stopRequestedBy, v.stoppedBy, v.forcedBy] : [])));
}

/** Text in a code block of at most `max` characters; a ``` inside cannot close it early. */
export function codeBlock(text: string, max: number): string {
  const body = escCode(text);
  const room = max - 8;
  const shown =
    body.length > room ? `${truncate(body, room - 30).replace(/&[a-z]{0,4}…$/, '…')}\n(${text.length.toLocaleString('en-US')} characters, cut)` : body;
  return `\`\`\`\n${shown}\n\`\`\``;
}

export function escCode(text: string): string {
  return esc(text).replace(/```/g, '``\u200b`');
}

/** A timestamp Slack shows in the reader's time zone; the fallback (console, notifications) is UTC. */
export function formatTime(iso: string): string {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return esc(truncate(iso, 40));
  const fallback = `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
  return `<!date^${Math.floor(ms / 1000)}^{date_short_pretty} {time_secs}|${fallback}>`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.floor(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

export function clamp(n: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, n));
}
