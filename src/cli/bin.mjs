#!/usr/bin/env node
// Development entry for `npx ztedge`: runs the TypeScript sources through tsx.
// The shipped single executable is built from the same entry by `npm run build`.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2));
