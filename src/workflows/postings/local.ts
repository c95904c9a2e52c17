// The example's handlers without a model: pure, deterministic and fast, so the
// whole pipeline runs (and is tested, and benchmarked) with nothing but
// PostgreSQL. With OLLAMA_URL set, model.ts replaces summary and skills.

export interface Skill {
  /** The canonical name stored in postings.skills. */
  name: string;
  /** Other spellings that mean the same skill. */
  aliases?: string[];
  /** How much the skill adds to the ihl score (1–10). */
  weight: number;
}

// Ambiguous English words are kept out on purpose ("go" is matched only as
// "golang"), so that matching needs no context.
export const SKILLS: readonly Skill[] = [
  { name: 'typescript', weight: 8 },
  { name: 'javascript', weight: 5 },
  { name: 'node.js', aliases: ['nodejs'], weight: 6 },
  { name: 'react', weight: 6 },
  { name: 'graphql', weight: 5 },
  { name: 'python', weight: 7 },
  { name: 'go', aliases: ['golang'], weight: 7 },
  { name: 'rust', weight: 8 },
  { name: 'java', weight: 5 },
  { name: 'kotlin', weight: 6 },
  { name: 'swift', weight: 6 },
  { name: 'c++', weight: 6 },
  { name: 'sql', weight: 5 },
  { name: 'postgresql', aliases: ['postgres'], weight: 7 },
  { name: 'redis', weight: 4 },
  { name: 'kafka', weight: 6 },
  { name: 'spark', weight: 6 },
  { name: 'airflow', weight: 5 },
  { name: 'machine learning', weight: 8 },
  { name: 'pytorch', weight: 8 },
  { name: 'aws', weight: 6 },
  { name: 'gcp', aliases: ['google cloud'], weight: 5 },
  { name: 'docker', weight: 4 },
  { name: 'kubernetes', aliases: ['k8s'], weight: 7 },
  { name: 'terraform', weight: 6 },
  { name: 'linux', weight: 3 },
];

/** Sentences kept by the local summary. */
export const SUMMARY_SENTENCES = 2;
export const SUMMARY_MAX_CHARS = 320;

/** The first sentences of the description, whitespace collapsed, capped at a word boundary. */
export function summarize(description: string): string {
  const text = description.replace(/\s+/g, ' ').trim();
  if (text === '') return '';
  // A sentence ends at . ! or ? followed by a space, so "node.js" stays whole.
  const sentences = text.split(/(?<=[.!?])\s+/);
  const summary = sentences.slice(0, SUMMARY_SENTENCES).join(' ');
  if (summary.length <= SUMMARY_MAX_CHARS) return summary;
  const cut = summary.slice(0, SUMMARY_MAX_CHARS - 1);
  const lastSpace = cut.lastIndexOf(' ');
  return `${lastSpace > 0 ? cut.slice(0, lastSpace) : cut}…`;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// One pattern per skill. The guards stand in for \b, which fails for names
// ending in symbols ("c++") and would find "java" in "javascript" only by luck.
const SKILL_PATTERNS = SKILLS.map((skill) => ({
  name: skill.name,
  pattern: new RegExp(`(?<![\\p{L}\\p{N}+#])(?:${[skill.name, ...(skill.aliases ?? [])].map(escapeRegExp).join('|')})(?![\\p{L}\\p{N}+#])`, 'iu'),
}));

/** The vocabulary's skills mentioned in the text, in vocabulary order. */
export function extractSkills(text: string): string[] {
  return SKILL_PATTERNS.filter(({ pattern }) => pattern.test(text)).map(({ name }) => name);
}

const WEIGHTS = new Map(SKILLS.map((s) => [s.name, s.weight]));
/** A skill a model found that the vocabulary does not know still counts a little. */
const UNKNOWN_SKILL_WEIGHT = 2;

/**
 * The ihl score, 0–100: up to 60 for the weight of the skills asked for, up to
 * 20 for seniority, 5 for remote work, up to 15 for a summary of useful length.
 */
export function scoreIhl(skills: readonly string[], summary: string): number {
  const weight = [...new Set(skills.map((s) => s.toLowerCase()))].reduce((sum, s) => sum + (WEIGHTS.get(s) ?? UNKNOWN_SKILL_WEIGHT), 0);
  const skillPoints = Math.min(60, weight * 2.5);
  const length = summary.trim().length;
  const seniority = seniorityPoints(summary);
  const remote = /\bremote\b/i.test(summary) ? 5 : 0;
  const clarity = length >= 60 && length <= SUMMARY_MAX_CHARS ? 15 : length > 0 ? 5 : 0;
  return Math.max(0, Math.min(100, Math.round(skillPoints + seniority + remote + clarity)));
}

function seniorityPoints(summary: string): number {
  // An empty summary says nothing about seniority, so it earns nothing for it.
  if (summary.trim() === '') return 0;
  if (/\b(principal|staff)\b/i.test(summary)) return 20;
  if (/\b(senior|lead)\b/i.test(summary)) return 15;
  if (/\b(junior|intern|graduate)\b/i.test(summary)) return 0;
  return 8;
}
