import { defineWorkflow, type ExternalService, type WorkflowDefinition, type WorkflowEnvironment } from '../define.ts';
import { createOllamaProbe, ollamaFromConfig } from '../ollama.ts';
import { ihlStep } from './ihl.ts';
import { extractSkills, scoreIhl, summarize } from './local.ts';
import { extractSkillsWithModel, summarizeWithModel } from './model.ts';
import type { PostingsTables } from './schema.ts';
import { skillsStep } from './skills.ts';
import { summaryStep } from './summary.ts';

// The example workflow 3001: job postings carried through summary → skills →
// ihl score. Local handlers by default; summary and skills ask Ollama when
// OLLAMA_URL is set (the production shape).

export const POSTINGS_WORKFLOW_ID = 3001;
export const POSTINGS_WORKFLOW_NAME = 'postings-enrichment';

export default function postingsWorkflow({ config, log }: WorkflowEnvironment): WorkflowDefinition<PostingsTables> {
  const ollama = ollamaFromConfig(config);
  // Debug: every process loads the workflow, and a CLI call has nothing to say about it; serve's banner names the services.
  if (ollama) log.debug({ workflow: POSTINGS_WORKFLOW_ID, endpoint: ollama.endpoint, model: ollama.model }, 'summary and skills use ollama');

  const summary = summaryStep(
    ollama
      ? async ({ description }, ctx) => ({ summary: await summarizeWithModel(ollama, description, ctx.signal) })
      : async ({ description }) => ({ summary: summarize(description) }),
  );
  const skills = skillsStep(
    ollama
      ? async ({ summary: text }, ctx) => ({ skills: await extractSkillsWithModel(ollama, text, ctx.signal) })
      : async ({ summary: text }) => ({ skills: extractSkills(text) }),
  );
  const ihl = ihlStep(async ({ skills: list, summary: text }) => ({ ihl_score: scoreIhl(list, text) }));

  return defineWorkflow<PostingsTables>({
    id: POSTINGS_WORKFLOW_ID,
    name: POSTINGS_WORKFLOW_NAME,
    description: 'Summarise job postings, extract their skills, score them (ihl 0–100)',
    subject: 'posting',
    steps: [summary, skills, ihl],
    // From the counters the triggers keep (migrations/0008_postings_counters.ts):
    // a sum over 16 rows, where four FILTER counts scan all of postings
    // (bench/RESULTS.md has both at 1M rows). Exact in any snapshot, since the
    // counters change in the transactions that change postings.
    metrics: (db) =>
      db
        .selectFrom('postings_counters')
        .select((eb) => [
          eb.fn.sum<string>('total').as('postings_total'),
          eb.fn.sum<string>('with_summary').as('postings_with_summary'),
          eb.fn.sum<string>('with_skills').as('postings_with_skills'),
          eb.fn.sum<string>('with_ihl').as('postings_with_ihl'),
        ]),
    // With a model: as many calls at once as the Ollama server serves without
    // queueing them (OLLAMA_NUM_PARALLEL, often 1-4), found by the engine
    // (concurrency 'auto', docs/workflows.md); the local handlers take 8.
    concurrency: ollama ? 'auto' : 8,
    // Every serving instance works on a run (each with its own OLLAMA_URL): a batch scales over several model servers.
    distributed: true,
    rateLimitSeconds: 60,
    // The item's timeout must outlast the HTTP timeout, so that a slow model
    // fails with the Ollama error that names OLLAMA_TIMEOUT_MS rather than
    // with a bare abort.
    timeoutMs: ollama ? Math.max(30_000, config.OLLAMA_TIMEOUT_MS + 5_000) : 30_000,
    retries: 2,
    // The health monitor probes Ollama when the model path is in use.
    services: config.OLLAMA_URL ? [ollamaService(config.OLLAMA_URL)] : [],
    // Continuous only when asked: started by serving instances when postings
    // are inserted or updated (WORKFLOW_CONTINUOUS=3001).
    continuous: config.WORKFLOW_CONTINUOUS.includes(POSTINGS_WORKFLOW_ID) ? { table: 'postings' } : undefined,
  });
}

/** Ollama is up when GET /api/tags answers 2xx (see createOllamaProbe). */
export function ollamaService(baseUrl: string): ExternalService {
  const { probe } = createOllamaProbe(baseUrl);
  return { name: 'ollama', probe };
}
