#!/usr/bin/env node
// The `fn` CLI is TypeScript run by tsx. Registering tsx's loader in this
// process (instead of spawning a second node) keeps stdin, signals and the
// exit code ours. tsx resolves from this package, not the caller's cwd.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli.ts');
process.exitCode = await main(process.argv.slice(2));
