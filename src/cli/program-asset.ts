// How the single executable carries its program (scripts/build.ts writes, sea-main.ts reads): the
// bundled JavaScript without its `#!` line, and the V8 code cache the build made for it.

export const PROGRAM_ASSET = 'ztedge.cjs';
export const PROGRAM_CODE_CACHE_ASSET = 'ztedge.cjs.v8-cache';
/** The executable's main script (sea-main.ts), which a bounded worker runs too (entry.ts). */
export const SEA_MAIN_ASSET = 'sea-main.js';

/**
 * The program as the function CommonJS wraps a file in, with one more parameter: whether V8 took
 * the code cache (the build compiles this same text to make the cache: the texts must match).
 */
export function wrapProgram(source: string): string {
  return `(function (exports, require, module, __filename, __dirname, __ztedgeCodeCache) {${source}\n})`;
}
