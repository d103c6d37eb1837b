// Measurement records and the composite digest. Pure.
//
// A record says what one measured path was at measuring time: a regular file with its SHA-256,
// size, mode and owner; a symbolic link with its target; or why there is no digest (missing,
// unreadable, not a regular file, or changing on every read). Nothing measured is ever left
// out: a path that could not be hashed is a record too, so it shows in the composite and in
// every comparison.
//
// Composite = PCR-style extend over the records in path order (UTF-8 byte order):
//   c₀ = 32 zero bytes,  cᵢ = SHA-256(cᵢ₋₁ ‖ SHA-256(canonical CBOR of recordᵢ))
// The order is fixed by the paths, never by the order files were found in, so two devices
// with the same files agree on the composite however their directories list them.
import { fromHex, toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import { type CborMapKey, type CborValue, type Encodable, encodeCbor } from '../envelope/cbor.js';

export type RecordState = 'file' | 'symlink' | 'missing' | 'unreadable' | 'not-regular' | 'unstable';
export const RECORD_STATES: readonly RecordState[] = ['file', 'symlink', 'missing', 'unreadable', 'not-regular', 'unstable'];

export type FileKind = 'directory' | 'fifo' | 'socket' | 'character-device' | 'block-device' | 'unknown';
export const FILE_KINDS: readonly FileKind[] = ['directory', 'fifo', 'socket', 'character-device', 'block-device', 'unknown'];

export interface MeasurementRecord {
  /** The device path (below the measure root), as the profile and the references name it. */
  readonly path: string;
  readonly state: RecordState;
  /** Lowercase hex SHA-256 of the content (state `file`). */
  readonly sha256?: string;
  readonly size?: number;
  /** Permission bits, st_mode & 0o7777. */
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  /** What a symbolic link points to, as stored in the link (state `symlink`). */
  readonly target?: string;
  /** What the path is instead of a regular file (state `not-regular`). */
  readonly kind?: FileKind;
  /** errno code of a path that could not be read (state `unreadable`), e.g. EACCES. */
  readonly error?: string;
}

export const ZERO_DIGEST: Uint8Array = new Uint8Array(32);

/** Writable by anyone on the box (o+w): reported whatever the content. Links carry no mode of their own. */
export function isWorldWritable(record: MeasurementRecord): boolean {
  return record.state !== 'symlink' && record.mode !== undefined && (record.mode & 0o002) !== 0;
}

/** The record as a CBOR map (digest as a byte string); absent fields are left out. */
export function recordToCbor(record: MeasurementRecord): Map<CborMapKey, Encodable> {
  const map = new Map<CborMapKey, Encodable>([
    ['path', record.path],
    ['state', record.state],
  ]);
  if (record.sha256 !== undefined) map.set('sha256', fromHex(record.sha256)!);
  if (record.size !== undefined) map.set('size', record.size);
  if (record.mode !== undefined) map.set('mode', record.mode);
  if (record.uid !== undefined) map.set('uid', record.uid);
  if (record.gid !== undefined) map.set('gid', record.gid);
  if (record.target !== undefined) map.set('target', record.target);
  if (record.kind !== undefined) map.set('kind', record.kind);
  if (record.error !== undefined) map.set('error', record.error);
  return map;
}

/** Deterministic CBOR (RFC 8949 §4.2.1) of one record: what the composite covers. */
export function canonicalRecord(record: MeasurementRecord): Uint8Array {
  return encodeCbor(recordToCbor(record));
}

/** Sorts by path in UTF-8 byte order (the composite's order). */
export function sortRecords(records: readonly MeasurementRecord[]): MeasurementRecord[] {
  return [...records].sort((a, b) => comparePaths(a.path, b.path));
}

export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The composite digest over `records`, in path order whatever order they come in. */
export function compositeDigest(records: readonly MeasurementRecord[]): Uint8Array {
  let composite: Uint8Array = ZERO_DIGEST;
  let previous: string | undefined;
  for (const record of sortRecords(records)) {
    if (previous === record.path) throw new RangeError(`path ${record.path} is measured twice`);
    previous = record.path;
    composite = extend(composite, sha256(canonicalRecord(record)));
  }
  return composite;
}

/** PCR extend: SHA-256(value ‖ digest). */
export function extend(value: Uint8Array, digest: Uint8Array): Uint8Array {
  const joined = new Uint8Array(value.length + digest.length);
  joined.set(value);
  joined.set(digest, value.length);
  return sha256(joined);
}

/** Reads a record from decoded CBOR (evidence); the reason it is refused otherwise. */
export function recordFromCbor(value: CborValue): MeasurementRecord | string {
  if (!(value instanceof Map)) return 'a measurement must be a map';
  const known = new Set(['path', 'state', 'sha256', 'size', 'mode', 'uid', 'gid', 'target', 'kind', 'error']);
  for (const key of value.keys()) if (typeof key !== 'string' || !known.has(key)) return `a measurement has an unknown key ${String(key)}`;
  const path = value.get('path');
  const state = value.get('state');
  if (typeof path !== 'string' || !path.startsWith('/') || path.length > 1024) return 'measurement path must be an absolute path';
  if (typeof state !== 'string' || !RECORD_STATES.includes(state as RecordState)) return `measurement ${path}: unknown state`;
  const out: { -readonly [K in keyof MeasurementRecord]: MeasurementRecord[K] } = { path, state: state as RecordState };
  const digest = value.get('sha256');
  if (digest !== undefined) {
    if (!(digest instanceof Uint8Array) || digest.length !== 32) return `measurement ${path}: sha256 must be 32 bytes`;
    out.sha256 = toHex(digest);
  }
  for (const key of ['size', 'mode', 'uid', 'gid'] as const) {
    const n = value.get(key);
    if (n === undefined) continue;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return `measurement ${path}: ${key} must be a non-negative integer`;
    out[key] = n;
  }
  for (const key of ['target', 'error'] as const) {
    const s = value.get(key);
    if (s === undefined) continue;
    if (typeof s !== 'string' || s.length > 4096) return `measurement ${path}: ${key} must be text`;
    out[key] = s;
  }
  const kind = value.get('kind');
  if (kind !== undefined) {
    if (typeof kind !== 'string' || !FILE_KINDS.includes(kind as FileKind)) return `measurement ${path}: unknown kind`;
    out.kind = kind as FileKind;
  }
  return out;
}

