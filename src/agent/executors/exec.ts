// Runs a configured program for an action: argv from the config (never a shell), the request as
// JSON on stdin, a minimal environment, a hard timeout (SIGKILL), bounded output.
import { spawn } from 'node:child_process';
import { type ExecutionOutcome, type ExecutionRequest, type Executor, MAX_EXECUTOR_REPLY_BYTES, replyDetail } from './types.js';

export class ExecExecutor implements Executor {
  constructor(
    private readonly command: readonly string[],
    private readonly timeoutMs: number,
  ) {
    if (command.length === 0) throw new RangeError('exec executor needs a program');
  }

  execute(request: ExecutionRequest): Promise<ExecutionOutcome> {
    return new Promise((resolve) => {
      const started = Date.now();
      let settled = false;
      const finish = (outcome: ExecutionOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(outcome);
      };
      const child = spawn(this.command[0]!, this.command.slice(1), {
        shell: false,
        stdio: ['pipe', 'pipe', 'pipe'],
        // Only PATH: the agent's own environment may hold secrets.
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      });
      const out: Buffer[] = [];
      let outBytes = 0;
      child.stdout.on('data', (chunk: Buffer) => {
        if (outBytes < MAX_EXECUTOR_REPLY_BYTES) out.push(chunk);
        outBytes += chunk.length;
      });
      const errChunks: Buffer[] = [];
      child.stderr.on('data', (chunk: Buffer) => {
        if (errChunks.length < 16) errChunks.push(chunk);
      });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        finish({ status: 'timeout', afterMs: Date.now() - started });
      }, this.timeoutMs);
      child.on('error', (err) => finish({ status: 'failed', code: 'EXEC_SPAWN_FAILED', message: err.message }));
      child.on('close', (code, signal) => {
        if (code === 0) finish({ status: 'ok', detail: replyDetail(Buffer.concat(out)) });
        else {
          const stderr = Buffer.concat(errChunks).toString('utf8').slice(0, 500).trim();
          finish({
            status: 'failed',
            code: 'EXEC_NONZERO_EXIT',
            message: `exited with ${code === null ? `signal ${signal}` : `code ${code}`}${stderr ? `: ${stderr}` : ''}`,
          });
        }
      });
      // A program that does not read stdin must not crash the agent with EPIPE.
      child.stdin.on('error', () => {});
      child.stdin.end(JSON.stringify(request));
    });
  }
}
