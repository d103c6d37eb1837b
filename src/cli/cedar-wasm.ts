// cedar-wasm's Node build reads its WebAssembly from a file beside its JavaScript (`__dirname`),
// which a bundle does not have. The build (scripts/build.ts) makes it call cedarWasmBytes instead.
// Inside the single executable the module travels in the binary as an asset (brotli-compressed:
// 1.1 MB rather than 4.3) and is compiled from memory, never written to disk; under plain Node
// (dist/ztedge.cjs) it is the installed package's file. Either way its SHA-256 must be that of the
// file the bundle was built with: wasm-bindgen's JavaScript and its WebAssembly work only as a pair.
// Only `bundle build` (the schema check) gets here; the agent never does.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { getRawAsset, isSea } from 'node:sea';
import { brotliDecompressSync } from 'node:zlib';
import { ZtedgeError } from '../errors.js';

/** SHA-256 of cedar_wasm_bg.wasm as built in, put in by the build. */
declare const ZTEDGE_CEDAR_WASM_SHA256: string;
/** The SEA asset name the build stores the compressed module under. */
export const CEDAR_WASM_ASSET = 'cedar_wasm_bg.wasm.br';

export type EmbeddedWasmErrorCode = 'CEDAR_WASM_MISMATCH' | 'CEDAR_WASM_UNREADABLE';

export class EmbeddedWasmError extends ZtedgeError<EmbeddedWasmErrorCode> {}

/** The bytes of cedar_wasm_bg.wasm, checked against the digest built in. */
export function cedarWasmBytes(): Uint8Array {
  const inExecutable = isSea();
  const where = inExecutable ? `the ${CEDAR_WASM_ASSET} inside this binary` : installedFile();
  let bytes: Uint8Array;
  try {
    bytes = inExecutable ? brotliDecompressSync(new Uint8Array(getRawAsset(CEDAR_WASM_ASSET) as ArrayBuffer)) : fs.readFileSync(where);
  } catch (err) {
    throw new EmbeddedWasmError('CEDAR_WASM_UNREADABLE', `cannot read ${where}: ${(err as Error).message}`, { cause: err });
  }
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (digest !== ZTEDGE_CEDAR_WASM_SHA256) {
    const remedy = inExecutable ? 'the binary is damaged' : 'the installed @cedar-policy/cedar-wasm is not the one ztedge was built with: build again (npm run build) or install the version built with';
    throw new EmbeddedWasmError('CEDAR_WASM_MISMATCH', `${where} hashes to ${digest}, not to the built-in ${ZTEDGE_CEDAR_WASM_SHA256}: ${remedy}`);
  }
  return bytes;
}

function installedFile(): string {
  try {
    return path.join(path.dirname(createRequire(__filename).resolve('@cedar-policy/cedar-wasm/nodejs')), 'cedar_wasm_bg.wasm');
  } catch (err) {
    throw new EmbeddedWasmError('CEDAR_WASM_UNREADABLE', `@cedar-policy/cedar-wasm is not installed where ${__filename} can find it: ${(err as Error).message.split('\n', 1)[0]}`, { cause: err });
  }
}
