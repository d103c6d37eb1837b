// Reading the audit log's tables: records, tree, checkpoints, device keys and bookkeeping. Used by
// the log itself and, on a read-only connection, by the operator's `ztedge audit` commands while
// the agent runs: in WAL mode a reader never blocks the writer, and a read transaction sees one
// consistent snapshot.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Database as SqliteDatabase, Statement } from 'better-sqlite3';
import { type KeyType, isKeyType } from '../crypto/algorithms.js';
import { type PublicKey, publicKeyFromRaw } from '../crypto/keys.js';
import { type AuditKind, type AuditRecord, AUDIT_KINDS, GENESIS_HASH } from './chain.js';
import { type Checkpoint, readUnverifiedCheckpoint } from './checkpoint.js';
import { CompactRange, consistencyProof, inclusionProof, treeRoot } from './merkle.js';
import { StoredTree } from './tree-store.js';
import { ZtedgeError } from '../errors.js';

/** The audit module's schema version this code reads and writes. */
export const AUDIT_SCHEMA_VERSION = 2;

export class AuditReadError extends ZtedgeError<'AUDIT_DB_UNREADABLE' | 'AUDIT_SCHEMA_MISMATCH' | 'AUDIT_NOT_FOUND' | 'AUDIT_BAD_RANGE' | 'AUDIT_NO_CHECKPOINT'> {}

export interface AuditMeta {
  syncedSeq: number;
  syncedBytes: number;
  prunedSeq: number;
  prunedHash: Uint8Array;
}

export interface TreeHead {
  /** Records the stored compact range covers. */
  size: number;
  frontier: CompactRange;
  /** Bytes of every record ever appended (see recordBytes). */
  bytes: number;
  /** The newest checkpoint record's seq (0: none) and the root it signed. */
  checkpointSeq: number;
  checkpointRoot: Uint8Array;
}

export interface StoredCheckpoint {
  seq: number;
  checkpoint: Checkpoint;
  /** The record body (COSE_Sign1 + note signature). */
  body: Uint8Array;
}

export interface DeviceKeyEntry {
  key: PublicKey;
  /** The first checkpoint seq signed with it. */
  sinceSeq: number;
}

type RecordRow = { seq: number; time_ms: number; kind: string; body: Buffer; prev_hash: Buffer; hash: Buffer };

export class AuditReader {
  private readonly page: Statement<[number, number, number], RecordRow>;
  private readonly one: Statement<[number], RecordRow>;
  private readonly lastRow: Statement<[], { seq: number }>;
  private readonly syncPage: Statement<[number, number]>;

  constructor(readonly db: SqliteDatabase) {
    const version = (db.prepare("SELECT version FROM schema_version WHERE module = 'audit'").get() as { version: number } | undefined)?.version;
    if (version !== AUDIT_SCHEMA_VERSION) {
      throw new AuditReadError(
        'AUDIT_SCHEMA_MISMATCH',
        version === undefined ? 'no audit log in this database' : `audit schema version ${version}, this build reads ${AUDIT_SCHEMA_VERSION} (start the agent once to upgrade an older log)`,
      );
    }
    this.page = db.prepare('SELECT seq, time_ms, kind, body, prev_hash, hash FROM audit WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?');
    this.one = db.prepare('SELECT seq, time_ms, kind, body, prev_hash, hash FROM audit WHERE seq = ?');
    this.lastRow = db.prepare('SELECT seq FROM audit ORDER BY seq DESC LIMIT 1');
    this.syncPage = db.prepare<[number, number]>('SELECT seq, time_ms, kind, body, hash FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?').raw(true);
  }

  meta(): AuditMeta {
    const row = this.db.prepare('SELECT synced_seq, synced_bytes, pruned_seq, pruned_hash FROM audit_meta WHERE id = 1').get() as
      | { synced_seq: number; synced_bytes: number; pruned_seq: number; pruned_hash: Buffer }
      | undefined;
    if (row === undefined) throw new AuditReadError('AUDIT_SCHEMA_MISMATCH', 'audit_meta row is missing');
    return {
      syncedSeq: row.synced_seq,
      syncedBytes: row.synced_bytes,
      prunedSeq: row.pruned_seq,
      prunedHash: row.pruned_seq === 0 ? GENESIS_HASH : new Uint8Array(row.pruned_hash),
    };
  }

  treeHead(): TreeHead {
    const row = this.db.prepare('SELECT size, frontier, bytes, checkpoint_seq, checkpoint_root FROM audit_head WHERE id = 1').get() as
      | { size: number; frontier: Buffer; bytes: number; checkpoint_seq: number; checkpoint_root: Buffer }
      | undefined;
    if (row === undefined) throw new AuditReadError('AUDIT_SCHEMA_MISMATCH', 'audit_head row is missing');
    return {
      size: row.size,
      frontier: CompactRange.decode(row.size, new Uint8Array(row.frontier)),
      bytes: row.bytes,
      checkpointSeq: row.checkpoint_seq,
      checkpointRoot: new Uint8Array(row.checkpoint_root),
    };
  }

  /** Seq of the newest record (the pruned point when every record has been pruned). */
  lastSeq(): number {
    return this.lastRow.get()?.seq ?? this.meta().prunedSeq;
  }

  /** Records with seq in [fromSeq, toSeq], at most `limit`. */
  read(fromSeq: number, limit: number, toSeq = Number.MAX_SAFE_INTEGER): AuditRecord[] {
    return this.page.all(fromSeq, toSeq, limit).map(toRecord);
  }

  record(seq: number): AuditRecord | undefined {
    const row = this.one.get(seq);
    return row === undefined ? undefined : toRecord(row);
  }

  /** Records from `fromSeq` to `toSeq` (inclusive), read a page at a time. */
  *iterate(fromSeq: number, toSeq = Number.MAX_SAFE_INTEGER, pageSize = 1000): Generator<AuditRecord> {
    let next = fromSeq;
    while (next <= toSeq) {
      const page = this.read(next, pageSize, toSeq);
      if (page.length === 0) return;
      yield* page;
      next = page[page.length - 1]!.seq + 1;
    }
  }

  /** Device keys the log has signed checkpoints with (as recorded by the agent itself). */
  keys(): DeviceKeyEntry[] {
    const rows = this.db.prepare('SELECT key_type, public_key, since_seq FROM audit_keys ORDER BY since_seq').all() as Array<{
      key_type: string;
      public_key: Buffer;
      since_seq: number;
    }>;
    return rows.filter((r) => isKeyType(r.key_type)).map((r) => ({ key: publicKeyFromRaw(r.key_type as KeyType, new Uint8Array(r.public_key)), sinceSeq: r.since_seq }));
  }

  /** The newest checkpoint record at or before `atOrBeforeSeq` (unverified). */
  latestCheckpoint(atOrBeforeSeq = Number.MAX_SAFE_INTEGER): StoredCheckpoint | undefined {
    const row = this.db
      .prepare("SELECT seq, time_ms, kind, body, prev_hash, hash FROM audit WHERE kind = 'checkpoint' AND seq <= ? ORDER BY seq DESC LIMIT 1")
      .get(atOrBeforeSeq) as RecordRow | undefined;
    if (row === undefined) return undefined;
    const body = new Uint8Array(row.body);
    return { seq: row.seq, checkpoint: readUnverifiedCheckpoint(body), body };
  }

  /** The first checkpoint record after `afterSeq` (unverified): the one covering record afterSeq + 1 … its seq − 1. */
  nextCheckpoint(afterSeq: number): StoredCheckpoint | undefined {
    const row = this.db
      .prepare("SELECT seq, time_ms, kind, body, prev_hash, hash FROM audit WHERE kind = 'checkpoint' AND seq > ? ORDER BY seq LIMIT 1")
      .get(afterSeq) as RecordRow | undefined;
    if (row === undefined) return undefined;
    const body = new Uint8Array(row.body);
    return { seq: row.seq, checkpoint: readUnverifiedCheckpoint(body), body };
  }

  /**
   * Records from `fromSeq` on, at most `limit`, without their previous hash and as the driver
   * returns their bytes (no copies): the upstream sync reads the log this way, thousands at a time.
   */
  readForSync(fromSeq: number, limit: number): Array<{ seq: number; timeMs: number; kind: AuditKind; body: Uint8Array; hash: Uint8Array }> {
    const rows = this.syncPage.all(fromSeq, limit) as Array<[number, number, string, Buffer, Buffer]>;
    return rows.map(([seq, timeMs, kind, body, hash]) => ({ seq, timeMs, kind: kind as AuditKind, body, hash }));
  }

  /** The first checkpoint record after `seq` (what covers records up to `seq` once synced), unverified. */
  firstCheckpointAfter(seq: number): { seq: number; body: Uint8Array } | undefined {
    const row = this.db.prepare("SELECT seq, body FROM audit WHERE kind = 'checkpoint' AND seq > ? ORDER BY seq LIMIT 1").get(seq) as
      | { seq: number; body: Buffer }
      | undefined;
    return row === undefined ? undefined : { seq: row.seq, body: new Uint8Array(row.body) };
  }

  /** A fresh view of the tree's perfect subtrees (one per proof: it memoizes). */
  tree(): StoredTree {
    return new StoredTree(this.db);
  }

  rootAt(size: number): Uint8Array {
    this.checkSize(size);
    return treeRoot(size, this.tree());
  }

  /** Audit path of record `seq` in the tree of `size` records. */
  inclusionProof(seq: number, size: number): Uint8Array[] {
    this.checkSize(size);
    if (!Number.isSafeInteger(seq) || seq < 1 || seq > size) throw new AuditReadError('AUDIT_BAD_RANGE', `record ${seq} is not in a tree of ${size} records`);
    return inclusionProof(seq - 1, size, this.tree());
  }

  consistencyProof(oldSize: number, newSize: number): Uint8Array[] {
    this.checkSize(newSize);
    if (!Number.isSafeInteger(oldSize) || oldSize < 1 || oldSize > newSize) throw new AuditReadError('AUDIT_BAD_RANGE', `no consistency proof from ${oldSize} to ${newSize}`);
    return consistencyProof(oldSize, newSize, this.tree());
  }

  /** Runs `fn` in one read transaction: everything it reads comes from one snapshot. */
  snapshot<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    this.db.exec('BEGIN');
    try {
      return fn();
    } finally {
      this.db.exec('COMMIT');
    }
  }

  private checkSize(size: number): void {
    const last = this.lastSeq();
    if (!Number.isSafeInteger(size) || size < 0 || size > last) throw new AuditReadError('AUDIT_BAD_RANGE', `the log has ${last} records, not ${size}`);
  }
}

function toRecord(r: RecordRow): AuditRecord {
  return {
    seq: r.seq,
    timeMs: r.time_ms,
    // Verification checks every stored kind through the hash; an unknown one is still shown as stored.
    kind: r.kind as AuditKind,
    body: new Uint8Array(r.body),
    prevHash: new Uint8Array(r.prev_hash),
    hash: new Uint8Array(r.hash),
  };
}

export function isKnownKind(kind: string): kind is AuditKind {
  return (AUDIT_KINDS as readonly string[]).includes(kind);
}

/** The state database inside an agent's state directory (see agent/runtime.ts). */
export function stateDbPath(stateDir: string): string {
  return path.join(stateDir, 'state.db');
}

/**
 * Opens an agent's state database read-only, for reading while the agent runs: no write lock is
 * ever taken, so the agent is never blocked (WAL readers and the writer do not wait on each other).
 */
export function openReadOnly(dbPath: string): SqliteDatabase {
  if (!fs.existsSync(dbPath)) throw new AuditReadError('AUDIT_DB_UNREADABLE', `${dbPath} does not exist`);
  let db: SqliteDatabase;
  try {
    db = new Database(dbPath, { readonly: true, fileMustExist: true, timeout: 5000 });
    db.pragma('query_only = ON');
    // Touch the schema now, so that a file that is not a database fails here with a clear error.
    db.prepare('SELECT count(*) FROM sqlite_master').get();
  } catch (err) {
    throw new AuditReadError('AUDIT_DB_UNREADABLE', `cannot read ${dbPath}: ${(err as Error).message}`);
  }
  return db;
}
