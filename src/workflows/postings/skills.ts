import { sql } from 'kysely';
import { z } from 'zod';
import { defineStep, type StepContext } from '../define.ts';
import type { PostingsTables } from './schema.ts';
import { MAX_SKILL_LENGTH, MAX_SKILLS } from './model.ts';

// Step 2: the skills the summary asks for.

export const skillsOutput = z.object({
  skills: z.array(z.string().trim().min(1).max(MAX_SKILL_LENGTH)).max(MAX_SKILLS),
});
export type SkillsInput = { summary: string };
export type SkillsOutput = z.infer<typeof skillsOutput>;

export function skillsStep(handle: (input: SkillsInput, ctx: StepContext) => Promise<SkillsOutput>) {
  return defineStep<PostingsTables, SkillsInput, SkillsOutput>({
    name: 'skills',
    // Matches the partial index postings_pending_skills.
    pending: (db) =>
      db
        .selectFrom('postings')
        .select(['id as subject_id', 'summary'])
        .where('summary', 'is not', null)
        .where('skills', 'is', null)
        .$narrowType<{ summary: string }>(),
    // The same set, from the counters the triggers keep (migrations/0008).
    pendingCount: (db) => db.selectFrom('postings_counters').select((eb) => eb.fn.sum<string>('pending_skills').as('pending')),
    handle,
    output: skillsOutput,
    async save(tx, items) {
      if (items.length === 0) return;
      // Each posting has a list of its own length, and a text[][] must be
      // rectangular, so each list travels as one jsonb value and is unpacked
      // here. An empty list is saved as '{}', which ends the step too.
      await sql`
        UPDATE postings AS p
           SET skills = ARRAY(SELECT jsonb_array_elements_text(v.skills)),
               skills_extracted_at = now()
          FROM unnest(${items.map((i) => i.subjectId)}::bigint[], ${items.map((i) => JSON.stringify(i.output.skills))}::jsonb[]) AS v (id, skills)
         WHERE p.id = v.id`.execute(tx);
    },
  });
}
