#!/usr/bin/env node
// The CLI runs the TypeScript sources directly through tsx's loader, so that
// `npm install` leaves a runnable tool with no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/main.ts');
process.exitCode = await main(process.argv.slice(2));
