import type { ColumnType, Generated } from 'kysely';

// Table types of the example's domain table (migrations/0002_postings.ts).

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

export interface PostingsTables {
  postings: PostingsTable;
}
