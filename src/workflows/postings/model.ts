import { OllamaError, type OllamaClient } from '../ollama.ts';

// The summary and skills handlers when a model is configured: the prompts, and
// the parsing that turns a model's free text into the steps' outputs.

export const MAX_SKILLS = 30;
export const MAX_SKILL_LENGTH = 60;

export function summaryPrompt(description: string): string {
  return [
    'Summarise this job posting in at most two sentences.',
    'Mention the role, the seniority, the location and the main technologies.',
    'Answer with the summary only.',
    '',
    'Job posting:',
    description.trim(),
  ].join('\n');
}

export function skillsPrompt(summary: string): string {
  return [
    'List the technical skills this job asks for.',
    'Answer with a JSON array of short lowercase skill names only, e.g. ["typescript", "postgresql"].',
    'Answer [] if there are none.',
    '',
    'Job summary:',
    summary.trim(),
  ].join('\n');
}

export async function summarizeWithModel(client: OllamaClient, description: string, signal: AbortSignal): Promise<string> {
  const summary = parseSummary(await client.generate(summaryPrompt(description), signal));
  // An empty answer is a failed attempt, not a result: saved, it would end
  // the posting's pipeline with nothing to extract skills from.
  if (summary === '') throw new OllamaError(`model ${client.model} answered with an empty summary`);
  return summary;
}

export async function extractSkillsWithModel(client: OllamaClient, summary: string, signal: AbortSignal): Promise<string[]> {
  return parseSkills(await client.generate(skillsPrompt(summary), signal));
}

/** The model's answer without the wrapping small models like to add. */
export function parseSummary(answer: string): string {
  return answer
    .trim()
    .replace(/^summary\s*:\s*/i, '')
    .replace(/^["“](.*)["”]$/s, '$1')
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * Skills from a model's answer: the first JSON array in it if there is one
 * (models wrap it in prose or code fences), else a comma or line separated
 * list. Lowercased, deduplicated, bounded.
 */
export function parseSkills(answer: string): string[] {
  const raw = fromJsonArray(answer) ?? answer.split(/[,;\n]/);
  const skills = raw
    .map((s) =>
      s
        .trim()
        .replace(/^(?:[-*•]|\d+[.)])\s*/, '')
        .replace(/^["'`]+|["'`.]+$/g, '')
        .trim()
        .toLowerCase(),
    )
    .filter((s) => s !== '' && s.length <= MAX_SKILL_LENGTH && !/^(none|n\/a|\[\])$/.test(s));
  return [...new Set(skills)].slice(0, MAX_SKILLS);
}

function fromJsonArray(answer: string): string[] | undefined {
  const start = answer.indexOf('[');
  const end = answer.lastIndexOf(']');
  if (start < 0 || end < start) return undefined;
  try {
    const parsed: unknown = JSON.parse(answer.slice(start, end + 1));
    if (!Array.isArray(parsed)) return undefined;
    return parsed.filter((item): item is string => typeof item === 'string');
  } catch {
    return undefined;
  }
}
