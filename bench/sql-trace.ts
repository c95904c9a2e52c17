// Statement timings for a benchmark run, without touching src/: wraps
// pg.Client.prototype.query (which kysely's PostgresDriver calls) and the
// pools' PreparingClient's own query (src/db/prepared.ts) to time every
// statement by kind, and can EXPLAIN (ANALYZE, BUFFERS) the n-th statement of a
// kind on the same connection just before it runs, inside a savepoint (or a
// transaction) that is rolled back, so the run itself is unaffected apart from
// the time taken.
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { PreparingClient } from '../src/db/prepared.ts';

export interface Classifier {
  name: string;
  test: (sql: string) => boolean;
}

export interface KindStats {
  count: number;
  rows: number;
  totalMs: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
  /** Mean of the first and of the last tenth of the calls, in call order: growth over the run. */
  firstTenthMeanMs: number;
  lastTenthMeanMs: number;
}

export interface SqlTrace {
  stats(): Record<string, KindStats>;
  /** EXPLAIN output per kind (only kinds asked for in `explain`). */
  explains(): Record<string, string>;
  /** The slowest statements of the run (any kind), slowest first, their text cut to 160 characters. */
  slowest(): { kind: string; ms: number; text: string }[];
  restore(): void;
}

const SLOWEST_KEPT = 5;

type QueryFn = (this: pg.Client, ...args: unknown[]) => unknown;

export function traceSql(classifiers: Classifier[], options: { explain?: { kinds: string[]; occurrence: number } } = {}): SqlTrace {
  // Both prototypes have a query of their own: PreparingClient's calls pg's
  // original, captured when it loaded, so no statement is counted twice.
  const protos = [pg.Client.prototype, PreparingClient.prototype] as unknown as { query: QueryFn }[];
  const originals = protos.map((proto) => proto.query);
  const original = originals[0]!;
  const samples = new Map<string, number[]>();
  const rowCounts = new Map<string, number>();
  const seen = new Map<string, number>();
  const explained = new Map<string, string>();
  const slowest: { kind: string; ms: number; text: string }[] = [];
  const inTransaction = new WeakSet<object>();
  const explainKinds = new Set(options.explain?.kinds ?? []);
  const occurrence = options.explain?.occurrence ?? 1;

  const classify = (text: string): string => {
    for (const c of classifiers) if (c.test(text)) return c.name;
    return 'other';
  };

  async function explain(client: pg.Client, kind: string, text: string, values: unknown[] | undefined): Promise<void> {
    const inTx = inTransaction.has(client);
    const query = (q: string, v?: unknown[]) => original.call(client, q, v) as Promise<pg.QueryResult>;
    await query(inTx ? 'SAVEPOINT bench_explain' : 'BEGIN');
    try {
      const result = await query(`EXPLAIN (ANALYZE, BUFFERS, VERBOSE OFF) ${text}`, values);
      explained.set(kind, result.rows.map((r: Record<string, string>) => shorten(r['QUERY PLAN'] ?? '')).join('\n'));
    } catch (error) {
      explained.set(kind, `EXPLAIN failed: ${(error as Error).message}`);
    } finally {
      await query(inTx ? 'ROLLBACK TO SAVEPOINT bench_explain' : 'ROLLBACK');
    }
  }

  const traced = (original: QueryFn) =>
    function (this: pg.Client, ...args: unknown[]): unknown {
      const [text, values, callback] = args;
      if (typeof text !== 'string' || typeof values === 'function' || callback !== undefined) return original.apply(this, args);
      const lowered = text.trimStart().slice(0, 10).toLowerCase();
      if (lowered.startsWith('begin')) inTransaction.add(this);
      else if (lowered.startsWith('commit') || lowered.startsWith('rollback')) inTransaction.delete(this);
      const kind = classify(text);
      const n = (seen.get(kind) ?? 0) + 1;
      seen.set(kind, n);
      const run = async (): Promise<unknown> => {
        if (n === occurrence && explainKinds.has(kind)) await explain(this, kind, text, values as unknown[] | undefined);
        const started = performance.now();
        const result = (await original.call(this, text, values)) as pg.QueryResult;
        let list = samples.get(kind);
        if (!list) samples.set(kind, (list = []));
        const ms = performance.now() - started;
        list.push(ms);
        if (slowest.length < SLOWEST_KEPT || ms > slowest[slowest.length - 1]!.ms) {
          slowest.push({ kind, ms: round(ms), text: text.replace(/\s+/g, ' ').trim().slice(0, 160) });
          slowest.sort((a, b) => b.ms - a.ms);
          slowest.length = Math.min(slowest.length, SLOWEST_KEPT);
        }
        rowCounts.set(kind, (rowCounts.get(kind) ?? 0) + (result?.rowCount ?? 0));
        return result;
      };
      return run();
    };
  protos.forEach((proto, k) => {
    proto.query = traced(originals[k]!);
  });

  return {
    stats() {
      const out: Record<string, KindStats> = {};
      for (const [kind, list] of samples) {
        const sorted = [...list].sort((a, b) => a - b);
        const tenth = Math.max(1, Math.floor(list.length / 10));
        const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
        const total = sorted.reduce((s, x) => s + x, 0);
        const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
        out[kind] = {
          count: sorted.length,
          rows: rowCounts.get(kind) ?? 0,
          totalMs: round(total),
          meanMs: round(total / sorted.length),
          p50Ms: round(at(0.5)),
          p95Ms: round(at(0.95)),
          maxMs: round(sorted[sorted.length - 1] ?? 0),
          firstTenthMeanMs: round(mean(list.slice(0, tenth))),
          lastTenthMeanMs: round(mean(list.slice(-tenth))),
        };
      }
      return out;
    },
    explains() {
      return Object.fromEntries(explained);
    },
    slowest() {
      return [...slowest];
    },
    restore() {
      protos.forEach((proto, k) => {
        proto.query = originals[k]!;
      });
    },
  };
}

/** Plans quote every array element of a 500-id parameter; keep lines readable. */
function shorten(line: string): string {
  return line.length <= 200 ? line : `${line.slice(0, 197)}…`;
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

export function formatStats(stats: Record<string, KindStats>): string {
  const header = ['kind', 'count', 'rows', 'total ms', 'mean ms', 'p50 ms', 'p95 ms', 'max ms', 'first 10% ms', 'last 10% ms'];
  const rows = Object.entries(stats)
    .sort((a, b) => b[1].totalMs - a[1].totalMs)
    .map(([kind, s]) =>
      [
        kind,
        s.count,
        s.rows,
        s.totalMs.toFixed(0),
        s.meanMs.toFixed(2),
        s.p50Ms.toFixed(2),
        s.p95Ms.toFixed(2),
        s.maxMs.toFixed(2),
        s.firstTenthMeanMs.toFixed(2),
        s.lastTenthMeanMs.toFixed(2),
      ].map(String),
    );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatSlowest(list: { kind: string; ms: number; text: string }[]): string {
  return list.map((s) => `${s.ms.toFixed(0).padStart(8)} ms  [${s.kind}]  ${s.text}`).join('\n');
}

/**
 * The engine's own statements by kind, in the order they must be tested (the
 * claim, the completion and the release all start with the fence CTE).
 * Benchmarks add their domain's statements (save, metrics) to these.
 */
export const ENGINE_STATEMENTS: Classifier[] = [
  { name: 'claim page (INSERT interaction_claims)', test: (s) => s.includes('INSERT INTO interaction_claims') },
  { name: 'read claimed page', test: (s) => s.includes('AS "inputJson"') && s.includes("status = 'pending'") },
  { name: 'complete (INSERT interactions)', test: (s) => s.includes('INSERT INTO interactions') && s.includes('inserted AS') },
  { name: 'release claims', test: (s) => s.includes('DELETE FROM interaction_claims') && !s.includes('inserted AS') },
  { name: 'pending range', test: (s) => s.includes('ORDER BY p.subject_id DESC LIMIT 1') },
  { name: 'begin', test: (s) => s === 'begin' },
  { name: 'commit', test: (s) => s === 'commit' },
  { name: 'heartbeat', test: (s) => /^update "workflow_runs" set "heartbeat_at"/i.test(s) },
  { name: 'count pending', test: (s) => s.startsWith('SELECT count(*)::int AS n FROM (') },
];

/** The kinds `--explain K` looks at. */
export const EXPLAINED_ENGINE_STATEMENTS = ['claim page (INSERT interaction_claims)', 'read claimed page', 'complete (INSERT interactions)'];
