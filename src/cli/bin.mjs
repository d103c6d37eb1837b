#!/usr/bin/env node
// Development entry for `npx ztedge`: runs the TypeScript sources through tsx.
// (No single-executable build exists yet: package.json has no build script until it does.)
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2));
