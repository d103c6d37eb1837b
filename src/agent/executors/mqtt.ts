// Publishes an authorized command to the local controller on `exec/<action>` (QoS 1) and waits
// for its acknowledgement on `exec/<action>/ack`: JSON `{ "id": <commandId>, "status": "ok" |
// "failed", "detail"?: ... }`. Not queued durably and never re-sent: if the link is down it is
// given until the execution timeout to come back (a broker restart takes a moment), and if it
// does not, the command fails and the sender decides what to do.
import { type ExecutionOutcome, type ExecutionRequest, type Executor, MAX_EXECUTOR_REPLY_BYTES } from './types.js';

export interface ExecLink {
  readonly online: boolean;
  publish(topic: string, payload: Uint8Array, opts: { qos: 0 | 1 }): Promise<void>;
  once(event: 'online', listener: () => void): unknown;
}

interface Waiter {
  resolve: (outcome: ExecutionOutcome) => void;
}

export class MqttAckRouter {
  private readonly waiters = new Map<string, Waiter>();

  /** Feeds an incoming acknowledgement; returns false if nothing waited for it. */
  deliver(payload: Uint8Array): boolean {
    if (payload.length > MAX_EXECUTOR_REPLY_BYTES) return false;
    let ack: { id?: unknown; status?: unknown; detail?: unknown; message?: unknown };
    try {
      ack = JSON.parse(Buffer.from(payload).toString('utf8')) as typeof ack;
    } catch {
      return false;
    }
    if (typeof ack !== 'object' || ack === null || typeof ack.id !== 'string') return false;
    const waiter = this.waiters.get(ack.id);
    if (waiter === undefined) return false;
    this.waiters.delete(ack.id);
    if (ack.status === 'ok') waiter.resolve({ status: 'ok', detail: ack.detail });
    else waiter.resolve({ status: 'failed', code: 'EXEC_CONTROLLER_FAILED', message: typeof ack.message === 'string' ? ack.message.slice(0, 500) : 'controller reported failure' });
    return true;
  }

  wait(id: string, timeoutMs: number): { promise: Promise<ExecutionOutcome>; cancel: () => void } {
    let timer: NodeJS.Timeout;
    const started = Date.now();
    const promise = new Promise<ExecutionOutcome>((resolve) => {
      this.waiters.set(id, { resolve: (o) => (clearTimeout(timer), resolve(o)) });
      timer = setTimeout(() => {
        this.waiters.delete(id);
        resolve({ status: 'timeout', afterMs: Date.now() - started });
      }, timeoutMs);
    });
    return {
      promise,
      cancel: () => {
        clearTimeout(timer);
        this.waiters.delete(id);
      },
    };
  }

  get pending(): number {
    return this.waiters.size;
  }
}

export class MqttExecutor implements Executor {
  constructor(
    private readonly link: ExecLink,
    private readonly router: MqttAckRouter,
    private readonly topic: string,
    private readonly timeoutMs: number,
  ) {}

  async execute(request: ExecutionRequest): Promise<ExecutionOutcome> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      if (!this.link.online && !(await this.untilOnline(deadline - Date.now()))) {
        return { status: 'failed', code: 'EXEC_LINK_OFFLINE', message: `the broker was unreachable for ${this.timeoutMs} ms` };
      }
      const waiting = this.router.wait(request.commandId, Math.max(1, deadline - Date.now()));
      try {
        await this.link.publish(this.topic, Buffer.from(JSON.stringify(request)), { qos: 1 });
      } catch (err) {
        waiting.cancel();
        // LINK_OFFLINE: the link went down just now and sent nothing; wait for it again.
        if ((err as { code?: unknown }).code === 'LINK_OFFLINE') continue;
        return { status: 'failed', code: 'EXEC_PUBLISH_FAILED', message: (err as Error).message };
      }
      return waiting.promise;
    }
  }

  /** Resolves true when the link comes online within `ms`, else false. */
  private async untilOnline(ms: number): Promise<boolean> {
    if (ms <= 0) return false;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    try {
      return await Promise.race([nextOnline(this.link).then(() => true as const), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** One 'online' listener per link, however many executions wait for it. */
const onlineWaits = new WeakMap<ExecLink, Promise<void>>();

function nextOnline(link: ExecLink): Promise<void> {
  let next = onlineWaits.get(link);
  if (next === undefined) {
    next = new Promise((resolve) =>
      link.once('online', () => {
        onlineWaits.delete(link);
        resolve();
      }),
    );
    onlineWaits.set(link, next);
  }
  return next;
}
