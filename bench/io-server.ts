// The Ollama stand-in for bench/io-bound.ts, in a process of its own so that
// its work is not counted against the engine's event loop: test/helpers/ollama-stub.ts
// answering every /api/generate after --delay-ms (200). Prints `LISTENING <url>`,
// exits when its stdin closes (the parent went away) or on SIGTERM.
import { startOllamaStub } from '../test/helpers/ollama-stub.ts';
import { intFlag, parseFlags } from './lib.ts';

const flags = parseFlags(process.argv.slice(2));
const stub = await startOllamaStub({ delayMs: intFlag(flags, 'delay-ms', 200) });
// The stub keeps every request for tests' assertions; here that is only memory.
setInterval(() => stub.requests.splice(0), 1_000).unref();
process.stdout.write(`LISTENING ${stub.url}\n`);
const close = () => void stub.close().finally(() => process.exit(0));
process.stdin.on('end', close);
process.stdin.resume();
process.on('SIGTERM', close);
