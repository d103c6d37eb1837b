// POSTs an authorized command as JSON to a local controller endpoint, with a timeout.
import { type ExecutionOutcome, type ExecutionRequest, type Executor, MAX_EXECUTOR_REPLY_BYTES, replyDetail } from './types.js';

export class HttpExecutor implements Executor {
  constructor(
    private readonly url: string,
    private readonly timeoutMs: number,
  ) {}

  async execute(request: ExecutionRequest): Promise<ExecutionOutcome> {
    const started = Date.now();
    try {
      const res = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(request),
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: 'error',
      });
      const body = await readBounded(res);
      if (res.ok) return { status: 'ok', detail: replyDetail(body) };
      return { status: 'failed', code: 'EXEC_HTTP_STATUS', message: `controller answered HTTP ${res.status}` };
    } catch (err) {
      const e = err as Error;
      if (e.name === 'TimeoutError' || e.name === 'AbortError') return { status: 'timeout', afterMs: Date.now() - started };
      return { status: 'failed', code: 'EXEC_HTTP_UNREACHABLE', message: e.message };
    }
  }
}

async function readBounded(res: Response): Promise<Buffer> {
  if (res.body === null) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    chunks.push(Buffer.from(chunk));
    total += chunk.length;
    if (total >= MAX_EXECUTOR_REPLY_BYTES) break;
  }
  return Buffer.concat(chunks);
}
