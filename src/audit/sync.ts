// Upstream sync of the audit log: the agent's own loop, apart from the command path, that sends
// the log to the collector in order and moves the synced watermark only on the collector's
// signed word.
//
// The loop reads records from the first one not yet sent, in batches bounded by count and bytes,
// each covered by a signed checkpoint (sync-protocol.ts): when no checkpoint follows the batch
// yet, it asks the log for one at its head. Up to `maxInFlight` batches travel at once, so the
// next batch is read, compressed and signed while the collector stores the previous one; answers
// are taken in order. Only a verified "stored" acknowledgement moves the watermark (markSynced),
// which frees the cap; pruning after the retention follows. Anything else — a transport failure,
// a timeout, an answer that does not verify, "ahead", a refusal — drops what is in flight and
// resends from the watermark (or, for "ahead", from the collector's newest seq) after an
// exponential backoff with jitter. The collector stores a resent record once, so an interruption
// on either side, or a restart (the loop starts again from the stored watermark), costs only a
// resend.
//
// Reading a batch is one indexed range query (a few milliseconds for thousands of records);
// compression, signing and the network run off the event loop, so commands keep flowing while a
// backlog drains at full speed.
import { EventEmitter } from 'node:events';
import { bytesEqual, toHex } from '../crypto/bytes.js';
import type { PrivateKey, PublicKey } from '../crypto/keys.js';
import { ZtedgeError } from '../errors.js';
import { type BackoffPolicy, backoffDelayMs, checkBackoffPolicy } from '../transport/backoff.js';
import type { AuditCapacity, AuditRef } from './log.js';
import { recordBytes } from './log.js';
import type { AuditReader } from './reader.js';
import { type Ack, type BatchCover, type BatchRecord, batchId, encodeBatch, verifyAck } from './sync-protocol.js';

/** How batches reach the collector. */
export interface SyncTransport {
  readonly name: string;
  /** Whether a send may be tried now (MQTT: connected to the broker). */
  ready(): boolean;
  /**
   * Sends one batch; resolves with the collector's answer (a signed acknowledgement, checked by
   * the caller), rejects when none came (unreachable, timeout, a transport-level refusal).
   */
  send(batch: Uint8Array, id: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
}

/** What the sync needs of the audit log (SqliteAuditLog). */
export interface SyncableLog {
  readonly reader: AuditReader;
  head(): AuditRef;
  capacity(): AuditCapacity;
  checkpoint(): Promise<AuditRef | null>;
  markSynced(seq: number): Promise<AuditCapacity>;
  prune(): Promise<number>;
}

export type UpstreamState = 'starting' | 'connected' | 'offline' | 'unreachable' | 'refused' | 'stopped';

export interface SyncError {
  code: string;
  message: string;
  /** The seq a refusal names. */
  seq?: number;
  atMs: number;
}

export interface SyncStatus {
  transport: string;
  state: UpstreamState;
  /** The synced watermark: every record up to it is stored upstream. */
  syncedSeq: number;
  headSeq: number;
  backlog: { records: number; bytes: number; oldestAgeMs: number | null };
  /** When the last batch was acknowledged as stored. */
  lastSyncMs: number | null;
  inFlight: number;
  lastError: SyncError | null;
  batches: { stored: number; failed: number; refused: number };
  recordsSent: number;
  bytesSent: number;
}

export interface AuditSyncOptions {
  log: SyncableLog;
  transport: SyncTransport;
  device: string;
  /** Signs each batch head. */
  deviceKey: PrivateKey;
  /** The collector's key: acknowledgements signed by anything else are ignored. */
  collectorKey: PublicKey;
  /** Records per batch (default 5000) and their bytes as counted by the cap (default 4 MiB). */
  maxRecords?: number;
  maxBytes?: number;
  /** Batches sent and not yet answered (default 2). */
  maxInFlight?: number;
  /** How often an idle or offline loop looks for new records (default 5 s). */
  intervalMs?: number;
  /** How long to wait for an answer (default 30 s). */
  timeoutMs?: number;
  backoff?: BackoffPolicy;
  /** Trusted time (record ages, batch heads). */
  now: () => number;
  random?: () => number;
  /** Called with the collector's signed time from each verified acknowledgement. */
  onUpstreamTime?: (timeMs: number) => void;
  /** Prune synced records past the retention after each advance (default true). */
  prune?: boolean;
}

export interface SyncEvents {
  state: [UpstreamState];
  /** A batch was stored upstream; the watermark is now `syncedSeq`. */
  stored: [{ first: number; last: number; syncedSeq: number }];
  problem: [SyncError];
}

export class AuditSyncError extends ZtedgeError<string> {}

/** The collector's refusal of a batch: its code and the seq it names. */
export class SyncRefusal extends ZtedgeError<string> {
  constructor(
    code: string,
    message: string,
    readonly seq: number | undefined,
  ) {
    super(code, message);
  }
}

interface Sent {
  first: number;
  last: number;
  id: Uint8Array;
  records: number;
  bytes: number;
  answer: Promise<Ack>;
}

export const DEFAULT_SYNC_BACKOFF: BackoffPolicy = { initialMs: 1000, maxMs: 5 * 60_000 };
const MIN_PRUNE_INTERVAL_MS = 1000;

export class AuditSync extends EventEmitter<SyncEvents> {
  private readonly log: SyncableLog;
  private readonly transport: SyncTransport;
  private readonly maxRecords: number;
  private readonly maxBytes: number;
  private readonly maxInFlight: number;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly backoff: BackoffPolicy;
  private readonly random: () => number;
  private state: UpstreamState = 'starting';
  private nextSeq = 0;
  private inFlight: Sent[] = [];
  private attempt = 0;
  private lastSyncMs: number | null = null;
  private lastError: SyncError | null = null;
  private readonly counts = { stored: 0, failed: 0, refused: 0 };
  private recordsSent = 0;
  private bytesSent = 0;
  private lastPruneMs = 0;
  private running: Promise<void> | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;
  /** Settles when stop() is called: the loop never waits for an answer past it. */
  private readonly halted: Promise<null>;
  private halt!: () => void;

  constructor(private readonly opts: AuditSyncOptions) {
    super();
    this.log = opts.log;
    this.transport = opts.transport;
    this.maxRecords = positive(opts.maxRecords ?? 5000, 'maxRecords');
    this.maxBytes = positive(opts.maxBytes ?? 4 * 1024 * 1024, 'maxBytes');
    this.maxInFlight = positive(opts.maxInFlight ?? 2, 'maxInFlight');
    this.intervalMs = positive(opts.intervalMs ?? 5000, 'intervalMs');
    this.timeoutMs = positive(opts.timeoutMs ?? 30_000, 'timeoutMs');
    this.backoff = opts.backoff ?? DEFAULT_SYNC_BACKOFF;
    const problem = checkBackoffPolicy(this.backoff);
    if (problem !== null) throw new AuditSyncError('SYNC_BAD_OPTION', problem);
    this.random = opts.random ?? Math.random;
    this.halted = new Promise((resolve) => (this.halt = () => resolve(null)));
  }

  start(): void {
    if (this.running !== null || this.stopped) return;
    this.nextSeq = this.log.capacity().syncedSeq + 1;
    this.running = this.loop();
  }

  /** Stops the loop; batches in flight are abandoned (resent after the next start). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.halt();
    this.wake?.();
    await this.running;
    this.setState('stopped');
  }

  /** Looks for new records now instead of at the next interval (e.g. the transport came online). */
  poke(): void {
    this.wake?.();
  }

  status(): SyncStatus {
    const capacity = this.log.capacity();
    const oldest = capacity.unsyncedRecords > 0 ? this.log.reader.record(capacity.syncedSeq + 1) : undefined;
    return {
      transport: this.transport.name,
      state: this.state,
      syncedSeq: capacity.syncedSeq,
      headSeq: capacity.headSeq,
      backlog: {
        records: capacity.unsyncedRecords,
        bytes: capacity.unsyncedBytes,
        oldestAgeMs: oldest === undefined ? null : Math.max(0, this.opts.now() - oldest.timeMs),
      },
      lastSyncMs: this.lastSyncMs,
      inFlight: this.inFlight.length,
      lastError: this.lastError,
      batches: { ...this.counts },
      recordsSent: this.recordsSent,
      bytesSent: this.bytesSent,
    };
  }

  // -------------------------------------------------------------------------------------

  private async loop(): Promise<void> {
    while (!this.stopped) {
      if (!this.transport.ready()) {
        this.abandon();
        this.setState('offline');
        await this.sleep(this.intervalMs);
        continue;
      }
      try {
        await this.fill();
        const sent = this.inFlight[0];
        if (sent === undefined) {
          if (this.state === 'starting' || this.state === 'offline') this.setState('connected');
          await this.sleep(this.intervalMs);
          continue;
        }
        const ack = await Promise.race([sent.answer, this.halted]);
        if (ack === null || this.stopped) break;
        this.inFlight.shift();
        await this.settle(sent, ack);
      } catch (err) {
        if (this.stopped) break;
        this.fail(err);
        await this.sleep(backoffDelayMs(this.attempt++, this.backoff, this.random));
      }
    }
    this.abandon();
  }

  /** Reads, signs and sends batches until `maxInFlight` are travelling or the log is sent. */
  private async fill(): Promise<void> {
    while (this.inFlight.length < this.maxInFlight && !this.stopped) {
      const batch = await this.build(this.nextSeq);
      if (batch === null) return;
      const { bytes, headBytes, first, last, records, recordBytes: size } = batch;
      const id = batchId(headBytes);
      const answer = this.transport.send(bytes, id, this.timeoutMs).then((reply) => this.check(reply, id));
      answer.catch(() => undefined); // observed when its turn comes, or abandoned
      this.inFlight.push({ first, last, id, records, bytes: size, answer });
      this.nextSeq = last + 1;
      this.recordsSent += records;
      this.bytesSent += bytes.length;
    }
  }

  private async build(from: number): Promise<(Awaited<ReturnType<typeof encodeBatch>> & { records: number; recordBytes: number }) | null> {
    const read = await readBatch(this.log, from, this.maxRecords, this.maxBytes);
    if (read === null) return null;
    const encoded = await encodeBatch({
      device: this.opts.device,
      first: from,
      records: read.records,
      head: this.log.head().seq,
      timeMs: this.opts.now(),
      ...(read.cover === undefined ? {} : { cover: read.cover, proof: read.proof }),
      key: this.opts.deviceKey,
    });
    return { ...encoded, records: read.records.length, recordBytes: read.bytes };
  }

  /** Verifies an answer: signed by the collector, about this device and this batch. */
  private check(reply: Uint8Array, id: Uint8Array): Ack {
    const ack = verifyAck(reply, this.opts.collectorKey);
    if (ack.device !== this.opts.device) throw new AuditSyncError('SYNC_BAD_ACK', `the acknowledgement is for device ${ack.device}`);
    if (!bytesEqual(ack.batch, id)) throw new AuditSyncError('SYNC_BAD_ACK', `the acknowledgement answers batch ${toHex(ack.batch).slice(0, 16)}, not ${toHex(id).slice(0, 16)}`);
    try {
      this.opts.onUpstreamTime?.(ack.timeMs);
    } catch {
      // A time the clock refuses leaves the clock alone; the acknowledgement itself stands.
    }
    return ack;
  }

  private async settle(sent: Sent, ack: Ack): Promise<void> {
    if (ack.status === 'ahead') {
      // Nothing stored: the collector's log ends earlier (a reordered or lost batch).
      this.abandon();
      this.nextSeq = ack.seq + 1;
      this.attempt++;
      if (this.attempt > 1) await this.sleep(backoffDelayMs(this.attempt - 2, this.backoff, this.random));
      return;
    }
    if (ack.status === 'refused') {
      this.counts.refused++;
      throw new SyncRefusal(ack.code ?? 'SYNC_REFUSED', ack.message ?? 'the collector refused the batch', ack.at);
    }
    if (ack.seq < sent.last) throw new AuditSyncError('SYNC_BAD_ACK', `the collector says stored, but holds only up to ${ack.seq} of ${sent.first}…${sent.last}`);
    if (sent.last > this.log.capacity().syncedSeq) await this.log.markSynced(sent.last);
    this.counts.stored++;
    this.attempt = 0;
    this.lastSyncMs = this.opts.now();
    this.lastError = null;
    this.setState('connected');
    this.emit('stored', { first: sent.first, last: sent.last, syncedSeq: this.log.capacity().syncedSeq });
    this.maybePrune();
  }

  private fail(err: unknown): void {
    this.abandon();
    this.nextSeq = this.log.capacity().syncedSeq + 1;
    const refused = err instanceof SyncRefusal;
    const error: SyncError = {
      code: codeOf(err),
      message: err instanceof Error ? err.message : String(err),
      ...(refused && err.seq !== undefined ? { seq: err.seq } : {}),
      atMs: this.opts.now(),
    };
    if (!refused) this.counts.failed++;
    this.lastError = error;
    this.setState(refused ? 'refused' : 'unreachable');
    this.emit('problem', error);
  }

  /** Forgets batches in flight; their answers, if any come, are ignored. */
  private abandon(): void {
    this.inFlight = [];
  }

  private maybePrune(): void {
    if (this.opts.prune === false) return;
    const now = Date.now();
    if (now - this.lastPruneMs < MIN_PRUNE_INTERVAL_MS) return;
    this.lastPruneMs = now;
    this.log.prune().catch((err: unknown) => this.emit('problem', { code: 'SYNC_PRUNE_FAILED', message: (err as Error).message, atMs: this.opts.now() }));
  }

  private setState(state: UpstreamState): void {
    if (state === this.state) return;
    this.state = state;
    this.emit('state', state);
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }
}

export interface ReadBatch {
  records: BatchRecord[];
  /** Their bytes as the cap counts them. */
  bytes: number;
  /** The first checkpoint after the last record, unless the last record is one, and the proof to it. */
  cover?: BatchCover;
  proof?: Uint8Array[];
}

/**
 * Reads the next batch from `from`: at most `maxRecords` records and `maxBytes` bytes (at least
 * one record), and the checkpoint that covers it — asking the log for one at its head when none
 * follows yet. Null when there is nothing from `from` on.
 */
export async function readBatch(log: SyncableLog, from: number, maxRecords: number, maxBytes: number): Promise<ReadBatch | null> {
  const { reader } = log;
  if (from > log.head().seq) return null;
  const meta = reader.meta();
  if (from <= meta.prunedSeq) {
    throw new AuditSyncError('SYNC_COLLECTOR_BEHIND', `the collector needs records from ${from}, but they were pruned here (up to ${meta.prunedSeq})`);
  }
  const rows = reader.readForSync(from, maxRecords);
  let bytes = 0;
  let n = 0;
  for (const r of rows) {
    const b = recordBytes(r.kind, r.body);
    if (n > 0 && bytes + b > maxBytes) break;
    bytes += b;
    n++;
  }
  const records = rows.slice(0, n);
  const last = records[records.length - 1];
  if (last === undefined) return null;
  if (last.kind === 'checkpoint') return { records, bytes };
  let cover = reader.firstCheckpointAfter(last.seq);
  if (cover === undefined) {
    await log.checkpoint();
    cover = reader.firstCheckpointAfter(last.seq);
    if (cover === undefined) throw new AuditSyncError('SYNC_NO_CHECKPOINT', `no checkpoint covers record ${last.seq}`);
  }
  let proof: Uint8Array[] = [];
  try {
    if (cover.seq - 1 > last.seq) proof = reader.consistencyProof(last.seq, cover.seq - 1);
  } catch (err) {
    // The local tree cannot be read past a missing record (one deleted behind the log's back).
    // The batch goes anyway: the collector finds the gap and reports it with its seq, which is
    // what an operator needs to see; an empty proof never passes its checks.
    if ((err as { code?: unknown }).code !== 'AUDIT_TREE_INCOMPLETE') throw err;
  }
  return { records, bytes, cover, proof };
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code) ? code : 'SYNC_FAILED';
}

function positive(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new AuditSyncError('SYNC_BAD_OPTION', `${what} must be a positive integer`);
  return n;
}
