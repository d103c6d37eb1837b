// Exported audit records: a range of records, each with its inclusion proof against the newest
// checkpoint (the anchor), as JSON lines or a CBOR sequence (RFC 8742) of maps with the same
// keys. The first item is a header with the anchor checkpoint (its signed record body) and the
// device keys the log knows; each checkpoint record in the range also carries a consistency
// proof to the anchor. So an exported file is checked on its own: the chain within the range,
// every record's inclusion in the signed anchor, every checkpoint's signature and consistency.
// Records after the anchor have no proof yet (chained only) and are reported as such.
import { type KeyType, isKeyType } from '../crypto/algorithms.js';
import { type PublicKey, publicKeyFromRaw } from '../crypto/keys.js';
import { type CborMap, type CborValue, type Encodable, decodeCbor, encodeCbor } from '../envelope/cbor.js';
import { type AuditKind, type AuditRecord, GENESIS_HASH, recordHash } from './chain.js';
import { type Checkpoint, CheckpointError, verifyCheckpointBody } from './checkpoint.js';
import { consistencyProof, hashesEqual, inclusionProof, leafHash, MerkleError, verifyConsistency, verifyInclusion } from './merkle.js';
import { type AuditReader, isKnownKind } from './reader.js';
import { type CheckpointSummary, type VerifyFailure, type VerifyFailureCode, type VerifyReport, checkpointFailure } from './verify.js';
import { ZtedgeError } from '../errors.js';

export const EXPORT_FORMAT = 'ztedge-audit-export';
export type ExportFormat = 'jsonl' | 'cbor';

export interface ExportAnchor {
  seq: number;
  size: number;
  root: Uint8Array;
  /** The checkpoint record's body (COSE_Sign1 + note signature). */
  body: Uint8Array;
}

export interface ExportHeader {
  from: number;
  to: number;
  anchor: ExportAnchor | null;
  keys: PublicKey[];
}

export interface ExportedRecord extends AuditRecord {
  /** Inclusion proof in the anchor's tree; null for records after it. */
  proof: Uint8Array[] | null;
  /** For checkpoint records: consistency proof from their tree to the anchor's. */
  consistency?: Uint8Array[];
}

export class ExportError extends ZtedgeError<'AUDIT_EXPORT_MALFORMED'> {
  constructor(message: string) {
    super('AUDIT_EXPORT_MALFORMED', message);
  }
}

// ---------------------------------------------------------------------------------------
// Producing

/** Header and records of [from, to] with proofs against the newest checkpoint, read in one snapshot by the caller. */
export function* exportRange(reader: AuditReader, from: number, to: number): Generator<ExportHeader | ExportedRecord> {
  const latest = reader.latestCheckpoint();
  const anchor: ExportAnchor | null = latest === undefined ? null : { seq: latest.seq, size: latest.checkpoint.size, root: latest.checkpoint.root, body: latest.body };
  yield { from, to, anchor, keys: reader.keys().map((k) => k.key) };
  const tree = reader.tree();
  for (const record of reader.iterate(from, to)) {
    const covered = anchor !== null && record.seq <= anchor.size;
    const item: ExportedRecord = { ...record, proof: covered ? inclusionProof(record.seq - 1, anchor.size, tree) : null };
    // A checkpoint's consistency proof to the anchor (the first one, of the empty tree, has none).
    if (record.kind === 'checkpoint' && anchor !== null && record.seq <= anchor.seq && record.seq > 1) item.consistency = consistencyProof(record.seq - 1, anchor.size, tree);
    yield item;
  }
}

export function isHeader(item: ExportHeader | ExportedRecord): item is ExportHeader {
  return 'anchor' in item;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

/** One JSON line (with its newline). */
export function jsonLine(item: ExportHeader | ExportedRecord): string {
  if (isHeader(item)) {
    return `${JSON.stringify({
      type: 'header',
      format: EXPORT_FORMAT,
      version: 1,
      from: item.from,
      to: item.to,
      checkpoint: item.anchor === null ? null : { seq: item.anchor.seq, size: item.anchor.size, root: hex(item.anchor.root), body: b64(item.anchor.body) },
      keys: item.keys.map((k) => ({ keyType: k.keyType, publicKey: b64(k.raw) })),
    })}\n`;
  }
  return `${JSON.stringify({
    type: 'record',
    seq: item.seq,
    timeMs: item.timeMs,
    time: new Date(item.timeMs).toISOString(),
    kind: item.kind,
    body: b64(item.body),
    prevHash: hex(item.prevHash),
    hash: hex(item.hash),
    proof: item.proof === null ? null : item.proof.map(hex),
    ...(item.consistency === undefined ? {} : { consistency: item.consistency.map(hex) }),
  })}\n`;
}

/** One CBOR map of the sequence. */
export function cborItem(item: ExportHeader | ExportedRecord): Uint8Array {
  let value: Encodable;
  if (isHeader(item)) {
    value = {
      type: 'header',
      format: EXPORT_FORMAT,
      version: 1,
      from: item.from,
      to: item.to,
      checkpoint: item.anchor === null ? null : { seq: item.anchor.seq, size: item.anchor.size, root: item.anchor.root, body: item.anchor.body },
      keys: item.keys.map((k) => ({ keyType: k.keyType, publicKey: k.raw })),
    };
  } else {
    value = {
      type: 'record',
      seq: item.seq,
      timeMs: item.timeMs,
      kind: item.kind,
      body: item.body,
      prevHash: item.prevHash,
      hash: item.hash,
      proof: item.proof,
      ...(item.consistency === undefined ? {} : { consistency: item.consistency }),
    };
  }
  return encodeCbor(value, 256);
}

// ---------------------------------------------------------------------------------------
// Reading (untrusted input: strict shapes, bounded sizes)

const MAX_ITEM_BYTES = 1024 * 1024;
const MAX_PROOF_LENGTH = 64;

export interface ParsedExport {
  header: ExportHeader;
  records: ExportedRecord[];
}

/** Parses an export in either format (JSON lines start with `{`). */
export function parseExport(bytes: Uint8Array): ParsedExport {
  const items = bytes[0] === 0x7b ? jsonItems(bytes) : cborItems(bytes);
  if (items.length === 0) throw new ExportError('empty export');
  const header = readHeader(items[0]!);
  const records = items.slice(1).map(readRecord);
  return { header, records };
}

type Reader = { get(key: string): unknown; keys(): string[] };

function jsonItems(bytes: Uint8Array): Reader[] {
  const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((line, i) => {
    if (line.length > MAX_ITEM_BYTES) throw new ExportError(`line ${i + 1} is longer than ${MAX_ITEM_BYTES} bytes`);
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new ExportError(`line ${i + 1} is not JSON`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ExportError(`line ${i + 1} is not an object`);
    const obj = value as Record<string, unknown>;
    return { get: (k) => jsonValue(obj[k], k), keys: () => Object.keys(obj) };
  });
}

/** JSON carries bytes as hex (hashes) or base64 (bodies, keys): turned into bytes by field name. */
const HEX_FIELDS = new Set(['root', 'prevHash', 'hash', 'proof', 'consistency']);
const BASE64_FIELDS = new Set(['body', 'publicKey']);

function jsonValue(v: unknown, key: string): unknown {
  if (HEX_FIELDS.has(key)) {
    if (typeof v === 'string') return fromHexStrict(v, key);
    if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? fromHexStrict(x, key) : x));
  }
  if (BASE64_FIELDS.has(key) && typeof v === 'string') {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw new ExportError(`${key} is not base64`);
    return new Uint8Array(Buffer.from(v, 'base64'));
  }
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const obj = v as Record<string, unknown>;
    return { get: (k: string) => jsonValue(obj[k], k), keys: () => Object.keys(obj) } satisfies Reader;
  }
  if (Array.isArray(v)) return v.map((x) => jsonValue(x, ''));
  return v;
}

function fromHexStrict(s: string, key: string): Uint8Array {
  if (!/^([0-9a-f]{2})*$/.test(s)) throw new ExportError(`${key} is not lowercase hex`);
  return new Uint8Array(Buffer.from(s, 'hex'));
}

function cborItems(bytes: Uint8Array): Reader[] {
  const items: Reader[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const length = cborItemLength(bytes, offset);
    if (length > MAX_ITEM_BYTES) throw new ExportError(`item ${items.length + 1} is larger than ${MAX_ITEM_BYTES} bytes`);
    let value: CborValue;
    try {
      value = decodeCbor(bytes.subarray(offset, offset + length), { maxBytes: MAX_ITEM_BYTES, maxDepth: 4 });
    } catch (err) {
      throw new ExportError(`item ${items.length + 1}: ${(err as Error).message}`);
    }
    items.push(cborReader(value, items.length + 1));
    offset += length;
  }
  return items;
}

function cborReader(value: CborValue, n: number): Reader {
  if (!(value instanceof Map)) throw new ExportError(`item ${n} is not a map`);
  const map = value as CborMap;
  return {
    get: (k) => {
      const v = map.get(k);
      return v instanceof Map ? cborReader(v, n) : v;
    },
    keys: () => [...map.keys()].map(String),
  };
}

/**
 * Length of the CBOR item at `offset` (definite lengths only: the strict decoder refuses the
 * rest anyway), found by walking heads without building values.
 */
function cborItemLength(bytes: Uint8Array, offset: number): number {
  let pos = offset;
  let pending = 1;
  while (pending > 0) {
    if (pos >= bytes.length) throw new ExportError('truncated CBOR item');
    const initial = bytes[pos++]!;
    const major = initial >> 5;
    const info = initial & 0x1f;
    let arg: number;
    if (info < 24) arg = info;
    else if (info <= 27) {
      const size = 1 << (info - 24);
      if (pos + size > bytes.length) throw new ExportError('truncated CBOR head');
      arg = 0;
      for (let i = 0; i < size; i++) arg = arg * 256 + bytes[pos + i]!;
      pos += size;
    } else throw new ExportError('indefinite or reserved CBOR length');
    pending--;
    if (major === 2 || major === 3) pos += arg;
    else if (major === 4) pending += arg;
    else if (major === 5) pending += 2 * arg;
    else if (major === 6) pending += 1;
    if (pos - offset > MAX_ITEM_BYTES + 16) throw new ExportError(`item larger than ${MAX_ITEM_BYTES} bytes`);
  }
  if (pos > bytes.length) throw new ExportError('truncated CBOR item');
  return pos - offset;
}

function only(r: Reader, keys: readonly string[], what: string): void {
  for (const k of r.keys()) if (!keys.includes(k)) throw new ExportError(`${what} has an unknown field ${k}`);
}

function int(r: Reader, key: string, what: string): number {
  const v = r.get(key);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ExportError(`${what}.${key} must be a non-negative integer`);
  return v;
}

function bytesField(r: Reader, key: string, what: string, length?: number): Uint8Array {
  const v = r.get(key);
  if (!(v instanceof Uint8Array) || (length !== undefined && v.length !== length)) throw new ExportError(`${what}.${key} must be ${length ?? 'some'} bytes`);
  return v;
}

function hashList(r: Reader, key: string, what: string): Uint8Array[] {
  const v = r.get(key);
  if (!Array.isArray(v) || v.length > MAX_PROOF_LENGTH || v.some((h) => !(h instanceof Uint8Array) || h.length !== 32)) {
    throw new ExportError(`${what}.${key} must be a list of at most ${MAX_PROOF_LENGTH} hashes`);
  }
  return v as Uint8Array[];
}

function readHeader(r: Reader): ExportHeader {
  only(r, ['type', 'format', 'version', 'from', 'to', 'checkpoint', 'keys'], 'header');
  if (r.get('type') !== 'header' || r.get('format') !== EXPORT_FORMAT || r.get('version') !== 1) throw new ExportError(`not a ${EXPORT_FORMAT} version 1 header`);
  const cp = r.get('checkpoint');
  let anchor: ExportAnchor | null = null;
  if (cp !== null) {
    if (typeof cp !== 'object' || cp === undefined || !('get' in cp)) throw new ExportError('header.checkpoint must be a map or null');
    const c = cp as Reader;
    only(c, ['seq', 'size', 'root', 'body'], 'header.checkpoint');
    anchor = { seq: int(c, 'seq', 'checkpoint'), size: int(c, 'size', 'checkpoint'), root: bytesField(c, 'root', 'checkpoint', 32), body: bytesField(c, 'body', 'checkpoint') };
  }
  const keys = r.get('keys');
  if (!Array.isArray(keys) || keys.length > 16) throw new ExportError('header.keys must be a list of at most 16 keys');
  return {
    from: int(r, 'from', 'header'),
    to: int(r, 'to', 'header'),
    anchor,
    keys: keys.map((k: unknown) => {
      if (typeof k !== 'object' || k === null || !('get' in k)) throw new ExportError('header.keys entries must be maps');
      const kr = k as Reader;
      only(kr, ['keyType', 'publicKey'], 'key');
      const type = kr.get('keyType');
      if (typeof type !== 'string' || !isKeyType(type)) throw new ExportError('key.keyType must be ed25519 or p256');
      try {
        return publicKeyFromRaw(type as KeyType, bytesField(kr, 'publicKey', 'key'));
      } catch (err) {
        throw new ExportError(`key.publicKey: ${(err as Error).message}`);
      }
    }),
  };
}

function readRecord(r: Reader, i: number): ExportedRecord {
  const what = `record ${i + 1}`;
  only(r, ['type', 'seq', 'timeMs', 'time', 'kind', 'body', 'prevHash', 'hash', 'proof', 'consistency'], what);
  if (r.get('type') !== 'record') throw new ExportError(`${what} is not a record`);
  const kind = r.get('kind');
  if (typeof kind !== 'string' || !isKnownKind(kind)) throw new ExportError(`${what}.kind is not an audit kind`);
  const seq = int(r, 'seq', what);
  if (seq < 1) throw new ExportError(`${what}.seq must be positive`);
  const proof = r.get('proof') === null ? null : hashList(r, 'proof', what);
  return {
    seq,
    timeMs: int(r, 'timeMs', what),
    kind: kind as AuditKind,
    body: bytesField(r, 'body', what),
    prevHash: bytesField(r, 'prevHash', what, 32),
    hash: bytesField(r, 'hash', what, 32),
    proof,
    ...(r.get('consistency') === undefined ? {} : { consistency: hashList(r, 'consistency', what) }),
  };
}

// ---------------------------------------------------------------------------------------
// Verifying an export on its own

export function verifyExport(parsed: ParsedExport, keys: readonly PublicKey[]): VerifyReport {
  const { header, records } = parsed;
  const first = records[0]?.seq ?? header.from;
  let lastCheckpoint: CheckpointSummary | undefined;
  let checkpoints = 0;
  let seen = 0;
  const report = (failure?: VerifyFailure): VerifyReport => ({
    ...(failure === undefined ? {} : { failure }),
    firstSeq: first,
    lastSeq: first + seen - 1,
    records: seen,
    checkpoints,
    ...(lastCheckpoint === undefined ? {} : { lastCheckpoint }),
    uncovered: records.filter((r) => header.anchor === null || r.seq > header.anchor.seq).length,
  });
  const fail = (code: VerifyFailureCode, seq: number, message: string) => report({ code, seq, message });

  const anchor = header.anchor;
  let anchorCheckpoint: Checkpoint | undefined;
  if (anchor !== null) {
    const checked = checkCheckpoint(anchor.body, anchor.seq, keys);
    if ('code' in checked) return fail(checked.code, anchor.seq, checked.message);
    anchorCheckpoint = checked;
    if (checked.size !== anchor.size || !hashesEqual(checked.root, anchor.root)) return fail('AUDIT_CHECKPOINT_MALFORMED', anchor.seq, 'the header disagrees with the signed checkpoint');
    lastCheckpoint = { seq: anchor.seq, size: checked.size, root: checked.root, timeMs: checked.timeMs };
  }
  if (records.length > 0 && first !== header.from) return fail('AUDIT_SEQ_GAP', header.from, `the export starts at ${first}, its header says ${header.from}`);

  let prev: { seq: number; hash: Uint8Array } | undefined = first === 1 ? { seq: 0, hash: GENESIS_HASH } : undefined;
  let previousCheckpoint: Checkpoint | undefined;
  for (const r of records) {
    if (prev !== undefined && r.seq !== prev.seq + 1) return fail('AUDIT_SEQ_GAP', prev.seq + 1, `record ${prev.seq + 1} is missing`);
    if (prev !== undefined && !hashesEqual(r.prevHash, prev.hash)) return fail('AUDIT_PREV_MISMATCH', r.seq, `record ${r.seq} does not link to record ${r.seq - 1}`);
    if (!hashesEqual(recordHash(r.prevHash, r.seq, r.timeMs, r.kind, r.body), r.hash)) return fail('AUDIT_HASH_MISMATCH', r.seq, `record ${r.seq} does not match its hash: its content was changed`);
    if (anchor !== null && anchorCheckpoint !== undefined) {
      if (r.seq <= anchor.size) {
        if (r.proof === null) return fail('AUDIT_PROOF_INVALID', r.seq, `record ${r.seq} is covered by the checkpoint but has no proof`);
        try {
          verifyInclusion(r.seq - 1, anchor.size, leafHash(r.hash), r.proof, anchor.root);
        } catch (err) {
          if (!(err instanceof MerkleError)) throw err;
          return fail('AUDIT_PROOF_INVALID', r.seq, `record ${r.seq} is not in the checkpoint's tree: ${err.message}`);
        }
      } else if (r.proof !== null) return fail('AUDIT_PROOF_INVALID', r.seq, `record ${r.seq} has a proof but comes after the checkpoint`);
      if (r.seq === anchor.seq && (r.kind !== 'checkpoint' || !hashesEqual(r.body, anchor.body))) return fail('AUDIT_PROOF_INVALID', r.seq, `record ${r.seq} is not the header's checkpoint`);
    }
    if (r.kind === 'checkpoint') {
      const checked = checkCheckpoint(r.body, r.seq, keys);
      if ('code' in checked) return fail(checked.code, r.seq, checked.message);
      if (previousCheckpoint !== undefined && (checked.prevSize !== previousCheckpoint.size || !hashesEqual(checked.prevRoot, previousCheckpoint.root))) {
        return fail('AUDIT_CHECKPOINT_LINK', r.seq, `checkpoint ${r.seq} does not link to the checkpoint before it`);
      }
      if (anchorCheckpoint !== undefined && r.seq <= anchor!.seq && checked.size > 0) {
        try {
          verifyConsistency(checked.size, anchorCheckpoint.size, checked.root, anchorCheckpoint.root, r.consistency ?? []);
        } catch (err) {
          if (!(err instanceof MerkleError)) throw err;
          return fail('AUDIT_PROOF_INVALID', r.seq, `checkpoint ${r.seq} is not consistent with the newest checkpoint: ${err.message}`);
        }
      }
      previousCheckpoint = checked;
      checkpoints++;
    }
    prev = { seq: r.seq, hash: r.hash };
    seen++;
  }
  if (records.length > 0 && prev!.seq !== header.to) return fail('AUDIT_TRUNCATED', prev!.seq + 1, `the export ends at ${prev!.seq}, its header says ${header.to}`);
  return report();
}

function checkCheckpoint(body: Uint8Array, seq: number, keys: readonly PublicKey[]): Checkpoint | { code: VerifyFailureCode; message: string } {
  try {
    const { checkpoint } = verifyCheckpointBody(body, keys);
    if (checkpoint.size !== seq - 1) return { code: 'AUDIT_CHECKPOINT_MISPLACED', message: `checkpoint ${seq} claims size ${checkpoint.size}` };
    return checkpoint;
  } catch (err) {
    if (!(err instanceof CheckpointError)) throw err;
    return { code: checkpointFailure(err), message: `checkpoint ${seq}: ${err.message}` };
  }
}
