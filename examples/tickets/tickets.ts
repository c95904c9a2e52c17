import { defineStep, defineWorkflow, type Generated, sql, type WorkflowEnvironment, z } from 'workflow-chatops';

// Workflow 4001: support tickets triaged in two steps, `category` (from the
// ticket's text) and then `priority` (from the category and the text). The
// handlers are plain functions here; in a real project they would call a
// model or a service, passing on ctx.signal. The table comes with the
// workflow: ./migrations, applied when the tool starts.

export interface TicketsTables {
  tickets: {
    id: Generated<string>;
    body: string;
    category: string | null;
    priority: number | null;
    created_at: Generated<Date>;
  };
}

const CATEGORIES: [category: string, words: RegExp][] = [
  ['billing', /charged|refund|invoice|subscription|payment/i],
  ['bug', /crash|error|fails|broken|500/i],
  ['question', /how do i|where can i|\?$/i],
];

const category = defineStep<TicketsTables, { body: string }, { category: string }>({
  name: 'category',
  // Backed by the partial index tickets_pending_category.
  pending: (db) => db.selectFrom('tickets').select(['id as subject_id', 'body']).where('category', 'is', null),
  handle: async ({ body }) => ({ category: CATEGORIES.find(([, words]) => words.test(body))?.[0] ?? 'other' }),
  output: z.object({ category: z.string() }),
  async save(tx, items) {
    await sql`
      UPDATE tickets AS t SET category = v.category
        FROM unnest(${items.map((i) => i.subjectId)}::bigint[], ${items.map((i) => i.output.category)}::text[]) AS v (id, category)
       WHERE t.id = v.id`.execute(tx);
  },
});

const priority = defineStep<TicketsTables, { category: string; body: string }, { priority: number }>({
  name: 'priority',
  pending: (db) =>
    db
      .selectFrom('tickets')
      .select(['id as subject_id', 'category', 'body'])
      .where('category', 'is not', null)
      .where('priority', 'is', null)
      .$narrowType<{ category: string }>(),
  handle: async ({ category, body }) => ({ priority: category === 'bug' ? (/500|crash/i.test(body) ? 1 : 2) : category === 'billing' ? 2 : 3 }),
  output: z.object({ priority: z.number().int().min(1).max(3) }),
  async save(tx, items) {
    await sql`
      UPDATE tickets AS t SET priority = v.priority
        FROM unnest(${items.map((i) => i.subjectId)}::bigint[], ${items.map((i) => i.output.priority)}::smallint[]) AS v (id, priority)
       WHERE t.id = v.id`.execute(tx);
  },
});

// A factory: it receives the tool's configuration and logger.
export default ({ log }: WorkflowEnvironment) => {
  log.debug({ workflow: 4001 }, 'tickets-triage loaded');
  return defineWorkflow<TicketsTables>({
    id: 4001,
    name: 'tickets-triage',
    description: 'Categorise support tickets, then give each a priority (1 highest)',
    subject: 'ticket',
    migrations: './migrations',
    concurrency: 4,
    steps: [category, priority],
    metrics: (db) =>
      db
        .selectFrom('tickets')
        .select((eb) => [
          eb.fn.countAll<string>().as('tickets_total'),
          eb.fn.count<string>('category').as('tickets_categorised'),
          eb.fn.count<string>('priority').as('tickets_prioritised'),
        ]),
  });
};
