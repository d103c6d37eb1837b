// What program is running, for `ztedge --version --verbose`: the built entry says what it is;
// the development entry (sources through tsx) says nothing and is reported as such.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import v8 from 'node:v8';

export interface ProgramInfo {
  /** `single executable` (dist/ztedge) or `script` (dist/ztedge.cjs under node). */
  kind: 'single executable' | 'script';
  /** The file that is the program: what attestation measures. */
  file: string;
  /** SHA-256 of the SQLite addon the program carries or loads, when known. */
  sqliteAddonSha256?: string;
  /** The single executable: whether V8 took the code cache built for the program (sea-main.ts). */
  codeCache?: 'used' | 'rejected';
  /** The node options the command runs with (the heap bounds among them). */
  nodeOptions: string;
}

let program: ProgramInfo | undefined;

export function setProgram(info: ProgramInfo): void {
  program = info;
}

/** SHA-256 of a file, read in chunks (the executable is ~90 MB). */
export async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The lines of `ztedge --version --verbose`. */
export async function versionReport(version: string): Promise<string> {
  const heapMiB = Math.round(v8.getHeapStatistics().heap_size_limit / (1 << 20));
  const lines = [`ztedge ${version}`];
  if (program === undefined) {
    lines.push('program: development sources (not a build; `npm run build` makes dist/ztedge)');
  } else {
    lines.push(`program: ${program.file} (${program.kind})`, `sha256: ${await fileSha256(program.file)}`);
    if (program.sqliteAddonSha256 !== undefined) lines.push(`sqlite addon sha256: ${program.sqliteAddonSha256}`);
    if (program.codeCache !== undefined) lines.push(`code cache: ${program.codeCache === 'used' ? 'used' : 'rejected by V8 (other V8 flags than at build time, e.g. from NODE_OPTIONS): the program was compiled from source'}`);
  }
  lines.push(`node: ${process.version} (v8 ${process.versions.v8}, ${process.platform}-${process.arch})`);
  const options = program?.nodeOptions ?? [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ').trim();
  lines.push(`heap limit: ${heapMiB} MiB (node options: ${options || 'none'})`);
  return lines.join('\n');
}
