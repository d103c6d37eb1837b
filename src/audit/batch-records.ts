// The records of a sync batch as they travel: the CBOR array of [seq, time_ms, kind, body, hash]
// (sync-protocol.ts), written and read straight between the records and the bytes (pure).
//
// A batch holds thousands of records, and the generic codec (src/cbor/) costs several µs per
// record here: each record becomes an intermediate array, every time_ms (above 2^32) goes through
// a bigint, every byte string is copied. This module writes exactly the bytes the generic encoder
// writes for that array (RFC 8949 deterministic encoding: shortest heads, definite lengths) in
// one pass into one buffer, and reads them in one pass into the records, the byte strings as
// views of the input.
//
// Reading takes the fast path only for what it fully understands (definite lengths, the five
// fields with the right major types, a known kind, a 32-byte hash, no trailing bytes). Anything
// else returns undefined, and the caller decodes with the generic strict decoder, which accepts
// or refuses exactly as before and says why. What the fast path accepts, the generic decoder
// accepts with the same values: a record that would be refused can never be let through by the
// fast path.
import { type AuditKind, KIND_BYTES, writeU32 } from './chain.js';

/** A record as a batch carries it. */
export interface BatchRecord {
  seq: number;
  timeMs: number;
  kind: AuditKind;
  body: Uint8Array;
  hash: Uint8Array;
}

const HASH_BYTES = 32;
const MAJOR_UNSIGNED = 0;
const MAJOR_BYTES = 2;
const MAJOR_TEXT = 3;
const MAJOR_ARRAY = 4;
const TWO_32 = 2 ** 32;
/** The largest high word of a safe integer's 64-bit form. */
const MAX_SAFE_HIGH = Math.floor(Number.MAX_SAFE_INTEGER / TWO_32);

const utf8 = new TextEncoder();

/** Bytes of a CBOR head carrying `n` (a safe non-negative integer), shortest form. */
function headSize(n: number): number {
  return n < 24 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : n < TWO_32 ? 5 : 9;
}

function writeHead(out: Uint8Array, at: number, major: number, n: number): number {
  const m = major << 5;
  if (n < 24) {
    out[at] = m | n;
    return at + 1;
  }
  if (n <= 0xff) {
    out[at] = m | 24;
    out[at + 1] = n;
    return at + 2;
  }
  if (n <= 0xffff) {
    out[at] = m | 25;
    out[at + 1] = n >>> 8;
    out[at + 2] = n & 0xff;
    return at + 3;
  }
  if (n < TWO_32) {
    out[at] = m | 26;
    writeU32(out, at + 1, n);
    return at + 5;
  }
  out[at] = m | 27;
  writeU32(out, at + 1, Math.floor(n / TWO_32));
  writeU32(out, at + 5, n % TWO_32);
  return at + 9;
}

function checkCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative safe integer, got ${n}`);
}

/**
 * The CBOR array of [seq, time_ms, kind, body, hash] for `records`: byte for byte what
 * encodeCbor(records.map((r) => [r.seq, r.timeMs, r.kind, r.body, r.hash])) writes.
 */
export function encodeBatchRecords(records: readonly BatchRecord[]): Uint8Array {
  const kinds: Uint8Array[] = new Array(records.length);
  let size = headSize(records.length);
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    checkCount(r.seq, 'seq');
    checkCount(r.timeMs, 'timeMs');
    const kind = KIND_BYTES.get(r.kind) ?? utf8.encode(r.kind);
    kinds[i] = kind;
    size += 1 + headSize(r.seq) + headSize(r.timeMs) + headSize(kind.length) + kind.length + headSize(r.body.length) + r.body.length + headSize(r.hash.length) + r.hash.length;
  }
  const out = new Uint8Array(size);
  let at = writeHead(out, 0, MAJOR_ARRAY, records.length);
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    const kind = kinds[i]!;
    out[at++] = (MAJOR_ARRAY << 5) | 5;
    at = writeHead(out, at, MAJOR_UNSIGNED, r.seq);
    at = writeHead(out, at, MAJOR_UNSIGNED, r.timeMs);
    at = writeHead(out, at, MAJOR_TEXT, kind.length);
    out.set(kind, at);
    at += kind.length;
    at = writeHead(out, at, MAJOR_BYTES, r.body.length);
    out.set(r.body, at);
    at += r.body.length;
    at = writeHead(out, at, MAJOR_BYTES, r.hash.length);
    out.set(r.hash, at);
    at += r.hash.length;
  }
  return out;
}

/** Bounds the reader checks, as the protocol sets them. */
export interface BatchRecordLimits {
  maxRecords: number;
  maxBodyBytes: number;
}

/**
 * Reads the records of a batch, when they are in the form encodeBatchRecords writes (or any other
 * definite-length encoding of the same values) and within `limits`: every seq ≥ 1 and time ≥ 0 a
 * safe integer, a known kind, a body within the bound, a 32-byte hash. Undefined for anything
 * else (the caller's generic decoder then says what is wrong). Bodies and hashes are views of
 * `raw`.
 */
export function readBatchRecords(raw: Uint8Array, limits: BatchRecordLimits): BatchRecord[] | undefined {
  const end = raw.length;
  let at = 0;
  // One head: returns the argument, or -1 when it is not a definite safe integer of `major`.
  const head = (major: number): number => {
    if (at >= end) return -1;
    const initial = raw[at++]!;
    if (initial >> 5 !== major) return -1;
    const info = initial & 0x1f;
    if (info < 24) return info;
    if (info === 24) {
      if (at + 1 > end) return -1;
      return raw[at++]!;
    }
    if (info === 25) {
      if (at + 2 > end) return -1;
      const n = (raw[at]! << 8) | raw[at + 1]!;
      at += 2;
      return n;
    }
    if (info === 26) {
      if (at + 4 > end) return -1;
      const n = readU32(raw, at);
      at += 4;
      return n;
    }
    if (info === 27) {
      if (at + 8 > end) return -1;
      const high = readU32(raw, at);
      if (high > MAX_SAFE_HIGH) return -1;
      const n = high * TWO_32 + readU32(raw, at + 4);
      at += 8;
      return n > Number.MAX_SAFE_INTEGER ? -1 : n;
    }
    return -1;
  };
  const count = head(MAJOR_ARRAY);
  if (count < 1 || count > limits.maxRecords || count > end - at) return undefined;
  const records: BatchRecord[] = new Array(count);
  for (let i = 0; i < count; i++) {
    if (head(MAJOR_ARRAY) !== 5) return undefined;
    const seq = head(MAJOR_UNSIGNED);
    if (seq < 1) return undefined;
    const timeMs = head(MAJOR_UNSIGNED);
    if (timeMs < 0) return undefined;
    const kindLength = head(MAJOR_TEXT);
    if (kindLength < 0 || kindLength > end - at) return undefined;
    const kind = knownKind(raw, at, kindLength);
    if (kind === undefined) return undefined;
    at += kindLength;
    const bodyLength = head(MAJOR_BYTES);
    if (bodyLength < 0 || bodyLength > limits.maxBodyBytes || bodyLength > end - at) return undefined;
    const body = new Uint8Array(raw.buffer, raw.byteOffset + at, bodyLength);
    at += bodyLength;
    if (head(MAJOR_BYTES) !== HASH_BYTES || HASH_BYTES > end - at) return undefined;
    const hash = new Uint8Array(raw.buffer, raw.byteOffset + at, HASH_BYTES);
    at += HASH_BYTES;
    records[i] = { seq, timeMs, kind, body, hash };
  }
  return at === end ? records : undefined;
}

function readU32(bytes: Uint8Array, at: number): number {
  return bytes[at]! * 0x1000000 + ((bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!);
}

function knownKind(raw: Uint8Array, at: number, length: number): AuditKind | undefined {
  for (const [name, bytes] of KIND_BYTES) {
    if (bytes.length !== length) continue;
    let same = true;
    for (let j = 0; j < length; j++) {
      if (raw[at + j] !== bytes[j]) {
        same = false;
        break;
      }
    }
    if (same) return name;
  }
  return undefined;
}
