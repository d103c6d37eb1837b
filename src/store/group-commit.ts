// Group commit for the state database: writes queued by many callers within one turn of the
// event loop run in ONE transaction, and one fsync makes a whole batch durable. Each caller's
// promise settles only after that, so "resolved" always means "durable".
//
// The fsync does not block the event loop. A batch is committed with synchronous = NORMAL (its
// frames are written to the WAL, not yet flushed), then the WAL is flushed with fdatasync on
// libuv's thread pool while the agent goes on handling messages; the batch's callers are resolved
// when that flush is done. The WAL is written in order, so one flush covers every batch committed
// before it started; batches committed while a flush runs wait for the next one. This is the
// guarantee of synchronous = FULL (the connection's setting for every other transaction), with
// the fsync moved off the event loop: a crash before the flush can lose the batch, but nobody
// was told it was durable. SQLite itself still syncs the WAL before a checkpoint copies it into
// the database file.
//
// A batch is all or nothing: if any write throws, or the commit fails, the transaction rolls back
// and every caller in it is rejected. Writes therefore check their inputs before they are queued,
// and throw inside the batch only for storage failures. A failed flush rejects the callers of
// every batch it covered (their rows are committed, but nobody may act on them).
//
// Batches commit in queue order, so a write queued after another is never committed before it:
// a caller that awaits its own write knows every earlier write (of any module sharing this
// instance) is durable too, or was rejected.
import fs from 'node:fs';
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

/** A committed batch waiting for the WAL flush. */
interface Committed {
  batch: QueuedWrite[];
  results: unknown[];
}

export interface GroupCommitStats {
  /** Transactions committed or rolled back. */
  batches: number;
  /** Writes in those transactions. */
  writes: number;
  /** Batches that rolled back, or whose flush failed. */
  failures: number;
  largestBatch: number;
  /** WAL flushes (each covers one or more batches). */
  flushes: number;
}

/** Makes everything committed so far durable: in the background, or before returning. */
export interface LogFlusher {
  flush(): Promise<void>;
  flushNow(): void;
}

export interface GroupCommitOptions {
  /** Default: fdatasync of the database's WAL file (nothing for an in-memory database). */
  flusher?: LogFlusher;
  /** Longest wait of a runLazy() write for a batch to join (default 20 ms). */
  lazyDelayMs?: number;
}

export class GroupCommit {
  private queue: QueuedWrite[] = [];
  private scheduled = false;
  private readonly runBatch: (batch: QueuedWrite[], results: unknown[]) => void;
  private readonly synchronous: { normal: () => void; full: () => void };
  private readonly flusher: LogFlusher;
  /** Committed batches the next flush will make durable. */
  private unflushed: Committed[] = [];
  /** Batches the running flush covers (null when none runs). */
  private flushing: Committed[] | null = null;
  private readonly counters: GroupCommitStats = { batches: 0, writes: 0, failures: 0, largestBatch: 0, flushes: 0 };
  private lazyTimer: NodeJS.Timeout | null = null;
  private readonly lazyDelayMs: number;

  constructor(db: Database, options: GroupCommitOptions = {}) {
    this.runBatch = db.transaction((batch: QueuedWrite[], results: unknown[]) => {
      for (let i = 0; i < batch.length; i++) results[i] = batch[i]!.write();
    });
    const normal = db.prepare('PRAGMA synchronous = NORMAL');
    const full = db.prepare('PRAGMA synchronous = FULL');
    this.synchronous = { normal: () => normal.run(), full: () => full.run() };
    this.flusher = options.flusher ?? (db.memory ? NOTHING_TO_FLUSH : walFlusher(db.name));
    this.lazyDelayMs = options.lazyDelayMs ?? 20;
  }

  /**
   * Queues `write` for the next batch (scheduled for the end of this turn) and resolves with
   * its return value once the batch is durable. `settled` runs synchronously when the batch is
   * committed or rolled back, before any promise settles: the place to move in-memory state
   * along with the database (on rollback, writes are settled last to first, so each can restore
   * what it saw).
   */
  run<T>(write: () => T, settled?: (committed: boolean) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ write, settled, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.commit());
      }
    });
  }

  /**
   * Like run(), for writes that may wait (deletes of acknowledged outbox messages): it starts no
   * batch of its own but joins the next one anybody starts, or one started `lazyDelayMs` after it
   * was queued. Under load it costs no transaction or flush of its own.
   */
  runLazy<T>(write: () => T, settled?: (committed: boolean) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ write, settled, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled && this.lazyTimer === null) {
        this.lazyTimer = setTimeout(() => this.commit(), this.lazyDelayMs);
        this.lazyTimer.unref();
      }
    });
  }

  /** Writes queued and not yet committed. */
  get pending(): number {
    return this.queue.length;
  }

  stats(): GroupCommitStats {
    return { ...this.counters };
  }

  /**
   * Commits the queued writes now and flushes the WAL before returning, so everything committed
   * so far is durable (for shutdown: the database may be closed next). Callers resolve as usual.
   */
  flush(): void {
    this.commit();
    if (this.unflushed.length === 0 && this.flushing === null) return;
    const waiting = [...(this.flushing ?? []), ...this.unflushed];
    this.unflushed = [];
    try {
      this.flusher.flushNow();
    } catch (err) {
      this.fail(waiting, err);
      return;
    }
    this.counters.flushes++;
    // A background flush still running settles these again, which changes nothing.
    for (const { batch, results } of waiting) batch.forEach((item, i) => item.resolve(results[i]));
  }

  private commit(): void {
    this.scheduled = false;
    if (this.lazyTimer !== null) clearTimeout(this.lazyTimer);
    this.lazyTimer = null;
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    const results = new Array<unknown>(batch.length);
    let failure: GroupCommitError | null = null;
    this.synchronous.normal();
    try {
      this.runBatch(batch, results);
    } catch (err) {
      failure = new GroupCommitError(`state commit of ${batch.length} write(s) failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    } finally {
      this.synchronous.full();
    }
    this.counters.batches++;
    this.counters.writes += batch.length;
    this.counters.largestBatch = Math.max(this.counters.largestBatch, batch.length);
    if (failure !== null) {
      this.counters.failures++;
      for (let i = batch.length - 1; i >= 0; i--) batch[i]!.settled?.(false);
      for (const item of batch) item.reject(failure);
      return;
    }
    for (const item of batch) item.settled?.(true);
    this.unflushed.push({ batch, results });
    this.startFlush();
  }

  /** One flush at a time; batches committed meanwhile wait for the next. */
  private startFlush(): void {
    if (this.flushing !== null || this.unflushed.length === 0) return;
    const covered = this.unflushed;
    this.flushing = covered;
    this.unflushed = [];
    this.counters.flushes++;
    this.flusher.flush().then(
      () => {
        this.flushing = null;
        for (const { batch, results } of covered) batch.forEach((item, i) => item.resolve(results[i]));
        this.startFlush();
      },
      (err: unknown) => {
        this.flushing = null;
        this.fail(covered, err);
        this.startFlush();
      },
    );
  }

  private fail(batches: Committed[], err: unknown): void {
    const failure = new GroupCommitError(`state flush failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    this.counters.failures += batches.length;
    for (const { batch } of batches) for (const item of batch) item.reject(failure);
  }
}

const NOTHING_TO_FLUSH: LogFlusher = { flush: () => Promise.resolve(), flushNow: () => {} };

/**
 * fdatasync of `<database>-wal`. SQLite keeps that file while the database is open (it rewinds
 * it after a checkpoint, never replaces it) and deletes it on the last close, so one descriptor,
 * opened at the first flush, serves every flush; it is closed when the GroupCommit is collected.
 * A failed flush drops it, and the next flush opens the file again.
 */
function walFlusher(dbPath: string): LogFlusher {
  const wal = `${dbPath}-wal`;
  const state = { fd: null as number | null };
  const descriptor = () => {
    if (state.fd === null) {
      state.fd = fs.openSync(wal, 'r+');
      openWalFiles.register(state, state.fd, state);
    }
    return state.fd;
  };
  const drop = () => {
    if (state.fd === null) return;
    openWalFiles.unregister(state);
    fs.close(state.fd, () => undefined);
    state.fd = null;
  };
  return {
    flush() {
      return new Promise<void>((resolve, reject) => {
        let fd: number;
        try {
          fd = descriptor();
        } catch (err) {
          reject(err);
          return;
        }
        fs.fdatasync(fd, (err) => {
          if (err === null) return resolve();
          drop();
          reject(err);
        });
      });
    },
    flushNow() {
      try {
        fs.fdatasyncSync(descriptor());
      } catch (err) {
        drop();
        throw err;
      }
    },
  };
}

/** Closes the WAL descriptor of a flusher nobody holds any more. */
const openWalFiles = new FinalizationRegistry<number>((fd) => fs.close(fd, () => undefined));
