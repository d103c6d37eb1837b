// Crash tests: run a TypeScript child (through tsx) and SIGKILL it a while after it prints a
// marker. Resolves with everything it wrote to stdout; rejects if it ended any other way.
import { spawn } from 'node:child_process';

export function runAndKill(opts: { script: string; args: string[]; cwd: string; killAfter: string; delayMs: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', opts.script, ...opts.args], {
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      if (timer === undefined && out.includes(opts.killAfter)) {
        timer = setTimeout(() => child.kill('SIGKILL'), opts.delayMs);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`child exited with ${code ?? signal} before the kill:\n${err}`));
      else resolve(out);
    });
  });
}
