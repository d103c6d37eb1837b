// Publishes an authorized command to the local controller on `exec/<action>` (QoS 1) and waits
// for its acknowledgement on `exec/<action>/ack`: JSON `{ "id": <commandId>, "status": "ok" |
// "failed", "detail"?: ... }`. Not queued durably and never re-sent: if the link is down the
// command fails now, and the sender decides what to do.
import { type ExecutionOutcome, type ExecutionRequest, type Executor, MAX_EXECUTOR_REPLY_BYTES } from './types.js';

export interface ExecLink {
  readonly online: boolean;
  publish(topic: string, payload: Uint8Array, opts: { qos: 0 | 1 }): Promise<void>;
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
    if (!this.link.online) return { status: 'failed', code: 'EXEC_LINK_OFFLINE', message: 'the broker is unreachable' };
    const waiting = this.router.wait(request.commandId, this.timeoutMs);
    try {
      await this.link.publish(this.topic, Buffer.from(JSON.stringify(request)), { qos: 1 });
    } catch (err) {
      waiting.cancel();
      return { status: 'failed', code: 'EXEC_PUBLISH_FAILED', message: (err as Error).message };
    }
    return waiting.promise;
  }
}
