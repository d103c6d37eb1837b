// Durable outbox for everything the agent sends (results, status, evidence): a message is
// committed to SQLite before enqueue() returns, published in enqueue order while the link is
// online, and deleted only once the broker acknowledged it. Unsent messages survive restarts
// and are sent when the broker is reachable again; delivery is at least once (a crash between
// PUBACK and the delete sends a message twice).
//
// Space is bounded. Non-critical messages are refused once the outbox reaches
// (1 - criticalReserve) of either limit, so the rest is kept for critical ones (command
// results); a critical message is refused only at the hard limit. Refusals throw OUTBOX_FULL to
// the caller and are counted: nothing is dropped silently. A retained message supersedes
// unsent retained messages on the same topic (only the latest state matters, and a device
// offline for days would otherwise fill up with stale status). A message the broker refuses
// (e.g. not authorized) is kept, marked rejected and reported; it still takes space until
// discarded.
//
// Writes can join the state database's group commit (store/group-commit.ts): enqueueGrouped()
// stores a message in the same transaction as everything else written in that turn (a command
// result rides with its execution audit record), and deletes of acknowledged messages always
// do, so a steady stream of results costs no transaction or fsync of its own.
//
// Messages committed by this process are dispatched from memory (a copy of each row as stored),
// so a message is written once and deleted once, never read back. The database is read only for
// what memory does not hold: rows from a previous run, and rows whose copies were dropped to keep
// memory bounded (at most 4 x window messages and 4 MiB wait in memory; the oldest copies go
// first). The boundary is one id: every pending row from `readyFrom` on that is not in flight is
// in memory, the rows below it are read from the database, and those are sent first.
import { EventEmitter } from 'node:events';
import { GroupCommit } from '../store/group-commit.js';
import { type OutboxRow as Row, openOutboxTable } from '../store/outbox-table.js';
import type { Database } from '../store/state-db.js';
import { TransportError } from './errors.js';
import type { PublishOptions } from './mqtt-link.js';
import { isPublishableTopic } from './topics.js';

export interface OutboxMessage {
  topic: string;
  payload: Uint8Array;
  qos: 0 | 1;
  retain?: boolean;
  /** Critical messages (command results) may use the reserved space. */
  critical?: boolean;
  responseTopic?: string;
  correlationData?: Uint8Array;
  contentType?: string;
}

/** What the outbox needs from the link (MqttLink provides it). */
export interface OutboxLink {
  readonly online: boolean;
  publish(topic: string, payload: Uint8Array, opts: PublishOptions): Promise<void>;
  on(event: 'online', listener: () => void): unknown;
  off(event: 'online', listener: () => void): unknown;
}

export interface OutboxOptions {
  maxMessages: number;
  maxBytes: number;
  /** Share of both limits only critical messages may use. Default 0.2. */
  criticalReserve?: number;
  /** Messages published at once, awaiting PUBACK. Default 16. */
  window?: number;
  /** Wait before resending after a transient publish failure. Default 1000 ms. */
  retryDelayMs?: number;
  /** How long close() waits for publishes in flight. Default 2000 ms. */
  closeGraceMs?: number;
  now?: () => number;
  /** The database's shared group commit; without one the outbox batches its own writes. */
  commits?: GroupCommit;
}

export interface RejectedMessage {
  id: number;
  topic: string;
  reasonCode: number | null;
  reason: string;
  enqueuedAt: number;
}

export interface OutboxMetrics {
  enqueued: number;
  sent: number;
  refused: number;
  superseded: number;
  rejected: number;
  retries: number;
  /** Messages (pending and rejected) and their bytes held in the outbox now. */
  heldMessages: number;
  heldBytes: number;
  inFlight: number;
  /** Reads of pending messages from the database (everything else is sent from memory). */
  reads: number;
}

export interface OutboxEvents {
  sent: [{ id: number; topic: string }];
  refused: [TransportError];
  rejected: [RejectedMessage];
  /** A storage error in the sender; the message stays and is retried. */
  problem: [Error];
}

const MAX_CORRELATION_BYTES = 1024;
const MAX_CONTENT_TYPE_LENGTH = 256;
/** Undispatched messages kept in memory, in windows and in bytes (beyond: read back when due). */
const READY_WINDOWS = 4;
const READY_MAX_BYTES = 4 * 1024 * 1024;

/** A stored row waiting in memory; not dispatched before its transaction committed. */
interface Ready {
  row: Row;
  committed: boolean;
}

export class Outbox extends EventEmitter<OutboxEvents> {
  private readonly limits: { messages: number; bytes: number; nonCriticalMessages: number; nonCriticalBytes: number };
  private readonly window: number;
  private readonly retryDelayMs: number;
  private readonly closeGraceMs: number;
  private readonly now: () => number;
  private readonly statements: ReturnType<typeof openOutboxTable>;
  private readonly commits: GroupCommit;
  /** Checks space and stores, in one transaction of its own (enqueue). */
  private readonly insert: (message: OutboxMessage, size: number, unready: Ready[]) => Stored;

  private held: { messages: number; bytes: number };
  /** Dispatched rows by id, until deleted (after PUBACK) or failed. */
  private readonly inFlight = new Map<number, Promise<void>>();
  /** Acknowledged rows whose delete is not committed yet: never sent again, nor superseded. */
  private readonly deleting = new Set<number>();
  private running = false;
  private pumpScheduled = false;
  /**
   * Every pending row below `readyFrom` that is not in flight is at or above this id: the pump
   * reads from here up to `readyFrom`. Moved back to a row there that has to be sent again.
   */
  private cursor: number;
  /** Every pending row not in flight from this id on is in `ready`. Only grows. */
  private readyFrom: number;
  /** Rows to dispatch, in id order, all at or above `readyFrom`. */
  private ready: Ready[] = [];
  private readyBytes = 0;
  private readonly readyMaxMessages: number;
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly onOnline = () => this.pump();
  private readonly counters = { enqueued: 0, sent: 0, refused: 0, superseded: 0, rejected: 0, retries: 0, reads: 0 };

  constructor(
    db: Database,
    private readonly link: OutboxLink,
    options: OutboxOptions,
  ) {
    super();
    const reserve = options.criticalReserve ?? 0.2;
    const problems = [
      !Number.isSafeInteger(options.maxMessages) || options.maxMessages < 1 ? 'maxMessages must be a positive integer' : null,
      !Number.isSafeInteger(options.maxBytes) || options.maxBytes < 1 ? 'maxBytes must be a positive integer' : null,
      !(reserve >= 0 && reserve < 1) ? 'criticalReserve must be in [0, 1)' : null,
      options.window !== undefined && (!Number.isInteger(options.window) || options.window < 1) ? 'window must be a positive integer' : null,
      !isDelay(options.retryDelayMs) ? 'retryDelayMs must be a non-negative number' : null,
      !isDelay(options.closeGraceMs) ? 'closeGraceMs must be a non-negative number' : null,
    ].filter((p): p is string => p !== null);
    if (problems.length > 0) throw new TransportError('OUTBOX_OPTIONS_INVALID', `invalid outbox options: ${problems.join('; ')}`);
    this.limits = {
      messages: options.maxMessages,
      bytes: options.maxBytes,
      nonCriticalMessages: Math.floor(options.maxMessages * (1 - reserve)),
      nonCriticalBytes: Math.floor(options.maxBytes * (1 - reserve)),
    };
    this.window = options.window ?? 16;
    this.readyMaxMessages = READY_WINDOWS * this.window;
    this.retryDelayMs = options.retryDelayMs ?? 1000;
    this.closeGraceMs = options.closeGraceMs ?? 2000;
    this.now = options.now ?? Date.now;
    this.commits = options.commits ?? new GroupCommit(db);

    this.statements = openOutboxTable(db);
    this.held = this.statements.held.get() ?? { messages: 0, bytes: 0 };
    // Ids only grow (AUTOINCREMENT): what this process stores is at or above readyFrom.
    const { firstPending, nextId } = this.statements.bounds.get()!;
    this.readyFrom = nextId;
    this.cursor = firstPending ?? nextId;
    this.insert = db.transaction((message: OutboxMessage, size: number, unready: Ready[]) => {
      const superseded = this.supersede(message, unready);
      this.checkSpace(message.critical === true, size, superseded.messages, superseded.bytes);
      return { row: this.store(message, size), superseded };
    });
  }

  /**
   * Stores a message durably (committed when this returns) and schedules it for sending.
   * Throws OUTBOX_FULL when there is no room for it, OUTBOX_MESSAGE_INVALID on a bad message.
   */
  enqueue(message: OutboxMessage): number {
    if (this.closed) throw new TransportError('OUTBOX_CLOSED', 'outbox is closed');
    checkMessage(message);
    const size = messageSize(message);
    let inserted;
    const unready: Ready[] = [];
    try {
      inserted = this.insert(message, size, unready);
    } catch (err) {
      // Rolled back: what it superseded is stored again.
      for (const entry of unready) this.markReady(entry);
      if (err instanceof TransportError && err.code === 'OUTBOX_FULL') {
        this.counters.refused++;
        this.emit('refused', err);
      }
      throw err;
    }
    this.held = {
      messages: this.held.messages + 1 - inserted.superseded.messages,
      bytes: this.held.bytes + size - inserted.superseded.bytes,
    };
    this.counters.enqueued++;
    this.counters.superseded += inserted.superseded.messages;
    this.markReady({ row: inserted.row, committed: true });
    this.pump();
    return inserted.row.id;
  }

  /**
   * Like enqueue(), but the message is stored by the next group commit, with whatever else is
   * written in this turn: resolves with its id once durable. It is sent as soon as it is
   * committed; a crash before the WAL flush can lose it only together with what was written with
   * it (for a result: its execution record). Refusals (OUTBOX_FULL, OUTBOX_MESSAGE_INVALID,
   * OUTBOX_CLOSED) reject at once; a failed commit rejects with GroupCommitError. Space is
   * reserved when called and counted like enqueue()'s; a retained message's superseded
   * predecessors free their space once the commit is done.
   */
  enqueueGrouped(message: OutboxMessage): Promise<number> {
    let size: number;
    try {
      if (this.closed) throw new TransportError('OUTBOX_CLOSED', 'outbox is closed');
      checkMessage(message);
      size = messageSize(message);
      this.checkSpace(message.critical === true, size, 0, 0);
    } catch (err) {
      if (err instanceof TransportError && err.code === 'OUTBOX_FULL') {
        this.counters.refused++;
        this.emit('refused', err);
      }
      return Promise.reject(err);
    }
    this.held = { messages: this.held.messages + 1, bytes: this.held.bytes + size };
    let stored: Stored | undefined;
    // Joins memory when stored, so a later message of the same batch can supersede it there too;
    // dispatched only once committed. On rollback each write restores what it superseded (last
    // to first, so an entry restored by a later write is then taken out by its own).
    let entry: Ready | undefined;
    const unready: Ready[] = [];
    return this.commits.run(
      () => {
        const superseded = this.supersede(message, unready);
        stored = { row: this.store(message, size), superseded };
        entry = { row: stored.row, committed: false };
        this.markReady(entry);
        return stored.row.id;
      },
      (committed) => {
        if (committed && stored !== undefined) {
          if (entry !== undefined) entry.committed = true;
          this.held = { messages: this.held.messages - stored.superseded.messages, bytes: this.held.bytes - stored.superseded.bytes };
          this.counters.enqueued++;
          this.counters.superseded += stored.superseded.messages;
          this.pumpSoon();
        } else {
          if (stored !== undefined) this.unready(stored.row.id);
          for (const superseded of unready) this.markReady(superseded);
          this.held = { messages: this.held.messages - 1, bytes: this.held.bytes - size };
        }
      },
    );
  }

  /** Starts sending whenever the link is online. */
  start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.link.on('online', this.onOnline);
    this.pump();
  }

  /**
   * Stops sending and waits briefly for publishes in flight. Their messages stay stored unless
   * acknowledged in that time, and are sent again by the next outbox on this database.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.running = false;
    this.link.off('online', this.onOnline);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight.values()]),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.closeGraceMs);
      }),
    ]);
    clearTimeout(timer);
    // Deletes of acknowledged messages are queued on the group commit: commit them now.
    this.commits.flush();
    this.closed = true;
  }

  metrics(): OutboxMetrics {
    return { ...this.counters, heldMessages: this.held.messages, heldBytes: this.held.bytes, inFlight: this.inFlight.size };
  }

  /** Messages the broker refused, kept for inspection. */
  rejected(): RejectedMessage[] {
    return this.statements.rejected.all().map((r) => ({
      id: r.id,
      topic: r.topic,
      reasonCode: r.reason_code,
      reason: r.reason,
      enqueuedAt: r.enqueued_at,
    }));
  }

  /** Deletes the rejected messages (an operator's decision), returning how many. */
  discardRejected(): number {
    if (this.closed) throw new TransportError('OUTBOX_CLOSED', 'outbox is closed');
    const removed = this.statements.discardRejected.all();
    this.held = {
      messages: this.held.messages - removed.length,
      bytes: this.held.bytes - removed.reduce((sum, r) => sum + r.size, 0),
    };
    return removed.length;
  }

  /**
   * Deletes unsent retained messages on a retained message's topic (not ones in flight), and
   * their copies in memory; adds those copies to `unready`, to restore if this rolls back.
   */
  private supersede(message: OutboxMessage, unready: Ready[]): { messages: number; bytes: number } {
    const freed = { messages: 0, bytes: 0 };
    if (!message.retain) return freed;
    for (const old of this.statements.retainedOnTopic.all(message.topic)) {
      if (this.inFlight.has(old.id) || this.deleting.has(old.id)) continue;
      this.statements.delete.run(old.id);
      const copy = this.unready(old.id);
      if (copy !== undefined) unready.push(copy);
      freed.messages++;
      freed.bytes += old.size;
    }
    return freed;
  }

  /** Inserts the message; returns the row as stored (its payload a copy of the caller's). */
  private store(message: OutboxMessage, size: number): Row {
    const row: Row = {
      id: 0,
      topic: message.topic,
      payload: Buffer.from(message.payload),
      qos: message.qos,
      retain: message.retain ? 1 : 0,
      response_topic: message.responseTopic ?? null,
      correlation_data: message.correlationData ? Buffer.from(message.correlationData) : null,
      content_type: message.contentType ?? null,
      size,
      enqueued_at: this.now(),
    };
    const result = this.statements.insert.run(
      row.topic,
      row.payload,
      row.qos,
      row.retain,
      row.response_topic,
      row.correlation_data,
      row.content_type,
      row.size,
      row.enqueued_at,
    );
    row.id = Number(result.lastInsertRowid);
    return row;
  }

  /**
   * A stored, pending row not in flight is to be dispatched, in id order: from memory, or, below
   * `readyFrom`, read back from the database.
   */
  private markReady(entry: Ready): void {
    const { row } = entry;
    if (row.id < this.readyFrom) {
      this.cursor = Math.min(this.cursor, row.id);
      return;
    }
    let at = this.ready.length;
    while (at > 0 && this.ready[at - 1]!.row.id > row.id) at--;
    this.ready.splice(at, 0, entry);
    this.readyBytes += row.size;
    // Over the bound, the oldest copies go: their rows are below readyFrom then, so read back.
    while (this.ready.length > this.readyMaxMessages || this.readyBytes > READY_MAX_BYTES) {
      const dropped = this.ready.shift()!.row;
      this.readyBytes -= dropped.size;
      this.readyFrom = dropped.id + 1;
    }
  }

  /** Takes a row's copy out of memory (its row deleted), if there. */
  private unready(id: number): Ready | undefined {
    const at = this.ready.findIndex((entry) => entry.row.id === id);
    if (at < 0) return undefined;
    const [entry] = this.ready.splice(at, 1);
    this.readyBytes -= entry!.row.size;
    return entry;
  }

  private checkSpace(critical: boolean, size: number, freedMessages: number, freedBytes: number): void {
    const messages = this.held.messages - freedMessages + 1;
    const bytes = this.held.bytes - freedBytes + size;
    const maxMessages = critical ? this.limits.messages : this.limits.nonCriticalMessages;
    const maxBytes = critical ? this.limits.bytes : this.limits.nonCriticalBytes;
    if (messages > maxMessages || bytes > maxBytes) {
      throw new TransportError(
        'OUTBOX_FULL',
        `outbox full for ${critical ? 'critical' : 'non-critical'} messages: ` +
          `${this.held.messages} messages / ${this.held.bytes} bytes held, limit ${maxMessages} / ${maxBytes}`,
      );
    }
  }

  /** One pump for everything committed in a batch, not one per message. */
  private pumpSoon(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (!this.running || this.closed || this.retryTimer || !this.link.online) return;
    let free = this.window - this.inFlight.size;
    if (free <= 0) return;
    if (this.cursor < this.readyFrom) {
      // Stored rows memory does not hold go first: they are older than everything it holds.
      const upTo = this.readyFrom;
      let rows: Row[];
      try {
        rows = this.statements.pending.all(this.cursor, upTo, free);
      } catch (err) {
        this.emit('problem', err as Error);
        this.scheduleRetry();
        return;
      }
      this.counters.reads++;
      for (const row of rows) {
        if (!this.link.online) return;
        this.cursor = row.id + 1;
        if (!this.inFlight.has(row.id) && !this.deleting.has(row.id)) this.dispatch(row);
      }
      if (rows.length === free) return; // maybe more below upTo: read on when a slot is free
      this.cursor = upTo;
      free = this.window - this.inFlight.size;
    }
    for (; free > 0; free--) {
      const next = this.ready[0];
      if (next === undefined || !next.committed || !this.link.online) return;
      this.ready.shift();
      this.readyBytes -= next.row.size;
      this.dispatch(next.row);
    }
  }

  /** The row is still stored and not in flight: it is sent again, in id order. */
  private resend(row: Row): void {
    this.markReady({ row, committed: true });
  }

  private dispatch(row: Row): void {
    const opts: PublishOptions = { qos: row.qos, retain: row.retain === 1 };
    if (row.response_topic !== null) opts.responseTopic = row.response_topic;
    if (row.correlation_data !== null) opts.correlationData = row.correlation_data;
    if (row.content_type !== null) opts.contentType = row.content_type;
    const settled = this.link.publish(row.topic, row.payload, opts).then(
      () => this.onAcknowledged(row),
      (err: unknown) => this.onFailed(row, err),
    );
    this.inFlight.set(row.id, settled);
  }

  /**
   * The broker has the message: its window slot is free at once, and its delete joins the next
   * group commit anybody starts (runLazy), so a steady stream costs no transaction of its own.
   * A crash before that commit sends the message again: a duplicate, never a loss.
   */
  private onAcknowledged(row: Row): void {
    if (this.closed) return;
    this.inFlight.delete(row.id);
    this.deleting.add(row.id);
    this.commits
      .runLazy(
        () => this.statements.delete.run(row.id),
        (committed) => {
          this.deleting.delete(row.id);
          if (!committed) {
            this.resend(row); // still stored, so sent again: a duplicate, never a loss
            return;
          }
          this.held = { messages: this.held.messages - 1, bytes: this.held.bytes - row.size };
          this.counters.sent++;
        },
      )
      .then(
        () => this.emit('sent', { id: row.id, topic: row.topic }),
        (err: unknown) => {
          this.emit('problem', err as Error);
          this.scheduleRetry();
        },
      );
    this.pumpSoon();
  }

  private onFailed(row: Row, err: unknown): void {
    this.inFlight.delete(row.id);
    if (this.closed) return;
    const code = err instanceof TransportError ? err.code : null;
    if (code === 'PUBLISH_REJECTED' || code === 'TOPIC_NAME_INVALID') {
      const transportError = err as TransportError;
      try {
        this.statements.reject.run(transportError.reasonCode ?? null, transportError.message, row.id);
      } catch (dbErr) {
        this.resend(row);
        this.emit('problem', dbErr as Error);
        return;
      }
      this.counters.rejected++;
      this.emit('rejected', {
        id: row.id,
        topic: row.topic,
        reasonCode: transportError.reasonCode ?? null,
        reason: transportError.message,
        enqueuedAt: row.enqueued_at,
      });
      this.pump();
      return;
    }
    // Offline, closing or a local failure: the message stays pending and is tried again.
    this.resend(row);
    this.counters.retries++;
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retryTimer || !this.running) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.pump();
    }, this.retryDelayMs);
    this.retryTimer.unref?.();
  }
}

interface Stored {
  row: Row;
  superseded: { messages: number; bytes: number };
}

function checkMessage(message: OutboxMessage): void {
  const fail = (why: string) => new TransportError('OUTBOX_MESSAGE_INVALID', `outbox message ${why}`);
  if (!isPublishableTopic(message.topic)) throw fail('has an invalid topic');
  if (!(message.payload instanceof Uint8Array)) throw fail('payload must be bytes');
  if (message.qos !== 0 && message.qos !== 1) throw fail('qos must be 0 or 1');
  if (message.responseTopic !== undefined && !isPublishableTopic(message.responseTopic)) throw fail('has an invalid response topic');
  if (message.correlationData !== undefined) {
    if (!(message.correlationData instanceof Uint8Array) || message.correlationData.byteLength > MAX_CORRELATION_BYTES) {
      throw fail(`correlation data must be at most ${MAX_CORRELATION_BYTES} bytes`);
    }
  }
  if (message.contentType !== undefined) {
    if (typeof message.contentType !== 'string' || message.contentType.length > MAX_CONTENT_TYPE_LENGTH) {
      throw fail(`content type must be a string of at most ${MAX_CONTENT_TYPE_LENGTH} characters`);
    }
  }
}

function isDelay(ms: number | undefined): boolean {
  return ms === undefined || (Number.isFinite(ms) && ms >= 0);
}

/** What a message costs against the byte limit. */
function messageSize(message: OutboxMessage): number {
  return (
    message.payload.byteLength +
    Buffer.byteLength(message.topic) +
    (message.responseTopic ? Buffer.byteLength(message.responseTopic) : 0) +
    (message.correlationData?.byteLength ?? 0) +
    (message.contentType ? Buffer.byteLength(message.contentType) : 0)
  );
}
