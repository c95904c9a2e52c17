import type { StepProgress } from '../db/schema.ts';
import type { ResolvedWorkflow } from '../workflows/define.ts';

// The runner's in-memory picture of the work it holds: claimed pages, their
// items, and how far each item got. Shared by the runner (which claims and
// runs items) and the completer (which commits them and ends pages).

/** The handler calls one instance's runner of the workflow may have in flight at once: its concurrency, or the most 'auto' may reach. */
export function handlerSlots(workflow: ResolvedWorkflow): number {
  return workflow.concurrency === 'auto' ? workflow.maxConcurrency : workflow.concurrency;
}

/** One step of the running workflow, with its counters. */
export interface StepRun {
  definition: ResolvedWorkflow['steps'][number];
  name: string;
  previousStep: string | null;
  counter: StepProgress;
  /** Subjects that failed in this run: not claimed again by it. */
  failedSubjects: number[];
}

/** A claimed range of a step's subjects (one interaction_claims row). */
export interface Page {
  claimId: number;
  step: StepRun;
  items: Item[];
  /** Items not yet committed; the claim ends when this reaches 0. */
  open: number;
}

/** queued → running → finished (its result buffered in the completer) → committed. */
export type ItemState = 'queued' | 'running' | 'finished' | 'committed';

export interface Item {
  page: Page;
  subjectId: number;
  input: unknown;
  /** The input as the database rendered it, written back verbatim. */
  inputJson: string;
  /** A pending interaction left by an earlier run, adopted by this one. */
  pendingId: number | null;
  claimedAtMs: number;
  /** Handler calls made so far. */
  attempts: number;
  state: ItemState;
  /** The accepted output (checked by the step's schema) and its JSON text, once a call succeeded. */
  output: unknown;
  outputJson: string | null;
}

/** An item's outcome, on its way to the database (a completed item's output is on the item). */
export interface Result {
  item: Item;
  status: 'completed' | 'failed';
  error: string | null;
}
