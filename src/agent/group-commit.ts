// Group commit for the state database: writes queued by many callers within one turn of the
// event loop run in ONE transaction, so a burst pays one fsync (synchronous = FULL) instead of
// one per write. Each caller's promise settles only after that transaction has committed (or
// rolled back), so "resolved" always means "durable".
//
// A batch is all or nothing: if any write throws, or the commit itself fails, the transaction
// rolls back and every caller in it is rejected. Writes therefore check their inputs before
// they are queued, and throw inside the batch only for storage failures.
//
// Batches run in queue order, so a write queued after another is never committed before it:
// a caller that awaits its own write knows every earlier write (of any module sharing this
// instance) is committed too, or was rejected.
import type { Database } from './state-db.js';

export class GroupCommitError extends Error {
  override readonly name = 'GroupCommitError';
  readonly code = 'STATE_COMMIT_FAILED';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

interface QueuedWrite {
  write: () => unknown;
  settled: ((committed: boolean) => void) | undefined;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

export interface GroupCommitStats {
  /** Transactions committed or rolled back. */
  batches: number;
  /** Writes in those transactions. */
  writes: number;
  /** Batches that rolled back. */
  failures: number;
  largestBatch: number;
}

export class GroupCommit {
  private queue: QueuedWrite[] = [];
  private scheduled = false;
  private readonly runBatch: (batch: QueuedWrite[], results: unknown[]) => void;
  private readonly counters: GroupCommitStats = { batches: 0, writes: 0, failures: 0, largestBatch: 0 };

  constructor(db: Database) {
    this.runBatch = db.transaction((batch: QueuedWrite[], results: unknown[]) => {
      for (let i = 0; i < batch.length; i++) results[i] = batch[i]!.write();
    });
  }

  /**
   * Queues `write` for the next batch (scheduled for the end of this turn) and resolves with
   * its return value once the batch is committed. `settled` runs synchronously when the batch
   * is decided, before any promise settles: the place to move in-memory state along with the
   * database (on rollback, writes are settled last to first, so each can restore what it saw).
   */
  run<T>(write: () => T, settled?: (committed: boolean) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ write, settled, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Writes queued and not yet in a transaction. */
  get pending(): number {
    return this.queue.length;
  }

  stats(): GroupCommitStats {
    return { ...this.counters };
  }

  /** Runs the queued writes now, in one transaction. Also what the scheduled flush calls. */
  flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    const results = new Array<unknown>(batch.length);
    let failure: GroupCommitError | null = null;
    try {
      this.runBatch(batch, results);
    } catch (err) {
      failure = new GroupCommitError(`state commit of ${batch.length} write(s) failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    this.counters.batches++;
    this.counters.writes += batch.length;
    this.counters.largestBatch = Math.max(this.counters.largestBatch, batch.length);
    if (failure === null) {
      for (const item of batch) item.settled?.(true);
      batch.forEach((item, i) => item.resolve(results[i]));
    } else {
      this.counters.failures++;
      for (let i = batch.length - 1; i >= 0; i--) batch[i]!.settled?.(false);
      for (const item of batch) item.reject(failure);
    }
  }
}
