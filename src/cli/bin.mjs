#!/usr/bin/env node
// Development entry (`npm run ztedge -- ...`): runs the TypeScript sources through tsx. The built
// program is dist/ztedge.cjs (package.json's bin) and dist/ztedge: `npm run build`.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2));
