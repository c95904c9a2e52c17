// The package's public entry, `import … from 'workflow-chatops'`: what a
// workflow module needs to define a workflow, with its types. `sql` and the
// Kysely types a definition uses are re-exported, as is `z` for output
// schemas, so that a module needs no dependency of its own and uses the same
// kysely and zod as the engine that runs it.
export { sql } from 'kysely';
export type { ColumnType, Generated, Insertable, Kysely, Migration, Selectable, Transaction, Updateable } from 'kysely';
export { z } from 'zod';
export type { Config } from './config.ts';
export { defineStep, defineWorkflow, OverloadError } from './workflows/define.ts';
export type {
  CompletedItem,
  ContinuousOptions,
  ExternalService,
  PendingCount,
  PendingRow,
  StepContext,
  StepDefinition,
  WorkflowDefinition,
  WorkflowEnvironment,
  WorkflowMigrations,
  WorkflowModuleExport,
} from './workflows/define.ts';
