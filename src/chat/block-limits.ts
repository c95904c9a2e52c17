// An independent check of Slack's Block Kit limits and structure, for tests
// of every surface. Slack rejects a whole message (`invalid_blocks`) over one
// bad field, so a run's final report would be lost over a long metric name:
// this checker is written apart from the builders, so it does not share
// their assumptions, and it reads plain JSON, not our types.

export const SLACK_LIMITS = {
  messageBlocks: 50,
  viewBlocks: 100,
  messageText: 4_000,
  sectionText: 3_000,
  headerText: 150,
  fields: 10,
  fieldText: 2_000,
  contextElements: 10,
  contextText: 3_000,
  actionsElements: 25,
  buttonText: 75,
  buttonValue: 2_000,
  actionId: 255,
  blockId: 255,
  confirmTitle: 100,
  confirmText: 300,
  confirmButton: 30,
  url: 3_000,
} as const;

/** Block types Slack accepts in messages and views. */
const KNOWN_BLOCKS = new Set(['actions', 'context', 'divider', 'file', 'header', 'image', 'input', 'markdown', 'rich_text', 'section', 'table', 'video']);
const VIEW_TYPES = new Set(['home', 'modal']);

type Json = Record<string, unknown>;

/** Every problem found, each naming where it is; empty when Slack would accept it. */
export function blockKitProblems(messageOrView: unknown): string[] {
  const problems: string[] = [];
  const add = (where: string, what: string) => problems.push(`${where}: ${what}`);
  if (!isObject(messageOrView)) return ['the message is not an object'];
  const m = messageOrView;
  const isView = typeof m.type === 'string';
  if (isView) {
    if (!VIEW_TYPES.has(m.type as string)) add('type', `unknown view type ${JSON.stringify(m.type)}`);
  } else {
    if (typeof m.text !== 'string' || m.text.trim() === '') add('text', 'a message needs a non-empty fallback text');
    else if (m.text.length > SLACK_LIMITS.messageText) add('text', tooLong(m.text.length, SLACK_LIMITS.messageText));
  }
  if (!Array.isArray(m.blocks)) {
    add('blocks', 'missing or not an array');
    return problems;
  }
  const maxBlocks = isView ? SLACK_LIMITS.viewBlocks : SLACK_LIMITS.messageBlocks;
  if (m.blocks.length > maxBlocks) add('blocks', `${m.blocks.length} blocks, at most ${maxBlocks}`);
  if (isView && m.blocks.length === 0) add('blocks', 'a view needs at least one block');

  const blockIds = new Set<string>();
  m.blocks.forEach((block, i) => {
    const where = `blocks[${i}]`;
    if (!isObject(block)) {
      add(where, 'not an object');
      return;
    }
    if (block.block_id !== undefined) {
      const id = block.block_id;
      if (typeof id !== 'string' || id === '') add(`${where}.block_id`, 'must be a non-empty string');
      else {
        if (id.length > SLACK_LIMITS.blockId) add(`${where}.block_id`, tooLong(id.length, SLACK_LIMITS.blockId));
        if (blockIds.has(id)) add(`${where}.block_id`, `duplicate block_id ${JSON.stringify(id)}`);
        blockIds.add(id);
      }
    }
    checkBlock(block, where, add);
  });
  return problems;
}

function checkBlock(block: Json, where: string, add: (where: string, what: string) => void): void {
  const actionIds = new Set<string>();
  const element = (el: unknown, at: string) => checkElement(el, at, add, actionIds);
  switch (block.type) {
    case 'section': {
      const hasText = block.text !== undefined;
      const fields = block.fields;
      if (!hasText && fields === undefined) add(where, 'a section needs text or fields');
      if (hasText) checkText(block.text, `${where}.text`, SLACK_LIMITS.sectionText, add);
      if (fields !== undefined) {
        if (!Array.isArray(fields) || fields.length === 0) add(`${where}.fields`, 'must be a non-empty array');
        else {
          if (fields.length > SLACK_LIMITS.fields) add(`${where}.fields`, `${fields.length} fields, at most ${SLACK_LIMITS.fields}`);
          fields.forEach((f, j) => {
            checkText(f, `${where}.fields[${j}]`, SLACK_LIMITS.fieldText, add);
          });
        }
      }
      if (block.accessory !== undefined) element(block.accessory, `${where}.accessory`);
      return;
    }
    case 'header':
      checkText(block.text, `${where}.text`, SLACK_LIMITS.headerText, add, { plainOnly: true });
      return;
    case 'context': {
      const elements = block.elements;
      if (!Array.isArray(elements) || elements.length === 0) return add(`${where}.elements`, 'must be a non-empty array');
      if (elements.length > SLACK_LIMITS.contextElements) add(`${where}.elements`, `${elements.length} elements, at most ${SLACK_LIMITS.contextElements}`);
      elements.forEach((e, j) => {
        if (isObject(e) && e.type === 'image') return;
        checkText(e, `${where}.elements[${j}]`, SLACK_LIMITS.contextText, add);
      });
      return;
    }
    case 'actions': {
      const elements = block.elements;
      if (!Array.isArray(elements) || elements.length === 0) return add(`${where}.elements`, 'must be a non-empty array');
      if (elements.length > SLACK_LIMITS.actionsElements) add(`${where}.elements`, `${elements.length} elements, at most ${SLACK_LIMITS.actionsElements}`);
      elements.forEach((e, j) => {
        element(e, `${where}.elements[${j}]`);
      });
      return;
    }
    case 'divider':
      return;
    default:
      if (typeof block.type !== 'string' || !KNOWN_BLOCKS.has(block.type)) add(`${where}.type`, `unknown block type ${JSON.stringify(block.type)}`);
  }
}

/** Buttons are all the interactive elements this app makes; anything else is at least checked for its action_id. */
function checkElement(el: unknown, where: string, add: (where: string, what: string) => void, actionIds: Set<string>): void {
  if (!isObject(el)) return add(where, 'not an object');
  if (el.action_id !== undefined) {
    const id = el.action_id;
    if (typeof id !== 'string' || id === '') add(`${where}.action_id`, 'must be a non-empty string');
    else {
      if (id.length > SLACK_LIMITS.actionId) add(`${where}.action_id`, tooLong(id.length, SLACK_LIMITS.actionId));
      if (actionIds.has(id)) add(`${where}.action_id`, `duplicate action_id ${JSON.stringify(id)} in one block`);
      actionIds.add(id);
    }
  }
  if (el.type !== 'button') {
    if (el.type === 'image') return;
    if (typeof el.type !== 'string') add(`${where}.type`, 'missing element type');
    return;
  }
  checkText(el.text, `${where}.text`, SLACK_LIMITS.buttonText, add, { plainOnly: true });
  if (el.value !== undefined) {
    if (typeof el.value !== 'string') add(`${where}.value`, 'must be a string');
    else if (el.value.length > SLACK_LIMITS.buttonValue) add(`${where}.value`, tooLong(el.value.length, SLACK_LIMITS.buttonValue));
  }
  if (el.url !== undefined && (typeof el.url !== 'string' || el.url.length > SLACK_LIMITS.url))
    add(`${where}.url`, `must be a string of at most ${SLACK_LIMITS.url} characters`);
  if (el.style !== undefined && el.style !== 'primary' && el.style !== 'danger')
    add(`${where}.style`, `must be primary or danger, got ${JSON.stringify(el.style)}`);
  if (el.confirm !== undefined) {
    const c = el.confirm;
    if (!isObject(c)) return add(`${where}.confirm`, 'not an object');
    checkText(c.title, `${where}.confirm.title`, SLACK_LIMITS.confirmTitle, add, { plainOnly: true });
    checkText(c.text, `${where}.confirm.text`, SLACK_LIMITS.confirmText, add);
    checkText(c.confirm, `${where}.confirm.confirm`, SLACK_LIMITS.confirmButton, add, { plainOnly: true });
    checkText(c.deny, `${where}.confirm.deny`, SLACK_LIMITS.confirmButton, add, { plainOnly: true });
  }
}

function checkText(t: unknown, where: string, max: number, add: (where: string, what: string) => void, options: { plainOnly?: boolean } = {}): void {
  if (!isObject(t)) return add(where, 'missing text object');
  if (t.type !== 'plain_text' && t.type !== 'mrkdwn') return add(`${where}.type`, `must be plain_text or mrkdwn, got ${JSON.stringify(t.type)}`);
  if (options.plainOnly && t.type !== 'plain_text') add(`${where}.type`, 'must be plain_text');
  if (typeof t.text !== 'string' || t.text.length === 0) return add(`${where}.text`, 'must be a non-empty string');
  if (t.text.trim() === '') add(`${where}.text`, 'is only whitespace');
  if (t.text.length > max) add(`${where}.text`, tooLong(t.text.length, max));
}

function tooLong(length: number, max: number): string {
  return `${length.toLocaleString('en-US')} characters, at most ${max.toLocaleString('en-US')}`;
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
