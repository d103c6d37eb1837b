// Publishes an authorized command to the local controller on `exec/<action>` (QoS 1) and waits
// for its acknowledgement on `exec/<action>/ack`: JSON `{ "id": <commandId>, "status": "ok" |
// "failed", "detail"?: ..., "message"?: ... }`. The id is the command's envelope digest in hex and
// must be echoed exactly, on the ack topic of the same action; an ack that matches no command
// waiting (unknown, already answered, another action's, malformed) settles nothing and is
// reported to the caller, who audits it. Not queued durably and never re-sent: if the link is
// down it is given until the execution timeout to come back (a broker restart takes a moment),
// and if it does not, the command fails and the sender decides what to do.
import { type ExecutionOutcome, type ExecutionRequest, type Executor, MAX_EXECUTOR_REPLY_BYTES } from './types.js';

export interface ExecLink {
  readonly online: boolean;
  publish(topic: string, payload: Uint8Array, opts: { qos: 0 | 1 }): Promise<void>;
  once(event: 'online', listener: () => void): unknown;
}

interface Waiter {
  action: string;
  resolve: (outcome: ExecutionOutcome) => void;
}

/** What became of one acknowledgement. Anything but ACCEPTED is a refusal the caller records. */
export type AckVerdict = 'ACCEPTED' | 'EXEC_ACK_MALFORMED' | 'EXEC_ACK_UNKNOWN' | 'EXEC_ACK_DUPLICATE' | 'EXEC_ACK_WRONG_ACTION';

/** Command ids answered recently, remembered to tell a duplicate ack from an unknown one. */
const ANSWERED_REMEMBERED = 4096;
const COMMAND_ID = /^[0-9a-f]{64}$/;

export class MqttAckRouter {
  private readonly waiters = new Map<string, Waiter>();
  private readonly answered = new Set<string>();

  /** Feeds an acknowledgement that arrived on `exec/<action>/ack`; settles a waiting command only on an exact match. */
  deliver(action: string, payload: Uint8Array): { verdict: AckVerdict; id?: string } {
    if (payload.length > MAX_EXECUTOR_REPLY_BYTES) return { verdict: 'EXEC_ACK_MALFORMED' };
    let ack: { id?: unknown; status?: unknown; detail?: unknown; message?: unknown };
    try {
      ack = JSON.parse(Buffer.from(payload).toString('utf8')) as typeof ack;
    } catch {
      return { verdict: 'EXEC_ACK_MALFORMED' };
    }
    if (typeof ack !== 'object' || ack === null || typeof ack.id !== 'string' || !COMMAND_ID.test(ack.id)) return { verdict: 'EXEC_ACK_MALFORMED' };
    if (ack.status !== 'ok' && ack.status !== 'failed') return { verdict: 'EXEC_ACK_MALFORMED', id: ack.id };
    const id = ack.id;
    const waiter = this.waiters.get(id);
    if (waiter === undefined) return { verdict: this.answered.has(id) ? 'EXEC_ACK_DUPLICATE' : 'EXEC_ACK_UNKNOWN', id };
    if (waiter.action !== action) return { verdict: 'EXEC_ACK_WRONG_ACTION', id };
    this.settle(id);
    if (ack.status === 'ok') waiter.resolve({ status: 'ok', detail: ack.detail });
    else waiter.resolve({ status: 'failed', code: 'EXEC_CONTROLLER_FAILED', message: typeof ack.message === 'string' ? ack.message.slice(0, 500) : 'controller reported failure' });
    return { verdict: 'ACCEPTED', id };
  }

  wait(id: string, action: string, timeoutMs: number): { promise: Promise<ExecutionOutcome>; cancel: () => void } {
    let timer: NodeJS.Timeout;
    const started = Date.now();
    const promise = new Promise<ExecutionOutcome>((resolve) => {
      this.waiters.set(id, { action, resolve: (o) => (clearTimeout(timer), resolve(o)) });
      timer = setTimeout(() => {
        this.settle(id);
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

  /** No longer waited for: a later ack for it is a duplicate (or late), not a new answer. */
  private settle(id: string): void {
    this.waiters.delete(id);
    this.answered.add(id);
    if (this.answered.size > ANSWERED_REMEMBERED) this.answered.delete(this.answered.values().next().value!);
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
      const waiting = this.router.wait(request.commandId, request.action, Math.max(1, deadline - Date.now()));
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
