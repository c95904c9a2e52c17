// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by package /
// source area and the top functions by self time.
//
//   node --cpu-prof --cpu-prof-dir=/tmp/prof bench/noop-engine.ts
//   node bench/profile-summary.ts /tmp/prof/CPU.*.cpuprofile [--top 30]
import { readFileSync } from 'node:fs';
import { intFlag, parseFlags } from './lib.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const file = process.argv[2];
if (!file || file.startsWith('--')) {
  process.stderr.write('usage: bench/profile-summary.ts FILE.cpuprofile [--top N]\n');
  process.exit(2);
}
const top = intFlag(parseFlags(process.argv.slice(3)), 'top', 30);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));

// Self time per node: each sample's delta goes to the sampled (leaf) node.
const selfUs = new Map<number, number>();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i]!;
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}
const totalUs = profile.endTime - profile.startTime;

function area(url: string, name: string): string {
  if (name === '(idle)') return '(idle)';
  if (name === '(garbage collector)') return '(garbage collector)';
  if (name === '(program)') return '(program: native, outside JS)';
  if (!url) return '(native / builtins)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return `npm ${pkg[1]}`;
  if (url.startsWith('node:')) return 'node core';
  const local = /\/(src\/[^/]+(?:\/[^/]+)?|bench|migrations)\//.exec(url);
  if (local) return local[1]!;
  return url;
}

const areas = new Map<string, number>();
const functions = new Map<string, number>();
for (const [id, us] of selfUs) {
  const node = byId.get(id)!;
  const { functionName, url, lineNumber } = node.callFrame;
  const a = area(url, functionName);
  areas.set(a, (areas.get(a) ?? 0) + us);
  const short = url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/(src|bench)\//, '$1/');
  const key = `${functionName || '(anonymous)'}  ${short}${url ? `:${lineNumber + 1}` : ''}`;
  functions.set(key, (functions.get(key) ?? 0) + us);
}

const ms = (us: number) => (us / 1000).toFixed(0).padStart(7);
const pct = (us: number) => `${((100 * us) / totalUs).toFixed(1).padStart(5)}%`;
process.stdout.write(`profile ${file}: ${(totalUs / 1e6).toFixed(2)} s\n\nself time by area:\n`);
for (const [a, us] of [...areas].sort((x, y) => y[1] - x[1])) process.stdout.write(`${ms(us)} ms ${pct(us)}  ${a}\n`);
process.stdout.write(`\ntop ${top} functions by self time:\n`);
for (const [f, us] of [...functions].sort((x, y) => y[1] - x[1]).slice(0, top)) process.stdout.write(`${ms(us)} ms ${pct(us)}  ${f}\n`);
