import { sql } from 'kysely';
import { z } from 'zod';
import { defineStep, type StepContext } from '../define.ts';
import type { PostingsTables } from './schema.ts';

// Step 1: a short summary of the posting's description.

export const summaryOutput = z.object({ summary: z.string().max(2_000) });
export type SummaryInput = { description: string };
export type SummaryOutput = z.infer<typeof summaryOutput>;

export function summaryStep(handle: (input: SummaryInput, ctx: StepContext) => Promise<SummaryOutput>) {
  return defineStep<PostingsTables, SummaryInput, SummaryOutput>({
    name: 'summary',
    // Matches the partial index postings_pending_summary.
    pending: (db) => db.selectFrom('postings').select(['id as subject_id', 'description']).where('summary', 'is', null),
    // The same set, from the counters the triggers keep (migrations/0008).
    pendingCount: (db) => db.selectFrom('postings_counters').select((eb) => eb.fn.sum<string>('pending_summary').as('pending')),
    handle,
    output: summaryOutput,
    async save(tx, items) {
      if (items.length === 0) return;
      await sql`
        UPDATE postings AS p
           SET summary = v.summary, summarized_at = now()
          FROM unnest(${items.map((i) => i.subjectId)}::bigint[], ${items.map((i) => i.output.summary)}::text[]) AS v (id, summary)
         WHERE p.id = v.id`.execute(tx);
    },
  });
}
