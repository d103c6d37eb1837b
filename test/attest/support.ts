// Shared helpers of the attestation tests: temp trees laid out like a device under a measure root.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A temp directory removed after the test file. */
export function tempDir(prefix = 'ztedge-attest-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Writes `files` (device path → content) under `root`, creating directories. */
export function writeTree(root: string, files: Record<string, string>): void {
  for (const [devicePath, content] of Object.entries(files)) {
    const file = path.join(root, devicePath);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content, { mode: 0o644 });
    fs.chmodSync(file, 0o644);
  }
}

/** A profile JSON text measuring `entries`. */
export function profileText(name: string, entries: Array<{ path: string; critical: boolean; limit?: number }>, interval = '1h'): string {
  return JSON.stringify({ profile: name, measure: entries, interval });
}

/** Runs the `ztedge` CLI in-process; output is collected. */
export async function ztedge(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { main } = await import('../../src/cli/main.js');
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    stdout: (text) => void (stdout += `${text}\n`),
    stderr: (text) => void (stderr += `${text}\n`),
    readStdin: async () => Buffer.alloc(0),
  });
  return { code, stdout, stderr };
}
