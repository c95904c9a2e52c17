import type { Kysely, Migration, SelectQueryBuilder, Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { ZodType } from 'zod';
import type { Config } from '../config.ts';
import type { Schedule } from '../lib/cron.ts';

export { OverloadError } from '../lib/overload.ts';

/**
 * The workflow definition API.
 *
 * A workflow is a numbered pipeline of steps over subjects (rows of a domain
 * table, identified by a bigint id). Each step says which subjects are pending
 * for it, how to process one, and how to save a batch of results.
 *
 * Delivery is at-least-once: after a crash or a force, a subject whose handler
 * had started may be handled again. Handlers must therefore be idempotent
 * (calling a model twice is fine; charging a card twice is not), and `save`
 * must be safe to apply to a subject whose result is already there.
 */

/** Every pending query selects the subject's id as `subject_id`, plus the handler's input. */
export type PendingRow = { subject_id: number | string | bigint };

/** A count as the driver returns it: bigint and numeric come back as strings. */
export type PendingCount = number | string | bigint | null;

export interface StepContext {
  /** Aborted on stop, force, shutdown, a lost lock connection, or the item's timeout. */
  signal: AbortSignal;
  subjectId: number;
  /** 1 for the first try. */
  attempt: number;
  log: Logger;
}

export interface CompletedItem<Output> {
  subjectId: number;
  interactionId: number;
  output: Output;
}

export interface StepDefinition<DB, Input extends object, Output> {
  name: string;
  /**
   * The subjects that still need this step, with the handler's input. The
   * engine wraps it as a subquery (keyset pagination on subject_id, claim
   * exclusion), so keep it a plain filter: an index on the filtered column
   * (or a partial index) is what keeps claiming fast on large tables.
   */
  pending: (db: Kysely<DB>) => SelectQueryBuilder<DB, any, PendingRow & Input>;
  /**
   * Optional: how many subjects `pending` returns over the whole table, read
   * from somewhere cheaper than counting them (counters kept by triggers, as
   * in the example's migrations/0008_postings_counters.ts). One row whose
   * `pending` column is the number. Used for the expected work of
   * global_batch runs, `workflows` and the continuous checks; without it,
   * and for a single_subject run, the engine counts `pending` itself
   * (`SELECT count(*) FROM (pending)`, which reads every pending row).
   *
   * It must equal that count in the snapshot it runs in, committed writes
   * and rolled-back ones alike, or the audit's expected work is wrong.
   */
  pendingCount?: (db: Kysely<DB>) => SelectQueryBuilder<DB, any, { pending: PendingCount }>;
  /**
   * Processes one subject. Honour `ctx.signal`: it is how stop and timeouts
   * reach you. Throw an OverloadError when the service says it is overloaded
   * (HTTP 429 or 503, a Retry-After): the item is retried, no sooner than the
   * Retry-After, and an adaptive concurrency backs off.
   */
  handle: (input: Input, ctx: StepContext) => Promise<Output>;
  /** When given, an output that does not parse fails the interaction. */
  output?: ZodType<Output>;
  /**
   * Writes a batch of results in the same transaction that completes their
   * interactions. After it, those subjects must no longer be pending for this
   * step.
   */
  save: (tx: Transaction<DB>, items: CompletedItem<Output>[]) => Promise<void>;
}

export type AnyStep<DB> = StepDefinition<DB, any, any>;

/** An external service a workflow depends on (a model server, an API), probed by the health monitor. */
export interface ExternalService {
  name: string;
  /** Resolves when the service answers; rejects (or outlasts the signal) when it is down. */
  probe: (signal: AbortSignal) => Promise<void>;
}

/**
 * A continuous workflow is started by the service when new work arrives:
 * a trigger on `table` sends NOTIFY on insert or update, bursts are
 * coalesced for `debounceMs`, and a periodic pending-work check every
 * `checkIntervalMs` catches a missed notification. Runs still follow every
 * rule (lock, rate limit, audit, notifications).
 */
export interface ContinuousOptions {
  /** The subject table whose changes mean new work, e.g. "postings". */
  table: string;
  /** Default 2 s. */
  debounceMs?: number;
  /** Default 60 s. */
  checkIntervalMs?: number;
}

export interface WorkflowDefinition<DB = any> {
  /** The number people type: `/workflow run 3001`. */
  id: number;
  /** A second handle for the grammar: lowercase letters, digits and dashes. */
  name: string;
  description?: string;
  /** What one subject is called in messages, e.g. "posting". */
  subject: string;
  steps: AnyStep<DB>[];
  /**
   * One row of named numbers describing the domain's state; snapshotted before
   * and after each run to compute the delta, so it must be exact. It runs at
   * every start and end: one query with FILTER clauses scans the table once,
   * which is fine for small tables; at a million rows, read counters kept by
   * triggers instead (the example's migrations/0008_postings_counters.ts).
   */
  metrics: (db: Kysely<DB>) => SelectQueryBuilder<DB, any, Record<string, unknown>>;
  /**
   * Handlers running at once. Default 8. `'auto'`: as many as the service
   * the handlers call takes without queueing them, found from the calls'
   * latency and adjusted as it changes (raised while latency stays flat,
   * lowered when it climbs or a handler throws an OverloadError), between 1
   * and `maxConcurrency`, per run in each instance (docs/workflows.md).
   */
  concurrency?: number | 'auto';
  /** With `concurrency: 'auto'`: the most handlers at once. Default 64. */
  maxConcurrency?: number;
  /** At most one global_batch start per this many seconds. Default 60. */
  rateLimitSeconds?: number;
  /** Per-item handler timeout. Default 30 s. */
  timeoutMs?: number;
  /** Retries after a failed attempt. Default 2. */
  retries?: number;
  /** First retry delay, doubled on each further retry. Default 1 s. */
  retryBackoffMs?: number;
  /** Subjects claimed, and results committed, per statement. Default 500. */
  batchSize?: number;
  /** Start runs when new work arrives (see ContinuousOptions). */
  continuous?: ContinuousOptions;
  /**
   * Start a global_batch on a cron schedule, in a time zone (UTC when
   * absent), e.g. { cron: '0 3 * * *', timezone: 'Europe/Paris' }; the
   * leading serving instance starts it under the usual rules, as `schedule`
   * (docs/workflows.md, "Schedules"). WORKFLOW_SCHEDULES overrides it.
   */
  schedule?: Schedule;
  /** External services to probe for the health monitor. */
  services?: ExternalService[];
  /** The workflow's own schema (its domain tables), applied at start-up in its own history (see WorkflowMigrations). */
  migrations?: WorkflowMigrations;
  /**
   * Whether a serving instance that defines this workflow takes a run over
   * when its owner is lost or shuts down (docs/architecture.md, Adoption).
   * Default true; false: such a run ends `abandoned` or `stopped` and waits
   * for a resume.
   */
  adopt?: boolean;
  /** Adoptions in a row without progress before the run ends `abandoned` (crash_loop). Default WORKFLOW_MAX_ADOPTIONS (3). */
  maxAdoptions?: number;
  /**
   * Whether every serving instance that defines this workflow works on its
   * running batches beside their owner, each with its own `concurrency`
   * (docs/architecture.md, Participants). Default false: a run is its
   * owner's alone; turn it on for handlers that may run on any instance.
   */
  distributed?: boolean;
  /**
   * A distributed run's cap on handler calls in flight over all its
   * instances: an instance joins only while the owner's `concurrency`, the
   * participants' and its own stay within it. Default: no cap.
   */
  runConcurrency?: number;
  /**
   * Two-person approval for `force`: a force is filed as a request that a
   * different admin must approve (Slack's Approve button, or `force --approve
   * <request>`) before it expires, 15 minutes after it is filed unless
   * `expiresAfterSeconds` says otherwise (docs/workflows.md, "Force approval").
   * Default false.
   */
  forceApproval?: boolean | { expiresAfterSeconds: number };
}

/**
 * A workflow's own migrations, so that a workflow and its tables are one
 * folder. Either a folder of migration files (a path relative to the module
 * file listed in WORKFLOW_MODULES, an absolute path, or a file: URL such as
 * `new URL('./migrations/', import.meta.url)`), each file exporting
 * `up(db)` and optionally `down(db)`, named by its file name without the
 * extension and applied in name order; or the migrations themselves, by name.
 * They are applied at start-up after the engine's (those pending at once in
 * one transaction) and recorded in the table `workflow_<id>_migrations`
 * (docs/workflows.md, "A workflow's own tables").
 */
export type WorkflowMigrations = string | URL | Record<string, Migration>;

/** Everything a workflow module may need from the process that loads it. */
export interface WorkflowEnvironment {
  config: Config;
  log: Logger;
}

/** A module's default export: a definition, or a factory that receives the environment. */
export type WorkflowModuleExport<DB = any> = WorkflowDefinition<DB> | ((env: WorkflowEnvironment) => WorkflowDefinition<DB>);

export function defineWorkflow<DB>(definition: WorkflowDefinition<DB>): WorkflowDefinition<DB> {
  return definition;
}

export function defineStep<DB, Input extends object, Output>(step: StepDefinition<DB, Input, Output>): StepDefinition<DB, Input, Output> {
  return step;
}

/** A definition with every default filled in, as the engine uses it. */
export type ResolvedWorkflow<DB = any> = Required<
  Omit<WorkflowDefinition<DB>, 'description' | 'continuous' | 'schedule' | 'services' | 'migrations' | 'maxAdoptions' | 'runConcurrency' | 'forceApproval'>
> & {
  /** undefined: a force needs no approval. */
  forceApproval: { expiresAfterSeconds: number } | undefined;
  description: string;
  continuous: ContinuousOptions | undefined;
  schedule: Schedule | undefined;
  services: ExternalService[];
  /** undefined: the engine's WORKFLOW_MAX_ADOPTIONS. */
  maxAdoptions: number | undefined;
  runConcurrency: number | undefined;
};

/** How long a force request waits for its approval unless the workflow says otherwise. */
export const FORCE_APPROVAL_SECONDS = 15 * 60;

export function resolveDefaults<DB>(definition: WorkflowDefinition<DB>): ResolvedWorkflow<DB> {
  // Migrations are applied before the engine starts; runs have no use for them.
  const { migrations: _applied, forceApproval, ...rest } = definition;
  return {
    forceApproval:
      forceApproval === true
        ? { expiresAfterSeconds: FORCE_APPROVAL_SECONDS }
        : forceApproval
          ? { expiresAfterSeconds: forceApproval.expiresAfterSeconds }
          : undefined,
    description: '',
    concurrency: 8,
    maxConcurrency: 64,
    rateLimitSeconds: 60,
    timeoutMs: 30_000,
    retries: 2,
    retryBackoffMs: 1_000,
    batchSize: 500,
    continuous: undefined,
    schedule: undefined,
    services: [],
    adopt: true,
    maxAdoptions: undefined,
    distributed: false,
    runConcurrency: undefined,
    ...rest,
  };
}
