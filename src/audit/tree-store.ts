// Where the audit log's Merkle tree lives in the state database, and how proofs read it.
//
// Stored per append: nothing but the record (its hash is the leaf data). Stored per batch: the
// compact range of the whole log (`audit_head.frontier`, one hash per set bit of the size), in
// the same transaction as the records, so the root of the log at its current size is always at
// hand and an append never reads the tree. Stored once per 256 leaves: the hash of each
// completed perfect subtree whose level is a multiple of 8 (`audit_tree`, levels 8, 16, 24, …),
// i.e. the roots of the full "tiles" of height 8 (the shape of C2SP tlog-tiles).
//
// Any perfect subtree (level, index) needed by a proof is then either stored (level a multiple
// of 8), a leaf (level 0: the record's hash), or folded from at most 255 nodes of the stored
// level just below it — all inside one tile, fetched with one range query. A proof for a tree
// of n leaves thus reads at most one tile segment per 8 levels (≈ 255 · ⌈log2(n) / 8⌉ rows) and
// never the whole log. The stored nodes cost one extra row per 255 records.
//
// Pruning (log.ts) removes records only up to a multiple of 256, and never removes tree nodes:
// every node a proof about a retained record (or a tree size at or after the pruned point)
// needs stays derivable.
import type { Database, Statement } from 'better-sqlite3';
import { type CompletedNode, HASH_BYTES, MerkleError, type NodeSource, leafHash, nodeHash } from './merkle.js';
import { ZtedgeError } from '../errors.js';

/** Levels stored: multiples of TILE_HEIGHT (level 0, the leaves, is the audit table itself). */
export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 2 ** TILE_HEIGHT;

/** Schema added to the audit module (migration 2). */
export const TREE_SCHEMA = `
CREATE TABLE audit_tree (
  level INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  hash BLOB NOT NULL,
  PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TRIGGER audit_tree_no_update BEFORE UPDATE ON audit_tree
BEGIN SELECT RAISE(ABORT, 'audit tree nodes are immutable'); END;
CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree
BEGIN SELECT RAISE(ABORT, 'audit tree nodes are never deleted'); END;
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  size INTEGER NOT NULL,
  frontier BLOB NOT NULL,
  bytes INTEGER NOT NULL,
  checkpoint_seq INTEGER NOT NULL,
  checkpoint_root BLOB NOT NULL
);
INSERT INTO audit_head (id, size, frontier, bytes, checkpoint_seq, checkpoint_root) VALUES (1, 0, x'', 0, 0, zeroblob(32));
`;

/** The perfect subtrees a completed append should store. */
export function storedNodes(completed: readonly CompletedNode[]): CompletedNode[] {
  return completed.filter((n) => n.level % TILE_HEIGHT === 0);
}

export class TreeStoreError extends ZtedgeError<'AUDIT_TREE_INCOMPLETE'> {}

/**
 * Perfect subtrees from the database (read-only connections included). One instance per proof
 * or per snapshot: it memoizes what it read, which stays valid because perfect subtrees of a
 * committed log never change.
 */
export class StoredTree implements NodeSource {
  private readonly leafRange: Statement<[number, number], { hash: Buffer }>;
  private readonly nodeRange: Statement<[number, number, number], { hash: Buffer }>;
  private readonly memo = new Map<string, Uint8Array>();
  /** Rows read so far (leaves and stored nodes), for tests and benchmarks. */
  rowsRead = 0;

  constructor(db: Database) {
    this.leafRange = db.prepare('SELECT hash FROM audit WHERE seq BETWEEN ? AND ? ORDER BY seq');
    this.nodeRange = db.prepare('SELECT hash FROM audit_tree WHERE level = ? AND idx BETWEEN ? AND ? ORDER BY idx');
  }

  node(level: number, index: number): Uint8Array {
    const key = `${level}/${index}`;
    let hash = this.memo.get(key);
    if (hash === undefined) {
      hash = this.compute(level, index);
      this.memo.set(key, hash);
    }
    return hash;
  }

  private compute(level: number, index: number): Uint8Array {
    const base = level - (level % TILE_HEIGHT);
    const width = 2 ** (level - base);
    const first = index * width;
    const hashes = base === 0 ? this.leaves(first, width) : this.stored(base, first, width);
    return fold(hashes);
  }

  /** Leaf hashes of leaves [first, first + count): records first + 1 … first + count. */
  private leaves(first: number, count: number): Uint8Array[] {
    const rows = this.leafRange.all(first + 1, first + count);
    this.rowsRead += rows.length;
    if (rows.length !== count) {
      throw new TreeStoreError('AUDIT_TREE_INCOMPLETE', `records ${first + 1}…${first + count} are not all in the log (pruned or missing)`);
    }
    return rows.map((r) => leafHash(r.hash));
  }

  private stored(level: number, first: number, count: number): Uint8Array[] {
    const rows = this.nodeRange.all(level, first, first + count - 1);
    this.rowsRead += rows.length;
    if (rows.length !== count) {
      throw new TreeStoreError('AUDIT_TREE_INCOMPLETE', `tree nodes ${level}/${first}…${first + count - 1} are missing`);
    }
    return rows.map((r) => {
      if (r.hash.length !== HASH_BYTES) throw new MerkleError('MERKLE_BAD_HASH', `tree node at level ${level} is not ${HASH_BYTES} bytes`);
      return new Uint8Array(r.hash);
    });
  }
}

/** Hash of a perfect subtree from its 2^k nodes at one level. */
function fold(hashes: Uint8Array[]): Uint8Array {
  let level = hashes;
  while (level.length > 1) {
    const up: Uint8Array[] = [];
    for (let i = 0; i < level.length; i += 2) up.push(nodeHash(level[i]!, level[i + 1]!));
    level = up;
  }
  return level[0]!;
}
