// The log keeps its Merkle tree incrementally in the database: the root after every batch is
// the RFC 9162 root of the record hashes, reopening reads the stored compact range instead of
// the records, proofs read only tile segments, and a log from before the tree gets its tree once.
import { afterEach, describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/store/group-commit.js';
import { recordHash, GENESIS_HASH } from '../../src/audit/chain.js';
import { SqliteAuditLog } from '../../src/audit/log.js';
import { inclusionProof, leafHash, verifyConsistency, verifyInclusion } from '../../src/audit/merkle.js';
import { TILE_WIDTH } from '../../src/audit/tree-store.js';
import { verifyStoredLog } from '../../src/audit/verify.js';
import { body, naiveRoot, T0, tempStateDir } from './support.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function setup() {
  const t = tempStateDir();
  cleanups.push(t.remove);
  return t;
}

/** Appends `count` records in batches of various sizes; returns their hashes in seq order. */
async function fill(log: SqliteAuditLog, count: number, tag = 'r'): Promise<void> {
  let done = 0;
  let batch = 1;
  while (done < count) {
    const n = Math.min(batch, count - done);
    await Promise.all(Array.from({ length: n }, (_, i) => log.append('command', body(`${tag}${done + i}`))));
    done += n;
    batch = (batch * 3 + 1) % 97;
  }
}

const hashesOf = (log: SqliteAuditLog) => [...log.reader.iterate(1)].map((r) => r.hash);

describe('the audit log Merkle tree', () => {
  it('has the RFC 9162 root of its record hashes after every batch and after reopening', async () => {
    const t = setup();
    let db = t.open();
    let clock = T0;
    let log = new SqliteAuditLog(db, { now: () => clock++ });
    expect(log.root().root).toEqual(naiveRoot([]));
    for (const step of [1, 2, 5, 120, 400, 300]) {
      await fill(log, step);
      expect(log.root()).toEqual({ size: log.head().seq, root: naiveRoot(hashesOf(log)) });
    }
    const size = log.head().seq;
    expect(size).toBe(828);
    // One stored node per full tile of 256 leaves (level 8); nothing at level 16 yet.
    expect(db.prepare('SELECT level, count(*) AS n FROM audit_tree GROUP BY level').all()).toEqual([{ level: 8, n: Math.floor(size / TILE_WIDTH) }]);
    const rootBefore = log.root().root;
    db.close();

    db = t.open();
    log = new SqliteAuditLog(db, { now: () => clock++ });
    expect(log.root()).toEqual({ size, root: rootBefore });
    await log.append('decision', body('after reopen'));
    expect(log.root().root).toEqual(naiveRoot(hashesOf(log)));
    db.close();
  });

  it('reopens from the stored compact range without reading the records', async () => {
    const t = setup();
    let db = t.open();
    let log = new SqliteAuditLog(db, { now: () => T0 });
    await fill(log, 40);
    const { root } = log.root();
    // A record in the middle vanishes behind the log's back: a reopen that replayed the log would trip on the gap.
    db.exec('DROP TRIGGER audit_prune_synced_only');
    db.prepare('DELETE FROM audit WHERE seq = 7').run();
    db.close();
    db = t.open();
    log = new SqliteAuditLog(db, { now: () => T0 });
    expect(log.root()).toEqual({ size: 40, root });
    expect(log.head().seq).toBe(40);
    db.close();
  });

  it('refuses to open a log whose end was cut off below its tree head', async () => {
    const t = setup();
    let db = t.open();
    const log = new SqliteAuditLog(db, { now: () => T0 });
    await fill(log, 12);
    db.exec('DROP TRIGGER audit_prune_synced_only');
    db.prepare('DELETE FROM audit WHERE seq > 9').run();
    db.close();
    db = t.open();
    expect(() => new SqliteAuditLog(db, { now: () => T0 })).toThrow(expect.objectContaining({ code: 'AUDIT_TRUNCATED' }));
    db.close();
  });

  it('keeps the stored tree in step when a batch rolls back', async () => {
    const t = setup();
    const db = t.open();
    const log = new SqliteAuditLog(db, { now: () => T0 });
    await fill(log, 300);
    db.exec("CREATE TRIGGER fail_insert BEFORE INSERT ON audit WHEN NEW.seq = 305 BEGIN SELECT RAISE(ABORT, 'disk full'); END");
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => log.append('command', body(`x${i}`))));
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    db.exec('DROP TRIGGER fail_insert');
    await fill(log, 260, 'y');
    expect(log.root()).toEqual({ size: 560, root: naiveRoot(hashesOf(log)) });
    expect(verifyStoredLog(log.reader, { keys: [] }).failure).toBeUndefined();
    db.close();
  });

  it('builds the tree once for a log written before the tree existed', async () => {
    const t = setup();
    const db = t.open();
    // The audit schema as version 1 left it, with records.
    db.exec(`
      CREATE TABLE audit (seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, kind TEXT NOT NULL, body BLOB NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL);
      CREATE TABLE audit_meta (id INTEGER PRIMARY KEY CHECK (id = 1), synced_seq INTEGER NOT NULL, pruned_seq INTEGER NOT NULL, pruned_hash BLOB NOT NULL);
      INSERT INTO audit_meta VALUES (1, 0, 0, zeroblob(32));
      INSERT INTO schema_version VALUES ('audit', 1);`);
    const insert = db.prepare('INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)');
    let prev: Uint8Array = GENESIS_HASH;
    db.transaction(() => {
      for (let seq = 1; seq <= 600; seq++) {
        const hash = recordHash(prev, seq, T0 + seq, 'system', body(`old ${seq}`));
        insert.run(seq, T0 + seq, 'system', body(`old ${seq}`), prev, hash);
        prev = hash;
      }
    })();
    const log = new SqliteAuditLog(db, { now: () => T0 + 1000 });
    expect(log.head().seq).toBe(600);
    expect(log.root().root).toEqual(naiveRoot(hashesOf(log)));
    expect((await log.append('system', body('new'))).seq).toBe(601);
    expect(log.root().root).toEqual(naiveRoot(hashesOf(log)));
    expect(verifyStoredLog(log.reader, { keys: [] }).failure).toBeUndefined();
    db.close();
  });

  it('produces inclusion and consistency proofs from the stored tree, reading only tile segments', async () => {
    const t = setup();
    const db = t.open();
    const log = new SqliteAuditLog(db, { now: () => T0, commits: new GroupCommit(db) });
    await fill(log, 2 * 256 * 3 + 77);
    const hashes = hashesOf(log);
    const n = hashes.length;
    const roots = new Map<number, Uint8Array>();
    const rootOf = (size: number) => roots.get(size) ?? roots.set(size, naiveRoot(hashes.slice(0, size))).get(size)!;
    for (const [seq, size] of [[1, 1], [1, n], [n, n], [256, 256], [257, 600], [700, 1000], [1536, 1537], [1000, n], [3, 9]] as const) {
      const proof = log.reader.inclusionProof(seq, size);
      expect(log.reader.rootAt(size)).toEqual(rootOf(size));
      verifyInclusion(seq - 1, size, leafHash(hashes[seq - 1]!), proof, rootOf(size));
    }
    for (const [m, size] of [[1, n], [255, 256], [256, 1000], [511, 1100], [1000, n], [n, n], [77, 78]] as const) {
      verifyConsistency(m, size, rootOf(m), rootOf(size), log.reader.consistencyProof(m, size));
    }
    // Rows read for one proof: at most one leaf segment and one level-8 segment (< 2 × 256).
    const tree = log.reader.tree();
    inclusionProof(800, n, tree);
    expect(tree.rowsRead).toBeLessThan(2 * TILE_WIDTH);
    expect(tree.rowsRead).toBeGreaterThan(0);
    expect(() => log.reader.inclusionProof(n + 1, n + 1)).toThrow(expect.objectContaining({ code: 'AUDIT_BAD_RANGE' }));
    db.close();
  });
});
