import type { ColumnType, Generated } from 'kysely';

// Table types of the example's domain table (migrations/0002_postings.ts)
// and its counters (migrations/0008_postings_counters.ts).

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface PostingsTable {
  id: Generated<number>;
  title: string;
  company: string | null;
  location: string | null;
  description: string;
  summary: string | null;
  skills: string[] | null;
  ihl_score: number | null;
  summarized_at: Timestamp | null;
  skills_extracted_at: Timestamp | null;
  ihl_scored_at: Timestamp | null;
  created_at: Generated<Date>;
}

/**
 * One shard of the postings' counters (migrations/0008_postings_counters.ts):
 * triggers keep the sum over all shards equal to the count of postings in
 * each set, in every transaction's snapshot.
 */
export interface PostingsCountersTable {
  shard: number;
  total: ColumnType<string, never, never>;
  with_summary: ColumnType<string, never, never>;
  with_skills: ColumnType<string, never, never>;
  with_ihl: ColumnType<string, never, never>;
  pending_summary: ColumnType<string, never, never>;
  pending_skills: ColumnType<string, never, never>;
  pending_ihl: ColumnType<string, never, never>;
}

// A type, not an interface: Kysely's withTables<T>() takes only types with an
// index signature, which an interface never has.
export type PostingsTables = {
  postings: PostingsTable;
  postings_counters: PostingsCountersTable;
};
