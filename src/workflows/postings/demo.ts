import { sql, type Kysely } from 'kysely';
import type { PostingsTables } from './schema.ts';

// Synthetic postings for `workflow demo`, benchmarks and tests. A seeded PRNG
// draws every row in sequence, so the same seed always gives the same rows
// (and a smaller count gives a prefix of a larger one). Descriptions mention
// skills from the local vocabulary in varied positions and spellings, some in
// the sentences the local summary keeps and some after, so the steps'
// outputs vary the way real ones do.

export interface DemoPosting {
  title: string;
  company: string;
  location: string;
  description: string;
}

/** mulberry32: tiny, fast, and good enough for demo data. */
export function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SENIORITY = ['Junior', '', '', 'Senior', 'Senior', 'Lead', 'Staff', 'Principal'];

// Each role draws from the skills it plausibly needs, spelled as postings do.
const ROLES: { title: string; skills: string[] }[] = [
  { title: 'Backend Engineer', skills: ['Golang', 'Java', 'Kotlin', 'Rust', 'PostgreSQL', 'Postgres', 'Kafka', 'Redis', 'SQL', 'Docker', 'GraphQL'] },
  { title: 'Frontend Developer', skills: ['TypeScript', 'JavaScript', 'React', 'GraphQL', 'Node.js'] },
  { title: 'Full-Stack Developer', skills: ['TypeScript', 'React', 'Node.js', 'PostgreSQL', 'GraphQL', 'Docker', 'AWS'] },
  { title: 'Data Engineer', skills: ['Python', 'SQL', 'Spark', 'Airflow', 'Kafka', 'PostgreSQL', 'GCP', 'AWS'] },
  { title: 'Machine Learning Engineer', skills: ['Python', 'PyTorch', 'machine learning', 'Spark', 'SQL', 'Kubernetes', 'Google Cloud'] },
  { title: 'Site Reliability Engineer', skills: ['Kubernetes', 'K8s', 'Terraform', 'AWS', 'GCP', 'Linux', 'Docker', 'Golang', 'Python'] },
  { title: 'Platform Engineer', skills: ['Kubernetes', 'Terraform', 'Golang', 'Rust', 'Linux', 'AWS', 'Docker'] },
  { title: 'Mobile Developer', skills: ['Swift', 'Kotlin', 'React', 'TypeScript', 'GraphQL'] },
  { title: 'Systems Engineer', skills: ['C++', 'Rust', 'Linux', 'Python'] },
];
const ANY_SKILL = [...new Set(ROLES.flatMap((r) => r.skills))];

const COMPANY_NAMES = [
  'Acme',
  'Globex',
  'Initech',
  'Umbrella',
  'Hooli',
  'Stark',
  'Wayne',
  'Tyrell',
  'Cyberdyne',
  'Soylent',
  'Vandelay',
  'Pied Piper',
  'Aperture',
  'Massive Dynamic',
  'Nakatomi',
  'Oscorp',
];
const COMPANY_KINDS = ['Labs', 'Systems', 'Analytics', 'Cloud', 'Health', 'Energy', 'Logistics', 'Payments', 'Robotics', 'Media'];
const LOCATIONS = [
  'Berlin',
  'London',
  'Amsterdam',
  'Lisbon',
  'Paris',
  'Madrid',
  'Warsaw',
  'Stockholm',
  'New York',
  'Austin',
  'Toronto',
  'Singapore',
  'Remote',
  'Remote',
];
const MISSIONS = [
  'build the data platform behind our pricing engine',
  'scale the APIs that serve millions of requests a day',
  'modernise our checkout and payments flows',
  'ship features to our mobile apps every week',
  'run the infrastructure our product teams deploy on',
  'turn raw events into models that predict demand',
  'make our search faster and more relevant',
  'help hospitals share patient records safely',
  'route deliveries across three continents',
  'keep our trading systems fast and correct',
];
const STACK_LINES = ['You will work with {skills}.', 'Our stack is {skills}.', 'Day to day you will use {skills}.', 'You know {skills} well.'];
const PLAIN_LINES = [
  'We value ownership, clear writing and kind code review.',
  'You enjoy working closely with product and design.',
  'You care about quality and like to measure before you optimise.',
];
const PLUS_LINES = ['Experience with {skill} is a plus.', 'Bonus points for {skill}.', 'Some exposure to {skill} helps.'];
const TEAM_LINES = [
  'The team ships small changes several times a day.',
  'We offer a learning budget, flexible hours and a yearly offsite.',
  'You will join a team of six engineers and one product manager.',
  'We are a profitable company of 120 people.',
  'Our engineers are on call one week in eight.',
];
const PROCESS_LINES = ['Interviews take two rounds and one take-home exercise.', 'We answer every application within a week.', ''];

function listOf(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

/** The rows replaceDemoPostings inserts, in id order. */
export function* generatePostings(count: number, seed: number): Generator<DemoPosting> {
  const random = createRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const some = (items: readonly string[], n: number): string[] => {
    const chosen = new Set<string>();
    while (chosen.size < Math.min(n, items.length)) chosen.add(pick(items));
    return [...chosen];
  };

  for (let i = 0; i < count; i++) {
    const seniority = pick(SENIORITY);
    const role = pick(ROLES);
    const title = seniority ? `${seniority} ${role.title}` : role.title;
    const company = `${pick(COMPANY_NAMES)} ${pick(COMPANY_KINDS)}`;
    const location = pick(LOCATIONS);
    const where = location === 'Remote' ? `a remote ${title}` : `a ${title} in ${location}`;
    const sentences = [`${company} is hiring ${where} to ${pick(MISSIONS)}.`];
    sentences.push(random() < 0.8 ? pick(STACK_LINES).replace('{skills}', listOf(some(role.skills, 1 + Math.floor(random() * 3)))) : pick(PLAIN_LINES));
    if (random() < 0.6) sentences.push(pick(PLUS_LINES).replace('{skill}', pick(ANY_SKILL)));
    sentences.push(pick(TEAM_LINES));
    const closing = pick(PROCESS_LINES);
    if (closing) sentences.push(closing);
    yield { title, company, location, description: sentences.join(' ') };
  }
}

// Rows per INSERT: large enough that round trips do not dominate, small
// enough that one statement's parameters stay a few megabytes.
const CHUNK = 10_000;

/**
 * Replaces every posting with `count` fresh synthetic ones (ids 1..count), in
 * one transaction: on failure the old rows stay. Returns the number inserted.
 */
export async function replaceDemoPostings<DB extends PostingsTables>(db: Kysely<DB>, count: number, seed = 3001): Promise<number> {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`postings count must be a whole number ≥ 0, got ${count}`);
  return db.transaction().execute(async (tx) => {
    // Not RESTART IDENTITY, which needs the sequence's owner: the app's own
    // role (docs/security.md, The database) may truncate and set it, not own it.
    await sql`TRUNCATE postings`.execute(tx);
    await sql`SELECT setval(pg_get_serial_sequence('postings', 'id'), 1, false)`.execute(tx);
    let inserted = 0;
    // One INSERT in flight while the next chunk is generated: the server
    // writes while the client computes.
    let inFlight: Promise<unknown> = Promise.resolve();
    let chunk: DemoPosting[] = [];
    const flush = async () => {
      const rows = chunk;
      chunk = [];
      await inFlight;
      // unnest keeps the arrays' order, so ids follow the generator's order.
      inFlight = sql`
        INSERT INTO postings (title, company, location, description)
        SELECT * FROM unnest(
          ${rows.map((p) => p.title)}::text[], ${rows.map((p) => p.company)}::text[],
          ${rows.map((p) => p.location)}::text[], ${rows.map((p) => p.description)}::text[])`.execute(tx);
      // Its failure is reported by the next await; this only stops Node from
      // calling it unhandled in between.
      inFlight.catch(() => {});
      inserted += rows.length;
    };
    for (const posting of generatePostings(count, seed)) {
      chunk.push(posting);
      if (chunk.length === CHUNK) await flush();
    }
    if (chunk.length > 0) await flush();
    await inFlight;
    return inserted;
  });
}

export async function countPostings<DB extends PostingsTables>(db: Kysely<DB>): Promise<number> {
  const { rows } = await sql<{ count: string | number }>`SELECT count(*) AS count FROM postings`.execute(db);
  return Number(rows[0]?.count ?? 0);
}
