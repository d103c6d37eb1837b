// The audit hash chain (pure). Each record commits to its predecessor, so removing, reordering
// or editing any record breaks every hash after it.
//
//   hash = SHA-256( prevHash(32) || seq(u64 BE) || timeMs(u64 BE) || len(kind)(u8) || kind || body )
//
// Fixed-width fields and a length-prefixed kind make the preimage unambiguous without a
// serializer in the trusted path. The record hashes are also the leaves of an RFC 9162 Merkle
// tree (see merkle.ts); records of kind `checkpoint` are written by the log itself (checkpoint.ts).
import { sha256 } from '../crypto/hash.js';

export const AUDIT_KINDS = ['command', 'decision', 'execution', 'bundle', 'attestation', 'key', 'sync', 'system', 'checkpoint'] as const;
export type AuditKind = (typeof AUDIT_KINDS)[number];

/** Each kind's UTF-8 bytes, as the hash preimage and a sync batch carry them. */
export const KIND_BYTES: ReadonlyMap<AuditKind, Uint8Array> = new Map(AUDIT_KINDS.map((k) => [k, new TextEncoder().encode(k)]));

/** The chain starts from 32 zero bytes. */
export const GENESIS_HASH = new Uint8Array(32);

export interface AuditRecord {
  seq: number;
  timeMs: number;
  kind: AuditKind;
  /** CBOR-encoded body. */
  body: Uint8Array;
  prevHash: Uint8Array;
  hash: Uint8Array;
}

const utf8 = new TextEncoder();
/**
 * The preimage is built in this buffer when it fits (records are at most 64 KiB by default):
 * hashing thousands of records (a sync batch) then allocates nothing but the hashes.
 */
let scratch = new Uint8Array(49 + 255 + 64 * 1024);

export function recordHash(prevHash: Uint8Array, seq: number, timeMs: number, kind: AuditKind, body: Uint8Array): Uint8Array {
  if (prevHash.length !== 32) throw new RangeError('prevHash must be 32 bytes');
  if (!Number.isSafeInteger(seq) || seq < 1) throw new RangeError('seq must be a positive integer');
  if (!Number.isSafeInteger(timeMs) || timeMs < 0) throw new RangeError('timeMs must be a non-negative integer');
  const kindBytes = KIND_BYTES.get(kind) ?? utf8.encode(kind);
  const length = 32 + 8 + 8 + 1 + kindBytes.length + body.length;
  if (length > scratch.length) scratch = new Uint8Array(length);
  const pre = scratch;
  pre.set(prevHash, 0);
  // u64 big-endian as two u32 halves (both values are safe integers, below 2^53).
  writeU32(pre, 32, Math.floor(seq / 2 ** 32));
  writeU32(pre, 36, seq >>> 0);
  writeU32(pre, 40, Math.floor(timeMs / 2 ** 32));
  writeU32(pre, 44, timeMs >>> 0);
  pre[48] = kindBytes.length;
  pre.set(kindBytes, 49);
  pre.set(body, 49 + kindBytes.length);
  return sha256(pre.subarray(0, length));
}

/** Writes `n` (below 2^32) big-endian at `at`. */
export function writeU32(out: Uint8Array, at: number, n: number): void {
  out[at] = n >>> 24;
  out[at + 1] = (n >>> 16) & 0xff;
  out[at + 2] = (n >>> 8) & 0xff;
  out[at + 3] = n & 0xff;
}

export type ChainBreak =
  | { code: 'AUDIT_SEQ_GAP'; seq: number; expected: number }
  | { code: 'AUDIT_PREV_MISMATCH'; seq: number }
  | { code: 'AUDIT_HASH_MISMATCH'; seq: number };

/**
 * Checks a run of consecutive records against the hash of the record before the first one.
 * Returns the first break found, or undefined if the run is intact.
 */
export function verifyChain(records: Iterable<AuditRecord>, prevHash: Uint8Array = GENESIS_HASH, firstSeq = 1): ChainBreak | undefined {
  let expectedSeq = firstSeq;
  let prev = prevHash;
  for (const r of records) {
    if (r.seq !== expectedSeq) return { code: 'AUDIT_SEQ_GAP', seq: r.seq, expected: expectedSeq };
    if (!bytesEqual(r.prevHash, prev)) return { code: 'AUDIT_PREV_MISMATCH', seq: r.seq };
    if (!bytesEqual(recordHash(prev, r.seq, r.timeMs, r.kind, r.body), r.hash)) return { code: 'AUDIT_HASH_MISMATCH', seq: r.seq };
    prev = r.hash;
    expectedSeq++;
  }
  return undefined;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
