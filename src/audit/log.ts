// The audit log on SQLite: append-only, hash-chained, group-committed.
//
// Appends join the state database's group commit (agent/group-commit.ts): everything written in
// the same turn of the event loop — audit records, replay entries, outbox messages — shares one
// transaction and one WAL flush. append() resolves only once that transaction is durable: the
// caller executes an action only after its record is on disk. UPDATE is refused by
// a trigger; DELETE only below the synced watermark (pruning after the collector has
// acknowledged).
import type { Database, Statement } from 'better-sqlite3';
import { GroupCommit } from '../store/group-commit.js';
import { migrate } from '../store/state-db.js';
import { type AuditKind, type AuditRecord, type ChainBreak, AUDIT_KINDS, GENESIS_HASH, recordHash, verifyChain } from './chain.js';
import { ZtedgeError } from '../errors.js';

export interface AuditRef {
  seq: number;
  hash: Uint8Array;
}

/** What the rest of the agent needs from the audit log. */
export interface AuditSink {
  /** Resolves once the record is committed durably; rejects with AuditError if it could not be. */
  append(kind: AuditKind, body: Uint8Array): Promise<AuditRef>;
}

export type AuditErrorCode = 'AUDIT_BAD_KIND' | 'AUDIT_BODY_TOO_LARGE' | 'AUDIT_WRITE_FAILED';

export class AuditError extends ZtedgeError<AuditErrorCode> {}

const SCHEMA = `
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

export interface AuditLogOptions {
  now: () => number;
  /** Largest body accepted, in bytes. */
  maxBodyBytes?: number;
  /** The database's shared group commit; without one the log batches its own appends. */
  commits?: GroupCommit;
}

export class SqliteAuditLog implements AuditSink {
  private readonly insert: Statement;
  private readonly now: () => number;
  private readonly maxBodyBytes: number;
  private readonly commits: GroupCommit;
  /** Head of the committed chain. */
  private committed: AuditRef;
  /** Head including records written in the open batch (equal to `committed` between batches). */
  private written: AuditRef;

  constructor(
    private readonly db: Database,
    opts: AuditLogOptions,
  ) {
    this.now = opts.now;
    this.maxBodyBytes = opts.maxBodyBytes ?? 64 * 1024;
    this.commits = opts.commits ?? new GroupCommit(db);
    migrate(db, 'audit', [SCHEMA]);
    this.insert = db.prepare('INSERT INTO audit (seq, time_ms, kind, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)');
    this.committed = this.readHead();
    this.written = this.committed;
  }

  append(kind: AuditKind, body: Uint8Array): Promise<AuditRef> {
    if (!AUDIT_KINDS.includes(kind)) return Promise.reject(new AuditError('AUDIT_BAD_KIND', `unknown audit kind ${String(kind)}`));
    if (body.length > this.maxBodyBytes) {
      return Promise.reject(new AuditError('AUDIT_BODY_TOO_LARGE', `audit body of ${body.length} bytes exceeds ${this.maxBodyBytes}`));
    }
    let ref: AuditRef | undefined;
    return this.commits
      .run(
        () => {
          // Seq and hash are taken at write time, in commit order, so the chain has no gaps.
          const seq = this.written.seq + 1;
          const timeMs = Math.max(this.now(), 0);
          const hash = recordHash(this.written.hash, seq, timeMs, kind, body);
          this.insert.run(seq, timeMs, kind, body, this.written.hash, hash);
          ref = { seq, hash };
          this.written = ref;
          return ref;
        },
        (committed) => {
          if (!committed) this.written = this.committed;
          else if (ref !== undefined) this.committed = ref;
        },
      )
      .catch((err: unknown) => {
        throw new AuditError('AUDIT_WRITE_FAILED', `audit commit failed: ${(err as Error).message}`);
      });
  }

  /** Commits pending appends now (with every other write queued on the same group commit). */
  flush(): void {
    this.commits.flush();
  }

  /** The newest committed record. */
  head(): AuditRef {
    return this.committed;
  }

  /** Records from `fromSeq` on, at most `limit`. */
  read(fromSeq: number, limit: number): AuditRecord[] {
    const rows = this.db
      .prepare('SELECT seq, time_ms, kind, body, prev_hash, hash FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?')
      .all(fromSeq, limit) as Array<{ seq: number; time_ms: number; kind: AuditKind; body: Buffer; prev_hash: Buffer; hash: Buffer }>;
    return rows.map((r) => ({
      seq: r.seq,
      timeMs: r.time_ms,
      kind: r.kind,
      body: new Uint8Array(r.body),
      prevHash: new Uint8Array(r.prev_hash),
      hash: new Uint8Array(r.hash),
    }));
  }

  /** Re-verifies the whole stored chain from the last pruned point. */
  verify(): ChainBreak | undefined {
    const meta = this.db.prepare('SELECT pruned_seq, pruned_hash FROM audit_meta WHERE id = 1').get() as { pruned_seq: number; pruned_hash: Buffer };
    const records = this.iterate(meta.pruned_seq + 1);
    return verifyChain(records, new Uint8Array(meta.pruned_hash), meta.pruned_seq + 1);
  }

  private *iterate(fromSeq: number): Generator<AuditRecord> {
    let next = fromSeq;
    for (;;) {
      const page = this.read(next, 1000);
      if (page.length === 0) return;
      yield* page;
      next = page[page.length - 1]!.seq + 1;
    }
  }

  private readHead(): AuditRef {
    const row = this.db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: Buffer } | undefined;
    if (row !== undefined) return { seq: row.seq, hash: new Uint8Array(row.hash) };
    const meta = this.db.prepare('SELECT pruned_seq, pruned_hash FROM audit_meta WHERE id = 1').get() as { pruned_seq: number; pruned_hash: Buffer };
    return { seq: meta.pruned_seq, hash: meta.pruned_seq === 0 ? GENESIS_HASH : new Uint8Array(meta.pruned_hash) };
  }
}
