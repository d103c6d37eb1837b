// Main script of the single executable (scripts/build.ts), and the code its bounded worker runs:
// for a long-running command the main thread starts that worker (heap.ts) without loading the
// program at all; the worker, or the main thread for any other command, loads it. The program travels as an asset beside the V8 code cache the build made for it
// (program-asset.ts) and is compiled here as Node compiles a CommonJS file. With the cache V8
// skips parsing the 1.2 MB program; V8 takes the cache only if the same V8 with the same flags
// made it (other V8 flags in NODE_OPTIONS: compiled from source, as without a cache). Node's own
// `useCodeCache` does the same for the main script, but warns on every start where the cache is
// refused and cannot serve a worker. This script stays small: compiling it costs next to nothing.
import path from 'node:path';
import { getAsset, getRawAsset } from 'node:sea';
import vm from 'node:vm';
import { heapBoundsFor, startBoundedWorker } from './heap.js';
import { PROGRAM_ASSET, PROGRAM_CODE_CACHE_ASSET, SEA_MAIN_ASSET, wrapProgram } from './program-asset.js';

function runProgram(): void {
  const script = new vm.Script(wrapProgram(getAsset(PROGRAM_ASSET, 'utf8')), {
    filename: process.execPath,
    cachedData: new Uint8Array(getRawAsset(PROGRAM_CODE_CACHE_ASSET) as ArrayBuffer),
  });
  const program = script.runInThisContext() as (...args: unknown[]) => void;
  const programModule = { exports: {} };
  program(programModule.exports, require, programModule, process.execPath, path.dirname(process.execPath), script.cachedDataRejected === true ? 'rejected' : 'used');
}

// A long-running command goes to a worker with bounded heap (heap.ts) before the program is
// loaded here: the main thread then only passes signals on and waits.
const args = process.argv.slice(2);
const bounds = heapBoundsFor(args);
if (bounds === null) runProgram();
else startBoundedWorker(getAsset(SEA_MAIN_ASSET, 'utf8'), args, bounds, { eval: true });
