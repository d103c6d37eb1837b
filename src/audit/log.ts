// The audit log on SQLite: append-only, hash-chained, Merkle-checkpointed, group-committed,
// capped.
//
// Appends join the state database's group commit (store/group-commit.ts): everything written in
// the same turn of the event loop — audit records, replay entries, outbox messages — shares one
// transaction and one WAL flush. append() resolves only once that transaction is durable: the
// caller executes an action only after its record is on disk. UPDATE is refused by a trigger;
// DELETE only below the synced watermark (pruning after the collector has acknowledged).
//
// The Merkle tree (merkle.ts, tree-store.ts) is kept incrementally: each append adds its record
// hash to the in-memory compact range and stores the tile roots it completes; the last append of
// each batch writes the compact range, the byte count and the newest checkpoint to `audit_head`
// in the same transaction. Opening the log reads that row; nothing is recomputed from the start.
//
// Checkpoints (checkpoint.ts): with a device key configured, a checkpoint record is written
// inside the batch as soon as `everyRecords` records follow the previous one, `everyMs` after the
// first record it would cover, when checkpoint() is called, and by close() at shutdown. Signing
// happens inside the write (≈ 50 µs of Ed25519 every `everyRecords` records) so that the
// checkpoint covers exactly the records before it in commit order.
//
// The cap: records not yet acknowledged by the upstream (seq > synced_seq) count against
// `capBytes`. Normal appends are refused with AUDIT_FULL once the unsynced bytes reach
// capBytes − reserveBytes (the log is then `full`); appends in the `reserve` area (the
// AUDIT_FULL denials, the agent's own lifecycle records) go on until capBytes; `safety` appends
// (a @safety command's records) and checkpoints are never refused for space. Space returns when
// markSynced() moves the watermark; prune() then deletes synced records older than the
// retention — never an unsynced one (the database trigger enforces it).
import type { Database, Statement } from 'better-sqlite3';
import { GroupCommit } from '../store/group-commit.js';
import { migrate } from '../store/state-db.js';
import type { PrivateKey } from '../crypto/keys.js';
import { defaultReserveBytes } from './cap.js';
import { type AuditKind, type AuditRecord, type ChainBreak, AUDIT_KINDS, GENESIS_HASH, recordHash, verifyChain } from './chain.js';
import { type Checkpoint, NO_PREVIOUS, checkOrigin, readUnverifiedCheckpoint, signCheckpoint } from './checkpoint.js';
import { CompactRange, EMPTY_ROOT, leafHash } from './merkle.js';
import { AUDIT_SCHEMA_VERSION, AuditReader, type StoredCheckpoint } from './reader.js';
import { TILE_WIDTH, TREE_SCHEMA, storedNodes } from './tree-store.js';
import { ZtedgeError } from '../errors.js';

export interface AuditRef {
  seq: number;
  hash: Uint8Array;
}

/**
 * Where an append may go when the log is near its cap:
 *   - `normal` (default): refused with AUDIT_FULL once the log is full;
 *   - `reserve`: the reserved area — refused only when the unsynced bytes reach the cap itself.
 *     For the AUDIT_FULL denials and the agent's own lifecycle records;
 *   - `safety`: never refused for space (a @safety command must always be recorded).
 */
export type AppendArea = 'normal' | 'reserve' | 'safety';

export interface AppendOptions {
  area?: AppendArea;
}

/** What the rest of the agent needs from the audit log. */
export interface AuditSink {
  /** Resolves once the record is committed durably; rejects with AuditError if it could not be. */
  append(kind: AuditKind, body: Uint8Array, options?: AppendOptions): Promise<AuditRef>;
}

export type AuditErrorCode =
  | 'AUDIT_BAD_AREA'
  | 'AUDIT_BAD_KIND'
  | 'AUDIT_BAD_OPTION'
  | 'AUDIT_BAD_SEQ'
  | 'AUDIT_BODY_TOO_LARGE'
  | 'AUDIT_FULL'
  | 'AUDIT_NO_CHECKPOINT_KEY'
  | 'AUDIT_PRUNE_FAILED'
  | 'AUDIT_SEQ_GAP'
  | 'AUDIT_SYNC_AHEAD'
  | 'AUDIT_SYNC_BACKWARDS'
  | 'AUDIT_TREE_INCOMPLETE'
  | 'AUDIT_TRUNCATED'
  | 'AUDIT_WRITE_FAILED';

export class AuditError extends ZtedgeError<AuditErrorCode> {}

/** Bytes a record counts for against the cap: its body and kind plus seq, time and two hashes. */
export const RECORD_OVERHEAD_BYTES = 80;
export const recordBytes = (kind: string, body: Uint8Array): number => body.length + kind.length + RECORD_OVERHEAD_BYTES;
const RECORD_BYTES_SQL = `length(body) + length(kind) + ${RECORD_OVERHEAD_BYTES}`;

const SCHEMA_V1 = `
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  body BLOB NOT NULL,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  synced_seq INTEGER NOT NULL,
  pruned_seq INTEGER NOT NULL,
  pruned_hash BLOB NOT NULL
);
INSERT OR IGNORE INTO audit_meta (id, synced_seq, pruned_seq, pruned_hash) VALUES (1, 0, 0, zeroblob(32));
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_prune_synced_only BEFORE DELETE ON audit
WHEN OLD.seq > (SELECT synced_seq FROM audit_meta WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'audit records may be pruned only after upstream sync'); END;
`;

const SCHEMA_V2 = `
${TREE_SCHEMA}
ALTER TABLE audit_meta ADD COLUMN synced_bytes INTEGER NOT NULL DEFAULT 0;
CREATE TABLE audit_keys (
  kid BLOB PRIMARY KEY,
  key_type TEXT NOT NULL,
  public_key BLOB NOT NULL,
  since_seq INTEGER NOT NULL
);
`;

const MIGRATIONS = [SCHEMA_V1, SCHEMA_V2];
if (MIGRATIONS.length !== AUDIT_SCHEMA_VERSION) throw new Error('audit schema version and migrations disagree');

export interface CheckpointOptions {
  /** The device key. */
  key: PrivateKey;
  device: string;
  /** The log's C2SP origin and note key name (default `ztedge/<device>`). */
  origin?: string;
  /** A checkpoint after this many records (default 1000). */
  everyRecords?: number;
  /** …or this long after the first record it would cover, whichever comes first (default 60 s). */
  everyMs?: number;
}

export interface CapOptions {
  /** Unsynced bytes at which even `reserve` appends are refused. */
  capBytes: number;
  /** The part of the cap kept for `reserve` appends (default 1 % of the cap, at least 256 KiB). */
  reserveBytes?: number;
}

export interface AuditLogOptions {
  now: () => number;
  /** Largest body accepted, in bytes. */
  maxBodyBytes?: number;
  /** The database's shared group commit; without one the log batches its own appends. */
  commits?: GroupCommit;
  /** Signed checkpoints; without them the log is hash-chained and Merkle-tree'd but unsigned. */
  checkpoints?: CheckpointOptions;
  /** Without a cap nothing is refused for space. */
  cap?: CapOptions;
  /** Synced records older than this may be pruned (default 7 days). */
  retentionMs?: number;
}

export interface AuditCapacity {
  /** Normal appends are refused (AUDIT_FULL); only `reserve` and `safety` appends are recorded. */
  full: boolean;
  /** Even `reserve` appends are refused (only `safety` ones are recorded). */
  reserveExhausted: boolean;
  unsyncedBytes: number;
  unsyncedRecords: number;
  /** null: no cap. */
  capBytes: number | null;
  reserveBytes: number;
  syncedSeq: number;
  headSeq: number;
}

/** The newest checkpoint in the chain (seq 0: none yet). */
interface CheckpointLink {
  seq: number;
  root: Uint8Array;
}

/** Everything an append moves along; immutable, so a rolled-back batch restores it by reference. */
interface Head {
  seq: number;
  hash: Uint8Array;
  tree: CompactRange;
  /** Cumulative recordBytes() of every record appended. */
  bytes: number;
  checkpoint: CheckpointLink;
}

const DEFAULT_RETENTION_MS = 7 * 86_400_000;
const DEFAULT_CHECKPOINT_RECORDS = 1000;
const DEFAULT_CHECKPOINT_MS = 60_000;
/** Records one prune() deletes at most (one transaction), a multiple of the tile width. */
const MAX_PRUNE_RECORDS = 64 * TILE_WIDTH;

export class SqliteAuditLog implements AuditSink {
  readonly reader: AuditReader;
  private readonly insert: Statement;
  private readonly insertNode: Statement;
  private readonly writeHead: Statement;
  private readonly insertKey: Statement;
  private readonly now: () => number;
  private readonly maxBodyBytes: number;
  private readonly commits: GroupCommit;
  private readonly checkpointing: Required<CheckpointOptions> | null;
  private readonly cap: Required<CapOptions> | null;
  private readonly retentionMs: number;
  /** Head of the committed log. */
  private committed: Head;
  /** Head including records written in the open batch (equal to `committed` between batches). */
  private written: Head;
  /** This log's writes queued and not yet run: the last one run in a batch writes audit_head. */
  private queuedWrites = 0;
  /** Bytes of appends queued and not yet written (counted against the cap at once). */
  private queuedBytes = 0;
  private syncedSeq: number;
  private syncedBytes: number;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly db: Database,
    opts: AuditLogOptions,
  ) {
    this.now = opts.now;
    this.maxBodyBytes = opts.maxBodyBytes ?? 64 * 1024;
    this.commits = opts.commits ?? new GroupCommit(db);
    this.checkpointing = opts.checkpoints === undefined ? null : checkCheckpointOptions(opts.checkpoints);
    this.cap = opts.cap === undefined ? null : checkCapOptions(opts.cap);
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    if (!Number.isSafeInteger(this.retentionMs) || this.retentionMs < 0) throw new AuditError('AUDIT_BAD_OPTION', 'retentionMs must be a non-negative integer');
    migrate(db, 'audit', MIGRATIONS);
    this.reader = new AuditReader(db);
    this.insert = db.prepare('INSERT INTO audit (seq, time_ms, kind, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)');
    this.insertNode = db.prepare('INSERT INTO audit_tree (level, idx, hash) VALUES (?, ?, ?)');
    this.writeHead = db.prepare('UPDATE audit_head SET size = ?, frontier = ?, bytes = ?, checkpoint_seq = ?, checkpoint_root = ? WHERE id = 1');
    this.insertKey = db.prepare('INSERT OR IGNORE INTO audit_keys (kid, key_type, public_key, since_seq) VALUES (?, ?, ?, ?)');
    this.committed = this.open();
    this.written = this.committed;
    const meta = this.reader.meta();
    this.syncedSeq = meta.syncedSeq;
    this.syncedBytes = meta.syncedBytes;
  }

  append(kind: AuditKind, body: Uint8Array, options: AppendOptions = {}): Promise<AuditRef> {
    if (!AUDIT_KINDS.includes(kind) || kind === 'checkpoint') {
      return Promise.reject(new AuditError('AUDIT_BAD_KIND', `cannot append audit kind ${String(kind)}`));
    }
    if (body.length > this.maxBodyBytes) {
      return Promise.reject(new AuditError('AUDIT_BODY_TOO_LARGE', `audit body of ${body.length} bytes exceeds ${this.maxBodyBytes}`));
    }
    const area = options.area ?? 'normal';
    if (area !== 'normal' && area !== 'reserve' && area !== 'safety') {
      return Promise.reject(new AuditError('AUDIT_BAD_AREA', `unknown append area ${String(area)}`));
    }
    const refusal = this.spaceRefusal(area);
    if (refusal !== undefined) return Promise.reject(refusal);
    const bytes = recordBytes(kind, body);
    return this.queue(bytes, () => {
      // Seq and hash are taken at write time, in commit order, so the chain has no gaps.
      const ref = this.writeRecord(kind, body, Math.max(this.now(), 0));
      if (this.checkpointing !== null && this.written.seq - this.written.checkpoint.seq >= this.checkpointing.everyRecords) this.writeCheckpoint();
      return ref;
    });
  }

  /**
   * Writes a checkpoint now if any record follows the newest one. Resolves with its record once
   * durable, or null when there was nothing new to cover.
   */
  checkpoint(): Promise<AuditRef | null> {
    if (this.checkpointing === null) return Promise.reject(new AuditError('AUDIT_NO_CHECKPOINT_KEY', 'checkpoints are not configured (no device key)'));
    return this.queue(0, () => (this.written.seq > this.written.checkpoint.seq ? this.writeCheckpoint() : null));
  }

  /**
   * For shutdown: stops the checkpoint timer and writes the final checkpoint (when configured and
   * records follow the newest one). The database stays open; its owner closes it afterwards.
   */
  async close(): Promise<void> {
    this.stopped = true;
    this.clearTimer();
    if (this.checkpointing !== null) await this.checkpoint();
  }

  capacity(): AuditCapacity {
    const unsyncedBytes = this.written.bytes + this.queuedBytes - this.syncedBytes;
    const capBytes = this.cap?.capBytes ?? null;
    const reserveBytes = this.cap?.reserveBytes ?? 0;
    return {
      full: capBytes !== null && unsyncedBytes >= capBytes - reserveBytes,
      reserveExhausted: capBytes !== null && unsyncedBytes >= capBytes,
      unsyncedBytes,
      unsyncedRecords: this.written.seq - this.syncedSeq,
      capBytes,
      reserveBytes,
      syncedSeq: this.syncedSeq,
      headSeq: this.committed.seq,
    };
  }

  /**
   * Moves the synced watermark to `seq` (the upstream has durably stored every record up to it):
   * their bytes stop counting against the cap, and they become prunable after the retention.
   * Resolves once durable. The watermark never moves back, nor past the committed head.
   */
  markSynced(seq: number): Promise<AuditCapacity> {
    if (!Number.isSafeInteger(seq) || seq < 0) return Promise.reject(new AuditError('AUDIT_BAD_SEQ', `synced seq must be a non-negative integer, got ${seq}`));
    if (seq > this.committed.seq) return Promise.reject(new AuditError('AUDIT_SYNC_AHEAD', `seq ${seq} is past the committed head ${this.committed.seq}`));
    if (seq < this.syncedSeq) return Promise.reject(new AuditError('AUDIT_SYNC_BACKWARDS', `the synced watermark is at ${this.syncedSeq}; it never moves back to ${seq}`));
    let after: { synced_seq: number; synced_bytes: number } | undefined;
    return this.commits.run(
      () => {
        this.db
          .prepare(
            `UPDATE audit_meta SET
               synced_bytes = synced_bytes + (SELECT coalesce(sum(${RECORD_BYTES_SQL}), 0) FROM audit WHERE seq > audit_meta.synced_seq AND seq <= @seq),
               synced_seq = @seq
             WHERE id = 1 AND synced_seq < @seq`,
          )
          .run({ seq });
        after = this.db.prepare('SELECT synced_seq, synced_bytes FROM audit_meta WHERE id = 1').get() as typeof after;
      },
      (committed) => {
        if (committed && after !== undefined) {
          this.syncedSeq = after.synced_seq;
          this.syncedBytes = after.synced_bytes;
        }
      },
    ).then(() => this.capacity());
  }

  /**
   * Deletes synced records older than the retention, up to a multiple of 256 records (so that
   * proofs about every retained record stay possible) and at most 16,384 per call. Resolves with
   * the number deleted. Records are assumed in time order (the trusted clock); a record out of
   * order is pruned with its neighbours, never past the synced watermark.
   */
  prune(nowMs: number = this.now()): Promise<number> {
    const { prunedSeq } = this.reader.meta();
    const cutoff = nowMs - this.retentionMs;
    const limit = Math.min(this.syncedSeq, this.committed.seq, prunedSeq + MAX_PRUNE_RECORDS);
    // The largest tile boundary p in (prunedSeq, limit] whose record is older than the cutoff.
    let lo = Math.floor(prunedSeq / TILE_WIDTH);
    let hi = Math.floor(limit / TILE_WIDTH);
    const timeOf = this.db.prepare<[number], { time_ms: number }>('SELECT time_ms FROM audit WHERE seq = ?');
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      const t = timeOf.get(mid * TILE_WIDTH)?.time_ms;
      if (t !== undefined && t < cutoff) lo = mid;
      else hi = mid - 1;
    }
    const upTo = lo * TILE_WIDTH;
    if (upTo <= prunedSeq) return Promise.resolve(0);
    return this.commits.runLazy(() => {
      const last = this.reader.record(upTo);
      if (last === undefined) throw new AuditError('AUDIT_PRUNE_FAILED', `record ${upTo} is missing`);
      const deleted = this.db.prepare('DELETE FROM audit WHERE seq > ? AND seq <= ?').run(prunedSeq, upTo).changes;
      this.db.prepare('UPDATE audit_meta SET pruned_seq = ?, pruned_hash = ? WHERE id = 1').run(upTo, last.hash);
      return deleted;
    });
  }

  /** Commits pending appends now (with every other write queued on the same group commit). */
  flush(): void {
    this.commits.flush();
  }

  /** The newest committed record. */
  head(): AuditRef {
    return { seq: this.committed.seq, hash: this.committed.hash };
  }

  /** Root of the committed log (RFC 9162 MTH over seq 1 … head). */
  root(): { size: number; root: Uint8Array } {
    return { size: this.committed.seq, root: this.committed.tree.root() };
  }

  /** The newest committed checkpoint record, without a search (its seq is kept with the head). */
  latestCheckpoint(): StoredCheckpoint | undefined {
    const { seq } = this.committed.checkpoint;
    if (seq === 0) return undefined;
    const record = this.reader.record(seq);
    return record === undefined ? this.reader.latestCheckpoint(seq) : { seq, checkpoint: readUnverifiedCheckpoint(record.body), body: record.body };
  }

  /** Records from `fromSeq` on, at most `limit`. */
  read(fromSeq: number, limit: number): AuditRecord[] {
    return this.reader.read(fromSeq, limit);
  }

  /** Re-verifies the whole stored chain from the last pruned point. */
  verify(): ChainBreak | undefined {
    const meta = this.reader.meta();
    return verifyChain(this.reader.iterate(meta.prunedSeq + 1), meta.prunedHash, meta.prunedSeq + 1);
  }

  // -------------------------------------------------------------------------------------

  private spaceRefusal(area: AppendArea): AuditError | undefined {
    if (this.cap === null || area === 'safety') return undefined;
    const { full, reserveExhausted, unsyncedBytes, capBytes } = this.capacity();
    if (area === 'normal' && full) {
      return new AuditError('AUDIT_FULL', `${unsyncedBytes} bytes of audit records await upstream sync (cap ${capBytes}, reserve ${this.cap.reserveBytes})`);
    }
    if (area === 'reserve' && reserveExhausted) {
      return new AuditError('AUDIT_FULL', `${unsyncedBytes} bytes of audit records await upstream sync; the reserve is used up too (cap ${capBytes})`);
    }
    return undefined;
  }

  /**
   * Queues one of this log's writes on the group commit. The last of them to run in a batch
   * writes audit_head; a rolled-back batch restores the committed head.
   */
  private queue<T>(bytes: number, write: () => T): Promise<T> {
    let ran = false;
    let after: Head | undefined;
    this.queuedWrites++;
    this.queuedBytes += bytes;
    return this.commits
      .run(
        () => {
          ran = true;
          this.queuedWrites--;
          this.queuedBytes -= bytes;
          const result = write();
          if (this.queuedWrites === 0) this.storeHead(this.written);
          after = this.written;
          return result;
        },
        (committed) => {
          if (!ran) {
            this.queuedWrites--;
            this.queuedBytes -= bytes;
          }
          if (!committed) this.written = this.committed;
          else if (after !== undefined) {
            this.committed = after;
            this.scheduleCheckpoint();
          }
        },
      )
      .catch((err: unknown) => {
        if (err instanceof AuditError) throw err;
        throw new AuditError('AUDIT_WRITE_FAILED', `audit commit failed: ${(err as Error).message}`);
      });
  }

  private writeRecord(kind: AuditKind, body: Uint8Array, timeMs: number): AuditRef {
    const prev = this.written;
    const seq = prev.seq + 1;
    const hash = recordHash(prev.hash, seq, timeMs, kind, body);
    this.insert.run(seq, timeMs, kind, body, prev.hash, hash);
    const { range, completed } = prev.tree.append(leafHash(hash));
    for (const node of storedNodes(completed)) this.insertNode.run(node.level, node.index, node.hash);
    this.written = { seq, hash, tree: range, bytes: prev.bytes + recordBytes(kind, body), checkpoint: prev.checkpoint };
    return { seq, hash };
  }

  /** Signs the tree of every record written so far and appends it as the next record. */
  private writeCheckpoint(): AuditRef {
    const { key, device, origin } = this.checkpointing!;
    const prev = this.written;
    const timeMs = Math.max(this.now(), 0);
    const root = prev.tree.root();
    const checkpoint: Checkpoint = {
      origin,
      device,
      size: prev.seq,
      root,
      timeMs,
      prevSize: prev.checkpoint.seq === 0 ? NO_PREVIOUS.size : prev.checkpoint.seq - 1,
      prevRoot: prev.checkpoint.root,
    };
    const body = signCheckpoint(checkpoint, key);
    const pub = key.publicKey;
    this.insertKey.run(pub.kid, pub.keyType, pub.raw, prev.seq + 1);
    const ref = this.writeRecord('checkpoint', body, timeMs);
    this.written = { ...this.written, checkpoint: { seq: ref.seq, root } };
    return ref;
  }

  private storeHead(head: Head): void {
    this.writeHead.run(head.seq, head.tree.encode(), head.bytes, head.checkpoint.seq, head.checkpoint.root);
  }

  /** A checkpoint `everyMs` after the first committed record no checkpoint covers yet. */
  private scheduleCheckpoint(): void {
    if (this.checkpointing === null || this.stopped) return;
    const uncovered = this.committed.seq > this.committed.checkpoint.seq;
    if (!uncovered) return this.clearTimer();
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      // A failure here failed the whole batch, whose callers are told; the next commit re-arms.
      this.checkpoint().catch(() => undefined);
    }, this.checkpointing.everyMs);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * Reads the head: the stored compact range, brought up to the last record if an older schema
   * (or anything else) left it behind. A tree head ahead of the records means records were
   * removed from the end of the log: refused, never papered over.
   */
  private open(): Head {
    const stored = this.reader.treeHead();
    const meta = this.reader.meta();
    const last = this.reader.lastSeq();
    if (stored.size > last) {
      throw new AuditError('AUDIT_TRUNCATED', `the audit tree covers ${stored.size} records but the log ends at ${last}: records were removed from its end`);
    }
    if (stored.size < meta.prunedSeq) {
      throw new AuditError('AUDIT_TREE_INCOMPLETE', `the audit tree stops at ${stored.size}, before the pruned point ${meta.prunedSeq}`);
    }
    const hashAt = (seq: number): Uint8Array => {
      if (seq === meta.prunedSeq) return meta.prunedHash;
      const record = this.reader.record(seq);
      if (record === undefined) throw new AuditError('AUDIT_SEQ_GAP', `record ${seq} is missing`);
      return record.hash;
    };
    const head: Head = {
      seq: stored.size,
      hash: hashAt(stored.size),
      tree: stored.frontier,
      bytes: stored.bytes,
      checkpoint: { seq: stored.checkpointSeq, root: stored.checkpointSeq === 0 ? EMPTY_ROOT : stored.checkpointRoot },
    };
    return stored.size === last ? head : this.catchUp(head);
  }

  /** Adds records the stored tree does not cover yet (a log written before the tree existed). */
  private catchUp(from: Head): Head {
    const insertNode = this.db.prepare('INSERT OR IGNORE INTO audit_tree (level, idx, hash) VALUES (?, ?, ?)');
    return this.db
      .transaction(() => {
        let h = from;
        for (const record of this.reader.iterate(from.seq + 1)) {
          if (record.seq !== h.seq + 1) throw new AuditError('AUDIT_SEQ_GAP', `record ${h.seq + 1} is missing`);
          const { range, completed } = h.tree.append(leafHash(record.hash));
          for (const node of storedNodes(completed)) insertNode.run(node.level, node.index, node.hash);
          // A checkpoint record covers the tree before it.
          const checkpoint = record.kind === 'checkpoint' ? { seq: record.seq, root: h.tree.root() } : h.checkpoint;
          h = { seq: record.seq, hash: record.hash, tree: range, bytes: h.bytes + recordBytes(record.kind, record.body), checkpoint };
        }
        this.storeHead(h);
        return h;
      })
      .immediate();
  }
}

function checkCheckpointOptions(o: CheckpointOptions): Required<CheckpointOptions> {
  const everyRecords = o.everyRecords ?? DEFAULT_CHECKPOINT_RECORDS;
  const everyMs = o.everyMs ?? DEFAULT_CHECKPOINT_MS;
  if (!Number.isSafeInteger(everyRecords) || everyRecords < 1) throw new AuditError('AUDIT_BAD_OPTION', 'checkpoints.everyRecords must be a positive integer');
  if (!Number.isSafeInteger(everyMs) || everyMs < 1) throw new AuditError('AUDIT_BAD_OPTION', 'checkpoints.everyMs must be a positive integer');
  const origin = o.origin ?? `ztedge/${o.device}`;
  try {
    checkOrigin(origin);
  } catch (err) {
    throw new AuditError('AUDIT_BAD_OPTION', `checkpoints.origin: ${(err as Error).message}`);
  }
  return { key: o.key, device: o.device, origin, everyRecords, everyMs };
}

function checkCapOptions(o: CapOptions): Required<CapOptions> {
  if (!Number.isSafeInteger(o.capBytes) || o.capBytes < 1) throw new AuditError('AUDIT_BAD_OPTION', 'cap.capBytes must be a positive integer');
  const reserveBytes = o.reserveBytes ?? defaultReserveBytes(o.capBytes);
  if (!Number.isSafeInteger(reserveBytes) || reserveBytes < 0 || reserveBytes > o.capBytes) {
    throw new AuditError('AUDIT_BAD_OPTION', 'cap.reserveBytes must be an integer from 0 to cap.capBytes');
  }
  return { capBytes: o.capBytes, reserveBytes };
}
