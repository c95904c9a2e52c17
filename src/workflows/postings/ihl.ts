import { sql } from 'kysely';
import { z } from 'zod';
import { defineStep, type StepContext } from '../define.ts';
import type { PostingsTables } from './schema.ts';

// Step 3: the ihl score (0–100) from the skills and the summary.

export const ihlOutput = z.object({ ihl_score: z.number().int().min(0).max(100) });
export type IhlInput = { summary: string; skills: string[] };
export type IhlOutput = z.infer<typeof ihlOutput>;

export function ihlStep(handle: (input: IhlInput, ctx: StepContext) => Promise<IhlOutput>) {
  return defineStep<PostingsTables, IhlInput, IhlOutput>({
    name: 'ihl',
    // Matches the partial index postings_pending_ihl.
    pending: (db) =>
      db
        .selectFrom('postings')
        .select(['id as subject_id', 'summary', 'skills'])
        .where('summary', 'is not', null)
        .where('skills', 'is not', null)
        .where('ihl_score', 'is', null)
        .$narrowType<{ summary: string; skills: string[] }>(),
    // The same set, from the counters the triggers keep (migrations/0008).
    pendingCount: (db) => db.selectFrom('postings_counters').select((eb) => eb.fn.sum<string>('pending_ihl').as('pending')),
    handle,
    output: ihlOutput,
    async save(tx, items) {
      if (items.length === 0) return;
      await sql`
        UPDATE postings AS p
           SET ihl_score = v.score, ihl_scored_at = now()
          FROM unnest(${items.map((i) => i.subjectId)}::bigint[], ${items.map((i) => i.output.ihl_score)}::integer[]) AS v (id, score)
         WHERE p.id = v.id`.execute(tx);
    },
  });
}
