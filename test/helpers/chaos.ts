// Shared checks of the chaos suite (test/chaos-*.test.ts): the invariants
// every disaster must leave intact, over the example workflow 3001.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import pg from 'pg';
import type { Db } from '../../src/db/connect.ts';
import { computeLockKey } from '../../src/db/queries/locks.ts';
import type { PostingsTables } from '../../src/workflows/postings/schema.ts';
import { eventually } from './cli.ts';

export { createRandom } from '../../src/workflows/postings/demo.ts';

export async function interactionStatuses(db: Db<PostingsTables>, runId?: number): Promise<Record<string, number>> {
  let query = db
    .selectFrom('interactions')
    .select(['status', sql<number>`count(*)::int`.as('n')])
    .groupBy('status');
  if (runId !== undefined) query = query.where('run_id', '=', runId);
  return Object.fromEntries((await query.execute()).map((r) => [r.status, r.n]));
}

/** Every completed interaction has its domain write, and no domain write lacks one: one to one per step. */
export async function assertDomainMatchesInteractions(db: Db<PostingsTables>): Promise<void> {
  const { rows } = await sql<{ step: string; domain: number; completed: number; distinct_subjects: number }>`
    SELECT s.step,
           (SELECT count(*) FROM postings WHERE CASE s.step WHEN 'summary' THEN summary IS NOT NULL
                                                           WHEN 'skills' THEN skills IS NOT NULL
                                                           ELSE ihl_score IS NOT NULL END)::int AS domain,
           (SELECT count(*) FROM interactions i WHERE i.step = s.step AND i.status = 'completed')::int AS completed,
           (SELECT count(DISTINCT subject_id) FROM interactions i WHERE i.step = s.step AND i.status = 'completed')::int AS distinct_subjects
      FROM (VALUES ('summary'), ('skills'), ('ihl')) AS s(step)`.execute(db);
  for (const row of rows) {
    assert.equal(row.completed, row.domain, `${row.step}: completed interactions = domain writes`);
    assert.equal(row.distinct_subjects, row.completed, `${row.step}: no subject completed twice`);
  }
}

export async function completedCount(db: Db<PostingsTables>, runId?: number): Promise<number> {
  return (await interactionStatuses(db, runId)).completed ?? 0;
}

/** The id of a running run of 3001 with at least `min` completed interactions of its own. */
export async function waitForRunProgress(db: Db<PostingsTables>, min: number, timeoutMs = 30_000): Promise<number> {
  return eventually(
    async () => {
      const row = await db.selectFrom('workflow_runs').select('id').where('status', '=', 'running').where('workflow_id', '=', 3001).executeTakeFirst();
      if (!row) return undefined;
      return (await completedCount(db, row.id)) >= min ? row.id : undefined;
    },
    `a running run with ${min} completed interactions`,
    timeoutMs,
  );
}

/** Resolves when no session holds workflow 3001's batch lock (probed with a try-lock, released at once). */
export async function waitForLockFree(url: string, db: Db<PostingsTables>, timeoutMs = 5_000): Promise<number> {
  const key = await computeLockKey(db, 3001, null);
  const probe = new pg.Client({ connectionString: url, application_name: 'chaos-probe' });
  probe.on('error', () => {});
  await probe.connect();
  const started = performance.now();
  try {
    await eventually(async () => (await probe.query('SELECT pg_try_advisory_lock($1::bigint) AS ok', [key])).rows[0].ok, 'the lock to be free', timeoutMs);
    await probe.query('SELECT pg_advisory_unlock($1::bigint)', [key]);
    return performance.now() - started;
  } finally {
    await probe.end().catch(() => {});
  }
}

export async function pendingPostings(db: Db<PostingsTables>): Promise<number> {
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM postings WHERE ihl_score IS NULL`.execute(db);
  return rows[0]!.n;
}

/** Appends a line to the file named by CHAOS_FIGURES (if set), for bench/RESULTS.md. */
export async function recordFigure(name: string, figures: Record<string, unknown>): Promise<void> {
  const line = `CHAOS_FIGURES ${JSON.stringify({ name, ...figures })}`;
  process.stderr.write(`${line}\n`);
  const file = process.env.CHAOS_FIGURES;
  if (file) await (await import('node:fs/promises')).appendFile(file, `${line}\n`);
}
