// Chaos: 10,000 generated command strings (random bytes, unicode, oversized,
// flag soup; seeded, so a failure reproduces) through the parser and the
// command service. Nothing crashes, every one is answered, and nothing changes
// but audit entries (one per refused or invalid request).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { parseCommand } from '../src/commands/grammar.ts';
import type { Actor } from '../src/commands/service.ts';
import type { CommandResult } from '../src/commands/results.ts';
import { createItems, itemsWorkflow } from './fixtures/items-workflow.ts';
import { createRandom, recordFigure } from './helpers/chaos.ts';
import { testEngine, type TestEngine } from './helpers/engine.ts';

const COUNT = Number(process.env.CHAOS_FUZZ_COUNT ?? 10_000);
const SEED = Number(process.env.CHAOS_SEED ?? 20261125);
const KNOWN = 9400;

const VERBS = [
  'run',
  'force',
  'list',
  'stop',
  'status',
  'history',
  'workflows',
  'help',
  'health',
  'pause',
  'resume',
  'serve',
  'migrate',
  'demo',
  'db-stop',
  'RUN',
  'Stop',
  'frobnicate',
  '',
];
const FLAGS = [
  '--mode',
  '--subject',
  '--run',
  '--force',
  '--detach',
  '--json',
  '--posting-id',
  '--workflow-run-id',
  '--limit',
  '--postings',
  '--bogus',
  '--',
  '-',
  '--=',
  '--mode=',
  '--mode=single_run',
  '-f',
  '—mode',
  '--MODE',
];
const VALUES = [
  'global_batch',
  'single_subject',
  'single_run',
  'single_posting',
  '0',
  '-1',
  '1',
  '42',
  '999999999999999999999',
  '1e9',
  '0x10',
  'NaN',
  '3.5',
  '',
  '""',
  "'",
  '`rm -rf`',
  '${HOME}',
  '%s',
  '\\',
  'null',
  'undefined',
  '<@U123>',
  '<#C1|x>',
  '&amp;',
  '*bold*',
];
// Unknown to the service (so an unrestricted actor cannot start or pause anything): the known workflow is 9400 "items".
const WORKFLOW_REFS = ['3001', '1', '0', '-3', 'postings', 'nope', '9401', '٣٠٠١', '３００１', 'ıtems'];
const UNICODE = [
  'é',
  'ß',
  'Ω',
  '中文',
  '🚀',
  '👩‍👩‍👧',
  '\u200b',
  '\u202e',
  '\ufeff',
  '\u0000',
  '\ud800',
  '\udfff',
  '\t',
  '\n',
  '\r\n',
  '\u00a0',
  '\u2028',
  '\\u0000',
  'İ',
  'ﬀ',
];

function generator(seed: number) {
  const random = createRandom(seed);
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const ascii = (n: number) => Array.from({ length: n }, () => String.fromCharCode(32 + int(95))).join('');
  const codepoints = (n: number) =>
    Array.from({ length: n }, () => {
      const r = random();
      if (r < 0.3) return pick(UNICODE);
      if (r < 0.5) return String.fromCharCode(int(0x10000)); // any UTF-16 unit, lone surrogates included
      return String.fromCodePoint(int(0x10ffff + 1));
    }).join('');
  const soup = (refs: string[]) => {
    const parts: string[] = [pick(VERBS)];
    if (random() < 0.7) parts.push(pick(refs));
    for (let i = int(8); i > 0; i--) {
      parts.push(pick(FLAGS));
      if (random() < 0.7) parts.push(random() < 0.8 ? pick(VALUES) : codepoints(1 + int(4)));
    }
    return parts.join(random() < 0.9 ? ' ' : pick(['  ', '\t', '\u00a0', '\n']));
  };
  return (refs: string[]): string => {
    const r = random();
    if (r < 0.2) return ascii(int(80));
    if (r < 0.35) return codepoints(int(40));
    if (r < 0.37) return (random() < 0.5 ? 'run 3001 ' : '') + ascii(1_000 + int(100_000)); // oversized
    if (r < 0.39) return Array.from({ length: 200 + int(2_000) }, () => pick(FLAGS)).join(' ');
    return soup(refs);
  };
}

describe('fuzzed commands', () => {
  let t: TestEngine;
  before(async () => {
    const workflow = itemsWorkflow({ id: KNOWN, name: 'items', handle: async ({ id }) => `done ${id}` });
    t = await testEngine('chaos_fuzz', [workflow], (db) => createItems(db, 10));
  });
  after(async () => {
    await t?.close();
  });

  const state = async () => {
    const { rows } = await sql<Record<string, number>>`
      SELECT (SELECT count(*) FROM workflow_runs)::int AS runs, (SELECT count(*) FROM interactions)::int AS interactions,
             (SELECT count(result) FROM items)::int AS items_done, (SELECT count(*) FROM audit_log)::int AS audit,
             (SELECT count(*) FROM workflows)::int AS workflows`.execute(t.db);
    return rows[0]!;
  };

  test(`${COUNT} generated command strings: no crash, every one answered, only audit entries written`, async () => {
    const next = generator(SEED);
    const viewer: Actor = { id: 'UFUZZ', source: 'slack', roles: new Set(['viewer']), channel: 'C0FUZZ' };
    const anyone: Actor = { id: 'fuzz@cli', source: 'cli' };
    const before = await state();
    const kinds: Record<string, number> = {};
    let audited = 0;
    const started = performance.now();
    // Generated in order (the seed decides every string), answered 16 at a time as a busy channel would be.
    const inputs = Array.from({ length: COUNT }, (_, i) => next(i % 2 === 0 ? [...WORKFLOW_REFS, String(KNOWN), 'items'] : WORKFLOW_REFS));
    const one = async (i: number) => {
      // Even: a viewer, who may name the real workflow (state-changing verbs are refused).
      // Odd: unrestricted, over workflows that do not exist (so nothing can start).
      const asViewer = i % 2 === 0;
      const text = inputs[i]!;
      for (const surface of ['chat', 'cli'] as const) {
        const parsed = parseCommand(surface === 'cli' ? text.split(' ') : text, { surface });
        assert.equal(typeof parsed.ok, 'boolean');
        if (!parsed.ok) assert.ok(parsed.error.length > 0 && parsed.error.length < 2_000, `#${i}: a short reason`);
      }
      let result: CommandResult;
      try {
        ({ result } = await t.service.handle(text, asViewer ? viewer : anyone, 'chat'));
      } catch (error) {
        assert.fail(`#${i} (seed ${SEED}) ${JSON.stringify(text.slice(0, 200))}: threw ${(error as Error).stack}`);
      }
      assert.ok(result && typeof result.kind === 'string', `#${i}: answered`);
      assert.notEqual(result.kind, 'run_started', `#${i}: ${JSON.stringify(text.slice(0, 200))} started a run`);
      assert.notEqual(result.kind, 'run_queued', `#${i}: queued a run`);
      kinds[result.kind] = (kinds[result.kind] ?? 0) + 1;
      if (result.kind === 'invalid' || result.kind === 'refused' || result.kind === 'not_found') audited++;
    };
    for (let i = 0; i < COUNT; i += 16) await Promise.all(Array.from({ length: Math.min(16, COUNT - i) }, (_, k) => one(i + k)));
    const elapsed = performance.now() - started;
    const afterState = await state();
    assert.deepEqual({ ...afterState, audit: 0 }, { ...before, audit: 0 }, 'no state change but audit entries');
    assert.equal(afterState.audit! - before.audit!, audited, 'one audit entry per refused or invalid request');
    await recordFigure('fuzz', { commands: COUNT, seed: SEED, seconds: +(elapsed / 1000).toFixed(1), kinds, auditEntries: audited });
  });
});
