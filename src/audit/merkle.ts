// RFC 9162 Merkle tree over the audit log (pure). The leaves are the record hashes of the hash
// chain: leaf i (0-based) is the record with seq i + 1, and its leaf hash is
// SHA-256(0x00 || record hash); interior nodes are SHA-256(0x01 || left || right). The tree of
// size n is the RFC's MTH(D[0:n]), so any RFC 9162 / RFC 6962 verifier checks our proofs.
//
// Two ways in:
//   - CompactRange: the perfect subtrees covering [0, n) (one per set bit of n, at most 53).
//     Appending a leaf merges equal-sized subtrees, costing one hash on average, and yields the
//     root at any size without reading anything: this is what the log keeps per append.
//   - NodeSource: the hash of any perfect subtree (level, index), i.e. of leaves
//     [index·2^level, (index+1)·2^level). Root, inclusion and consistency proofs for any size
//     are built from such nodes only (O(log n) of them), so a store needs nothing but a way to
//     produce perfect subtrees — see tree-store.ts for how the database does it.
//
// Sizes and indices are JS numbers: exact up to 2^53, so no bitwise operators (32-bit) here.
import { sha256 } from '../crypto/hash.js';
import { ZtedgeError } from '../errors.js';

export const HASH_BYTES = 32;
/** MTH({}) = SHA-256 of the empty string. */
export const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));

export class MerkleError extends ZtedgeError<MerkleErrorCode> {}

export type MerkleErrorCode =
  | 'MERKLE_BAD_ARGUMENT'
  | 'MERKLE_BAD_HASH'
  | 'MERKLE_BAD_PROOF'
  | 'MERKLE_ROOT_MISMATCH'
  | 'MERKLE_CORRUPT_RANGE';

// Preimages are built in these buffers (the hash is a fresh array): a tree of thousands of
// leaves allocates only its hashes.
const leafScratch = Uint8Array.of(0x00, ...new Uint8Array(HASH_BYTES));
const nodeScratch = Uint8Array.of(0x01, ...new Uint8Array(2 * HASH_BYTES));

export function leafHash(data: Uint8Array): Uint8Array {
  if (data.length !== HASH_BYTES) {
    const buf = new Uint8Array(1 + data.length);
    buf.set(data, 1);
    return sha256(buf);
  }
  leafScratch.set(data, 1);
  return sha256(leafScratch);
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  if (left.length !== HASH_BYTES || right.length !== HASH_BYTES) {
    const buf = new Uint8Array(1 + 2 * HASH_BYTES);
    buf[0] = 0x01;
    buf.set(left, 1);
    buf.set(right, 1 + HASH_BYTES);
    return sha256(buf);
  }
  nodeScratch.set(left, 1);
  nodeScratch.set(right, 1 + HASH_BYTES);
  return sha256(nodeScratch);
}

/** Produces perfect subtree hashes: node(level, index) covers leaves [index·2^level, (index+1)·2^level). */
export interface NodeSource {
  node(level: number, index: number): Uint8Array;
}

/** A perfect subtree completed by an append. */
export interface CompletedNode {
  level: number;
  index: number;
  hash: Uint8Array;
}

const bit = (n: number, level: number) => Math.floor(n / 2 ** level) % 2 === 1;

/** The perfect subtrees covering leaves [0, size), largest (leftmost) first. Immutable. */
export class CompactRange {
  private constructor(
    readonly size: number,
    readonly nodes: readonly Uint8Array[],
  ) {}

  static readonly EMPTY = new CompactRange(0, []);

  /** Checks that `nodes` has one 32-byte hash per set bit of `size`. */
  static of(size: number, nodes: readonly Uint8Array[]): CompactRange {
    checkSize(size, 'size');
    if (nodes.length !== popcount(size) || nodes.some((n) => n.length !== HASH_BYTES)) {
      throw new MerkleError('MERKLE_CORRUPT_RANGE', `a compact range of size ${size} needs ${popcount(size)} hashes of ${HASH_BYTES} bytes`);
    }
    return new CompactRange(size, [...nodes]);
  }

  /** The compact range of [0, size) read from perfect subtrees. */
  static fromSource(size: number, source: NodeSource): CompactRange {
    checkSize(size, 'size');
    const nodes: Uint8Array[] = [];
    let offset = 0;
    for (let level = 53; level >= 0; level--) {
      if (!bit(size, level)) continue;
      nodes.push(source.node(level, offset / 2 ** level));
      offset += 2 ** level;
    }
    return new CompactRange(size, nodes);
  }

  /** Concatenated hashes; the size travels separately. */
  encode(): Uint8Array {
    const out = new Uint8Array(this.nodes.length * HASH_BYTES);
    this.nodes.forEach((n, i) => out.set(n, i * HASH_BYTES));
    return out;
  }

  static decode(size: number, bytes: Uint8Array): CompactRange {
    if (bytes.length % HASH_BYTES !== 0) throw new MerkleError('MERKLE_CORRUPT_RANGE', 'compact range is not a whole number of hashes');
    const nodes: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += HASH_BYTES) nodes.push(bytes.slice(i, i + HASH_BYTES));
    return CompactRange.of(size, nodes);
  }

  /** Appends one leaf hash; returns the new range and the perfect subtrees it completed (level ≥ 1). */
  append(leaf: Uint8Array): { range: CompactRange; completed: CompletedNode[] } {
    if (leaf.length !== HASH_BYTES) throw new MerkleError('MERKLE_BAD_HASH', `leaf hash must be ${HASH_BYTES} bytes`);
    const nodes = this.nodes.slice();
    const completed: CompletedNode[] = [];
    let hash = leaf;
    let level = 0;
    let index = this.size;
    while (bit(this.size, level)) {
      hash = nodeHash(nodes.pop()!, hash);
      level++;
      index = Math.floor(index / 2);
      completed.push({ level, index, hash });
    }
    nodes.push(hash);
    return { range: new CompactRange(this.size + 1, nodes), completed };
  }

  /** MTH(D[0:size]). */
  root(): Uint8Array {
    if (this.nodes.length === 0) return EMPTY_ROOT;
    let root = this.nodes[this.nodes.length - 1]!;
    for (let i = this.nodes.length - 2; i >= 0; i--) root = nodeHash(this.nodes[i]!, root);
    return root;
  }
}

/**
 * A compact range that one owner grows leaf by leaf, in place: no copy of the range per append,
 * for verifiers that append thousands of leaves and need the root only now and then.
 */
export class GrowingRange {
  private readonly nodes: Uint8Array[];
  private count: number;

  constructor(from: CompactRange) {
    this.nodes = from.nodes.slice();
    this.count = from.size;
  }

  get size(): number {
    return this.count;
  }

  /** Appends one leaf hash; the perfect subtrees it completes (level ≥ 1) go to `completed` when given. */
  append(leaf: Uint8Array, completed?: CompletedNode[]): void {
    if (leaf.length !== HASH_BYTES) throw new MerkleError('MERKLE_BAD_HASH', `leaf hash must be ${HASH_BYTES} bytes`);
    let hash = leaf;
    let level = 0;
    let index = this.count;
    for (let n = this.count; n % 2 === 1; n = (n - 1) / 2) {
      hash = nodeHash(this.nodes.pop()!, hash);
      level++;
      index = Math.floor(index / 2);
      completed?.push({ level, index, hash });
    }
    this.nodes.push(hash);
    this.count++;
  }

  /** MTH(D[0:size]). */
  root(): Uint8Array {
    if (this.nodes.length === 0) return EMPTY_ROOT;
    let root = this.nodes[this.nodes.length - 1]!;
    for (let i = this.nodes.length - 2; i >= 0; i--) root = nodeHash(this.nodes[i]!, root);
    return root;
  }

  /** The range as it is now (an immutable copy). */
  range(): CompactRange {
    return CompactRange.of(this.count, this.nodes);
  }
}

// ---------------------------------------------------------------------------------------
// Roots and proofs from perfect subtrees (RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1)

/** MTH(D[begin:end]) for a subtree of the RFC's recursive split (begin aligned to it). */
function rangeHash(begin: number, end: number, source: NodeSource): Uint8Array {
  const width = end - begin;
  const level = Math.log2(width);
  if (Number.isInteger(level)) return source.node(level, begin / width);
  const k = largestPowerOfTwoBelow(width);
  return nodeHash(rangeHash(begin, begin + k, source), rangeHash(begin + k, end, source));
}

export function treeRoot(size: number, source: NodeSource): Uint8Array {
  checkSize(size, 'size');
  return size === 0 ? EMPTY_ROOT : rangeHash(0, size, source);
}

/** The audit path of leaf `index` in the tree of `size` leaves, leaf side first. */
export function inclusionProof(index: number, size: number, source: NodeSource): Uint8Array[] {
  checkSize(size, 'size');
  checkSize(index, 'index');
  if (index >= size) throw new MerkleError('MERKLE_BAD_ARGUMENT', `leaf ${index} is not in a tree of ${size}`);
  const proof: Uint8Array[] = [];
  // PATH(m, D[b:e]) unrolled from the top; siblings are collected top-down, returned bottom-up.
  let begin = 0;
  let end = size;
  while (end - begin > 1) {
    const k = largestPowerOfTwoBelow(end - begin);
    if (index < begin + k) {
      proof.push(rangeHash(begin + k, end, source));
      end = begin + k;
    } else {
      proof.push(rangeHash(begin, begin + k, source));
      begin += k;
    }
  }
  return proof.reverse();
}

/** The consistency proof from the tree of `oldSize` to the tree of `newSize` (0 < oldSize ≤ newSize). */
export function consistencyProof(oldSize: number, newSize: number, source: NodeSource): Uint8Array[] {
  checkSize(oldSize, 'old size');
  checkSize(newSize, 'new size');
  if (oldSize === 0 || oldSize > newSize) {
    throw new MerkleError('MERKLE_BAD_ARGUMENT', `no consistency proof from size ${oldSize} to size ${newSize}`);
  }
  if (oldSize === newSize) return [];
  // SUBPROOF(m, D[b:e], startFromOldRoot) unrolled from the top.
  const proof: Uint8Array[] = [];
  let begin = 0;
  let end = newSize;
  let fromOldRoot = true;
  while (oldSize !== end) {
    const k = largestPowerOfTwoBelow(end - begin);
    if (oldSize <= begin + k) {
      proof.push(rangeHash(begin + k, end, source));
      end = begin + k;
    } else {
      proof.push(rangeHash(begin, begin + k, source));
      begin += k;
      fromOldRoot = false;
    }
  }
  if (!fromOldRoot) proof.push(rangeHash(begin, end, source));
  return proof.reverse();
}

// ---------------------------------------------------------------------------------------
// Verification (RFC 9162 §2.1.3.2, §2.1.4.2)

/** The root an inclusion proof leads to; throws MerkleError when the proof cannot be one. */
export function rootFromInclusionProof(index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[]): Uint8Array {
  checkSize(size, 'size');
  checkSize(index, 'index');
  if (index >= size) throw new MerkleError('MERKLE_BAD_ARGUMENT', `leaf ${index} is not in a tree of ${size}`);
  checkHash(leaf, 'leaf hash');
  proof.forEach((p) => checkHash(p, 'proof hash'));
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw badProof('inclusion proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw badProof('inclusion proof is too short');
  return r;
}

export function verifyInclusion(index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[], root: Uint8Array): void {
  checkHash(root, 'root');
  if (!hashesEqual(rootFromInclusionProof(index, size, leaf, proof), root)) {
    throw new MerkleError('MERKLE_ROOT_MISMATCH', `inclusion proof of leaf ${index} does not lead to the root of size ${size}`);
  }
}

/**
 * Checks that the tree of `oldSize` with `oldRoot` is a prefix of the tree of `newSize` with
 * `newRoot`. A proof from the empty tree proves nothing and is refused.
 */
export function verifyConsistency(oldSize: number, newSize: number, oldRoot: Uint8Array, newRoot: Uint8Array, proof: readonly Uint8Array[]): void {
  checkSize(oldSize, 'old size');
  checkSize(newSize, 'new size');
  if (oldSize > newSize) throw new MerkleError('MERKLE_BAD_ARGUMENT', `old size ${oldSize} is larger than new size ${newSize}`);
  if (oldSize === 0) throw new MerkleError('MERKLE_BAD_ARGUMENT', 'a consistency proof from the empty tree proves nothing');
  if (oldSize === newSize) {
    // Nothing to hash: the two roots are the same tree or the proof fails.
    if (proof.length !== 0) throw badProof('equal sizes need an empty proof');
    if (!hashesEqual(oldRoot, newRoot)) throw new MerkleError('MERKLE_ROOT_MISMATCH', `two different roots for size ${oldSize}`);
    return;
  }
  checkHash(oldRoot, 'old root');
  checkHash(newRoot, 'new root');
  proof.forEach((p) => checkHash(p, 'proof hash'));
  if (proof.length === 0) throw badProof('empty consistency proof');
  // When oldSize is a power of two, the old root is itself the first node of the path.
  const path = Number.isInteger(Math.log2(oldSize)) ? [oldRoot, ...proof] : [...proof];
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = (fn - 1) / 2;
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) throw badProof('consistency proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw badProof('consistency proof is too short');
  if (!hashesEqual(fr, oldRoot)) throw new MerkleError('MERKLE_ROOT_MISMATCH', `consistency proof does not lead to the old root of size ${oldSize}`);
  if (!hashesEqual(sr, newRoot)) throw new MerkleError('MERKLE_ROOT_MISMATCH', `consistency proof does not lead to the new root of size ${newSize}`);
}

export function hashesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** The largest power of two strictly below n (n ≥ 2). */
function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function popcount(n: number): number {
  let count = 0;
  for (let x = n; x > 0; x = Math.floor(x / 2)) count += x % 2;
  return count;
}

function checkSize(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new MerkleError('MERKLE_BAD_ARGUMENT', `${what} must be a non-negative safe integer, got ${n}`);
}

function checkHash(h: Uint8Array, what: string): void {
  if (!(h instanceof Uint8Array) || h.length !== HASH_BYTES) throw new MerkleError('MERKLE_BAD_HASH', `${what} must be ${HASH_BYTES} bytes`);
}

function badProof(message: string): MerkleError {
  return new MerkleError('MERKLE_BAD_PROOF', message);
}
