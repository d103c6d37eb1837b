// The Merkle tree against every RFC 9162 inclusion and consistency vector, proof generation
// against the vectors' happy paths, and everything against a naive transcription of RFC 9162
// §2.1 (recursive MTH, PATH and SUBPROOF over a list of leaves) on random trees.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256 } from '../../src/crypto/hash.js';
import {
  CompactRange,
  EMPTY_ROOT,
  MerkleError,
  type NodeSource,
  consistencyProof,
  inclusionProof,
  leafHash,
  nodeHash,
  rootFromInclusionProof,
  treeRoot,
  verifyConsistency,
  verifyInclusion,
} from '../../src/audit/merkle.js';
import { RFC6962_LEAVES, consistencyVectors, inclusionVectors } from '../support/merkle-vectors.js';

const b64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

// ---- naive RFC 9162 §2.1, straight from the text --------------------------------------
const k = (n: number) => 2 ** Math.ceil(Math.log2(n) - 1);
function mth(d: Uint8Array[]): Uint8Array {
  if (d.length === 0) return sha256(new Uint8Array(0));
  if (d.length === 1) return leafHash(d[0]!);
  const split = k(d.length);
  return nodeHash(mth(d.slice(0, split)), mth(d.slice(split)));
}
function path(m: number, d: Uint8Array[]): Uint8Array[] {
  if (d.length === 1) return [];
  const split = k(d.length);
  return m < split ? [...path(m, d.slice(0, split)), mth(d.slice(split))] : [...path(m - split, d.slice(split)), mth(d.slice(0, split))];
}
function subproof(m: number, d: Uint8Array[], b: boolean): Uint8Array[] {
  if (m === d.length) return b ? [] : [mth(d)];
  const split = k(d.length);
  return m <= split ? [...subproof(m, d.slice(0, split), b), mth(d.slice(split))] : [...subproof(m - split, d.slice(split), false), mth(d.slice(0, split))];
}

/** Perfect subtrees computed from the leaf data, counting reads. */
function naiveSource(leaves: Uint8Array[]): NodeSource & { reads: number } {
  return {
    reads: 0,
    node(level, index) {
      this.reads++;
      const width = 2 ** level;
      const slice = leaves.slice(index * width, (index + 1) * width);
      if (slice.length !== width) throw new Error(`node ${level}/${index} is not complete`);
      return mth(slice);
    },
  };
}

const rfcLeaves = RFC6962_LEAVES.map((h) => new Uint8Array(Buffer.from(h, 'hex')));

describe('RFC 9162 vectors', () => {
  const inclusion = inclusionVectors();
  const consistency = consistencyVectors();

  it('has them all', () => {
    expect(inclusion.length).toBe(98);
    expect(consistency.length).toBe(98);
    expect(inclusion.filter((v) => !v.wantErr).length).toBeGreaterThan(4);
  });

  it.each(inclusion.map((v) => [v.file, v] as const))('inclusion %s', (_file, v) => {
    const check = () => verifyInclusion(v.leafIdx, v.treeSize, b64(v.leafHash), (v.proof ?? []).map(b64), b64(v.root));
    if (v.wantErr) expect(check).toThrow(MerkleError);
    else expect(check).not.toThrow();
  });

  it.each(consistency.map((v) => [v.file, v] as const))('consistency %s', (_file, v) => {
    const check = () => verifyConsistency(v.size1, v.size2, b64(v.root1), b64(v.root2), (v.proof ?? []).map(b64));
    if (v.wantErr) expect(check).toThrow(MerkleError);
    else expect(check).not.toThrow();
  });

  it('generates exactly the happy-path proofs from the RFC 6962 leaves', () => {
    const source = naiveSource(rfcLeaves);
    const leafHashes = rfcLeaves.map(leafHash).map(hex);
    let checked = 0;
    for (const v of inclusion.filter((x) => /^inclusion\/\d\/happy-path/.test(x.file))) {
      // The vectors' leaf hashes are the RFC 6962 leaves'.
      expect(leafHashes[v.leafIdx]).toBe(hex(b64(v.leafHash)));
      expect(hex(treeRoot(v.treeSize, source))).toBe(hex(b64(v.root)));
      expect(inclusionProof(v.leafIdx, v.treeSize, source).map(hex)).toEqual((v.proof ?? []).map((p) => hex(b64(p))));
      checked++;
    }
    for (const v of consistency.filter((x) => /^consistency\/\d\/happy-path/.test(x.file))) {
      expect(hex(treeRoot(v.size1, source))).toBe(hex(b64(v.root1)));
      expect(consistencyProof(v.size1, v.size2, source).map(hex)).toEqual((v.proof ?? []).map((p) => hex(b64(p))));
      checked++;
    }
    expect(checked).toBe(10);
  });
});

describe('compact range', () => {
  it('gives the root of every prefix while appending, and completes each perfect subtree once', () => {
    let range = CompactRange.EMPTY;
    const completed: string[] = [];
    expect(range.root()).toEqual(EMPTY_ROOT);
    for (let n = 1; n <= 70; n++) {
      const leaves = Array.from({ length: n }, (_, i) => Uint8Array.of(i));
      const step = range.append(leafHash(leaves[n - 1]!));
      range = step.range;
      completed.push(...step.completed.map((c) => `${c.level}/${c.index}`));
      expect(range.size).toBe(n);
      expect(hex(range.root())).toBe(hex(mth(leaves)));
      for (const c of step.completed) expect(hex(c.hash)).toBe(hex(mth(leaves.slice(c.index * 2 ** c.level, (c.index + 1) * 2 ** c.level))));
    }
    // 70 leaves have 70 − popcount(70) = 67 complete interior nodes.
    expect(new Set(completed).size).toBe(67);
    expect(completed.length).toBe(67);
  });

  it('round-trips through its encoding and refuses a damaged one', () => {
    let range = CompactRange.EMPTY;
    for (let i = 0; i < 13; i++) range = range.append(leafHash(Uint8Array.of(i))).range;
    const back = CompactRange.decode(13, range.encode());
    expect(back.root()).toEqual(range.root());
    expect(() => CompactRange.decode(12, range.encode())).toThrow(/needs 2 hashes/);
    expect(() => CompactRange.decode(13, range.encode().subarray(1))).toThrow(MerkleError);
  });

  it('is rebuilt from perfect subtrees', () => {
    const leaves = Array.from({ length: 45 }, (_, i) => Uint8Array.of(i, 1));
    const source = naiveSource(leaves);
    const range = CompactRange.fromSource(45, source);
    expect(source.reads).toBe(4); // 32 + 8 + 4 + 1
    expect(range.root()).toEqual(mth(leaves));
  });
});

describe('against the naive RFC 9162 transcription', () => {
  const leavesArb = fc.array(fc.uint8Array({ minLength: 0, maxLength: 8 }), { minLength: 1, maxLength: 140 });

  it('roots, inclusion proofs and their verification agree', () => {
    fc.assert(
      fc.property(leavesArb, fc.nat(), (leaves, pick) => {
        const n = leaves.length;
        const m = pick % n;
        const source = naiveSource(leaves);
        const root = treeRoot(n, source);
        expect(hex(root)).toBe(hex(mth(leaves)));
        const proof = inclusionProof(m, n, source);
        expect(proof.map(hex)).toEqual(path(m, leaves).map(hex));
        // Reads only the nodes it needs: at most two perfect subtrees per level.
        expect(source.reads).toBeLessThanOrEqual(2 * Math.ceil(Math.log2(n) + 1) + 1);
        verifyInclusion(m, n, leafHash(leaves[m]!), proof, root);
        expect(hex(rootFromInclusionProof(m, n, leafHash(leaves[m]!), proof))).toBe(hex(root));
      }),
      { numRuns: 300 },
    );
  });

  it('consistency proofs and their verification agree', () => {
    fc.assert(
      fc.property(leavesArb, fc.nat(), (leaves, pick) => {
        const n = leaves.length;
        const m = 1 + (pick % n);
        const source = naiveSource(leaves);
        const proof = consistencyProof(m, n, source);
        expect(proof.map(hex)).toEqual((m === n ? [] : subproof(m, leaves, true)).map(hex));
        verifyConsistency(m, n, mth(leaves.slice(0, m)), mth(leaves), proof);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses any single-bit change, a dropped or an added hash, and a wrong size or index', () => {
    fc.assert(
      fc.property(leavesArb.filter((l) => l.length >= 2), fc.nat(), fc.nat(), (data, pick, flip) => {
        // Distinct leaves, so that no other position can share a path by coincidence.
        const leaves = data.map((l, i) => Uint8Array.of(i % 256, Math.floor(i / 256), ...l));
        const n = leaves.length;
        const m = pick % n;
        const source = naiveSource(leaves);
        const root = mth(leaves);
        const leaf = leafHash(leaves[m]!);
        const proof = inclusionProof(m, n, source);
        const bad: Array<[number, number, Uint8Array[]]> = [
          [m, n, proof.slice(0, -1)],
          [m, n, [...proof, root]],
          [(m + 1) % n, n, proof],
        ];
        if (proof.length > 0) {
          const i = flip % proof.length;
          const changed = proof.map((p) => p.slice());
          changed[i]![flip % 32]! ^= 1 << (flip % 8);
          bad.push([m, n, changed]);
        }
        for (const [index, size, p] of bad) {
          expect(() => verifyInclusion(index, size, leaf, p, root)).toThrow(MerkleError);
        }

        const old = 1 + (pick % (n - 1));
        const cproof = consistencyProof(old, n, source);
        const oldRoot = mth(leaves.slice(0, old));
        expect(() => verifyConsistency(old, n, oldRoot, root, cproof.slice(1))).toThrow(MerkleError);
        expect(() => verifyConsistency(old, n, oldRoot, root, [...cproof, root])).toThrow(MerkleError);
        const changed = cproof.map((p) => p.slice());
        changed[flip % changed.length]![flip % 32]! ^= 1 << (flip % 8);
        expect(() => verifyConsistency(old, n, oldRoot, root, changed)).toThrow(MerkleError);
        expect(() => verifyConsistency(old, n, root, oldRoot, cproof)).toThrow(MerkleError);
      }),
      { numRuns: 200 },
    );
  });

  it('handles sizes past 2^32 without 32-bit arithmetic', () => {
    // Leaf i is leafHash(i mod 16): above level 4 every node of a level is the same, so a
    // consistent tree of 2^33 leaves costs a few hundred hashes.
    const memo = new Map<string, Uint8Array>();
    const source: NodeSource = {
      node(level, index) {
        const key = level >= 4 ? `${level}` : `${level}/${index % 2 ** (4 - level)}`;
        let hash = memo.get(key);
        if (hash === undefined) {
          hash = level === 0 ? leafHash(Uint8Array.of(index % 16)) : nodeHash(this.node(level - 1, 2 * index), this.node(level - 1, 2 * index + 1));
          memo.set(key, hash);
        }
        return hash;
      },
    };
    const size = 2 ** 33 + 12345;
    const root = treeRoot(size, source);
    const index = 2 ** 32 + 7;
    const proof = inclusionProof(index, size, source);
    verifyInclusion(index, size, source.node(0, index), proof, root);
    const old = 2 ** 32 + 3;
    verifyConsistency(old, size, treeRoot(old, source), root, consistencyProof(old, size, source));
    expect(CompactRange.fromSource(size, source).root()).toEqual(root);
  });
});
