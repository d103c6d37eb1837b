// The audit sync protocol between an agent and its collector: batches of records up, signed
// acknowledgements down. Pure apart from the signature operations and compression.
//
// A batch carries consecutive records of one device's log:
//   message = CBOR map { "head": COSE_Sign1, "data": bstr }
//   data    = gzip( CBOR array of [seq, time_ms, kind, body, hash] )
//   head    = COSE_Sign1 by the device key (external AAD "ztedge audit batch v1") over
//     { "v": 1, "device", "first", "last", "head" (the agent's newest seq), "time" (agent ms),
//       "enc": "gzip", "size" (bytes of data once inflated), "digest" (SHA-256 of data),
//       "cover"?: { "seq", "body" }, "proof"?: [bstr] }
// The signature covers the records through the digest, so the device key authenticates the whole
// batch while signing only a few hundred bytes. Every batch is covered by a signed checkpoint:
// either its last record is a checkpoint, or `cover` carries the first checkpoint record after it
// (seq c, body as stored) with `proof`, the RFC 9162 consistency proof from the tree of `last`
// records to the checkpoint's tree of c − 1 records. The collector, which computes the tree of
// what it stored, thus checks that the records it is given are those the device signed.
//
// Records travel without their previous hash (the one before in the batch, or the collector's
// last stored one); the collector recomputes every hash from the chain it holds.
//
// Compression: zstd would be the better codec, but node:zlib has it only from Node 22.15 and
// the agent supports Node 20.19, so batches are gzip (inflated with a bound: `size`).
//
// An acknowledgement is a COSE_Sign1 by the collector key (AAD "ztedge audit ack v1") over
//   { "v": 1, "device", "batch" (SHA-256 of the head bytes it answers), "status", "seq", "time",
//     "code"?, "at"?, "message"? }
//   status "stored":  every record of the batch is durably stored (or was already, identical);
//                     `seq` is the highest seq the collector holds for the device.
//   status "ahead":   the batch starts after the collector's next seq (`seq` is its newest):
//                     nothing stored, the agent resends from seq + 1.
//   status "refused": the batch failed a check (`code`, at seq `at`): nothing stored.
// `time` is the collector's clock, signed: the agent's trusted clock may rise to it.
import { gunzip, gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { bytesEqual } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import type { PrivateKey, PublicKey } from '../crypto/keys.js';
import { type CborMap, type CborValue, decodeCbor, encodeCbor } from '../envelope/cbor.js';
import { decodeSign1, signSign1Async, verifySign1 } from '../envelope/cose.js';
import { EnvelopeError } from '../envelope/errors.js';
import { ZtedgeError } from '../errors.js';
import { type AuditKind, AUDIT_KINDS } from './chain.js';
import { type BatchRecord, encodeBatchRecords, readBatchRecords } from './batch-records.js';
import { HASH_BYTES } from './merkle.js';

export const BATCH_AAD = new TextEncoder().encode('ztedge audit batch v1');
export const ACK_AAD = new TextEncoder().encode('ztedge audit ack v1');
export const BATCH_ENCODING = 'gzip';

/** Bounds a collector applies to what it is sent (an agent never builds more). */
export const MAX_HEAD_BYTES = 16 * 1024;
export const MAX_ACK_BYTES = 4 * 1024;
/** Records in one batch, and bytes of one batch's records once inflated. */
export const MAX_BATCH_RECORDS = 100_000;
export const MAX_BATCH_INFLATED_BYTES = 64 * 1024 * 1024;
/** A record body (the agent's own bound is 64 KiB by default). */
export const MAX_RECORD_BODY_BYTES = 1024 * 1024;
const MAX_PROOF_HASHES = 64;
const MAX_MESSAGE_LENGTH = 500;
const DEVICE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export type SyncProtocolErrorCode = 'SYNC_MALFORMED' | 'SYNC_BAD_SIGNATURE' | 'SYNC_UNKNOWN_KEY' | 'SYNC_TOO_LARGE';

export class SyncProtocolError extends ZtedgeError<SyncProtocolErrorCode> {}

export type { BatchRecord } from './batch-records.js';

export interface BatchCover {
  /** Seq of the checkpoint record (after the batch's last record). */
  seq: number;
  /** Its body as stored (COSE_Sign1 + note signature). */
  body: Uint8Array;
}

export interface BatchHead {
  device: string;
  first: number;
  last: number;
  /** The agent's newest committed seq when it sent the batch (the collector's lag figure). */
  head: number;
  timeMs: number;
  encoding: typeof BATCH_ENCODING;
  /** Bytes of `data` once inflated. */
  size: number;
  digest: Uint8Array;
  cover?: BatchCover;
  proof?: Uint8Array[];
}

export interface DecodedBatch {
  head: BatchHead;
  /** The head COSE_Sign1 as received (its SHA-256 names the batch in the acknowledgement). */
  headBytes: Uint8Array;
  /** The kid the head was signed with (checked by verifyBatchHead). */
  kid: Uint8Array | undefined;
  data: Uint8Array;
}

// ---------------------------------------------------------------------------------------
// Batches

export interface EncodeBatchInput {
  device: string;
  /** The seq the batch starts at (default: the first record's; a record missing there is the collector's to report). */
  first?: number;
  records: readonly BatchRecord[];
  /** The agent's newest committed seq. */
  head: number;
  timeMs: number;
  cover?: BatchCover;
  proof?: readonly Uint8Array[];
  key: PrivateKey;
  /** gzip level (default 1: the records carry hashes that do not compress, speed wins). */
  level?: number;
}

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);
const MIN_CHUNK = 64;

/** Compresses and signs a batch; compression and signing run on libuv's thread pool. */
export async function encodeBatch(input: EncodeBatchInput): Promise<{ bytes: Uint8Array; headBytes: Uint8Array; first: number; last: number }> {
  const { records } = input;
  if (records.length === 0) throw new RangeError('a batch holds at least one record');
  const first = input.first ?? records[0]!.seq;
  const last = records[records.length - 1]!.seq;
  const raw = encodeBatchRecords(records);
  const data = new Uint8Array(await gzipAsync(raw, { level: input.level ?? 1 }));
  const payload: Record<string, CborValue> = {
    v: 1,
    device: input.device,
    first,
    last,
    head: input.head,
    time: input.timeMs,
    enc: BATCH_ENCODING,
    size: raw.length,
    digest: sha256(data),
  };
  if (input.cover !== undefined) {
    payload.cover = new Map<string, CborValue>([
      ['seq', input.cover.seq],
      ['body', input.cover.body],
    ]);
    payload.proof = [...(input.proof ?? [])];
  }
  const headBytes = await signSign1Async({ payload: encodeCbor(payload), key: input.key, externalAad: BATCH_AAD });
  return { bytes: encodeCbor({ head: headBytes, data }, headBytes.length + data.length + 32), headBytes, first, last };
}

/**
 * Decodes a batch message and its head, without checking the signature (the device key is
 * looked up by the head's device first). Throws SyncProtocolError.
 */
export function decodeBatch(bytes: Uint8Array, maxBytes: number): DecodedBatch {
  if (bytes.length > maxBytes) throw new SyncProtocolError('SYNC_TOO_LARGE', `a batch of ${bytes.length} bytes exceeds ${maxBytes}`);
  const outer = protocolMap(() => decodeCbor(bytes, { maxBytes, maxDepth: 2 }), ['head', 'data'], 'batch');
  const headBytes = outer.get('head');
  const data = outer.get('data');
  if (!(headBytes instanceof Uint8Array) || !(data instanceof Uint8Array)) throw malformed('batch head and data must be byte strings');
  let message;
  try {
    message = decodeSign1(headBytes, { maxBytes: MAX_HEAD_BYTES, maxDepth: 4 });
  } catch (err) {
    throw malformed(`batch head: ${(err as Error).message}`);
  }
  const kid = message.protectedHeader.get(4);
  const map = protocolMap(() => decodeCbor(message.payload, { maxBytes: MAX_HEAD_BYTES, maxDepth: 3 }), ['v', 'device', 'first', 'last', 'head', 'time', 'enc', 'size', 'digest', 'cover', 'proof'], 'batch head', [
    'cover',
    'proof',
  ]);
  if (map.get('v') !== 1) throw malformed('batch head version must be 1');
  if (map.get('enc') !== BATCH_ENCODING) throw malformed(`batch encoding must be ${BATCH_ENCODING}`);
  const head: BatchHead = {
    device: deviceId(map.get('device')),
    first: count(map, 'first', 1),
    last: count(map, 'last', 1),
    head: count(map, 'head', 0),
    timeMs: count(map, 'time', 0),
    encoding: BATCH_ENCODING,
    size: count(map, 'size', 1),
    digest: hash32(map.get('digest'), 'digest'),
  };
  if (head.last < head.first) throw malformed('batch last is before first');
  if (head.last - head.first + 1 > MAX_BATCH_RECORDS) throw new SyncProtocolError('SYNC_TOO_LARGE', `a batch spans at most ${MAX_BATCH_RECORDS} records`);
  if (head.size > MAX_BATCH_INFLATED_BYTES) throw new SyncProtocolError('SYNC_TOO_LARGE', `a batch inflates to at most ${MAX_BATCH_INFLATED_BYTES} bytes`);
  if (map.has('cover') !== map.has('proof')) throw malformed('cover and proof go together');
  if (map.has('cover')) {
    const cover = protocolMap(() => map.get('cover')!, ['seq', 'body'], 'batch cover');
    const body = cover.get('body');
    if (!(body instanceof Uint8Array)) throw malformed('cover body must be a byte string');
    head.cover = { seq: count(cover, 'seq', 1), body };
    if (head.cover.seq <= head.last) throw malformed('the cover checkpoint must come after the batch');
    const proof = map.get('proof');
    if (!Array.isArray(proof) || proof.length > MAX_PROOF_HASHES) throw malformed(`proof must be a list of at most ${MAX_PROOF_HASHES} hashes`);
    head.proof = proof.map((p) => hash32(p, 'proof hash'));
  }
  if (!bytesEqual(sha256(data), head.digest)) throw malformed('batch data does not match the signed digest');
  return { head, headBytes, kid: kid instanceof Uint8Array ? kid : undefined, data };
}

/** Checks the head's signature with the device's keys; throws SyncProtocolError. */
export function verifyBatchHead(batch: DecodedBatch, keys: readonly PublicKey[]): PublicKey {
  try {
    return verifySign1(batch.headBytes, {
      key: (kid) => keys.find((k) => bytesEqual(k.kid, kid)),
      externalAad: BATCH_AAD,
      requireProtectedKid: true,
      maxBytes: MAX_HEAD_BYTES,
      maxDepth: 4,
    }).key;
  } catch (err) {
    if (!(err instanceof EnvelopeError)) throw err;
    if (err.code === 'ENVELOPE_KID_UNKNOWN' || err.code === 'ENVELOPE_KID_MISSING') {
      throw new SyncProtocolError('SYNC_UNKNOWN_KEY', `the batch is not signed by a key of device ${batch.head.device}`);
    }
    throw new SyncProtocolError('SYNC_BAD_SIGNATURE', `batch signature: ${err.message}`);
  }
}

/** Inflates and decodes the records (bounded by the signed size); throws SyncProtocolError. */
export async function decodeBatchRecords(batch: DecodedBatch): Promise<BatchRecord[]> {
  let raw: Buffer;
  try {
    // One output chunk of the signed size: zlib's default 16 KiB chunks would cost a callback and a copy each.
    raw = await gunzipAsync(batch.data, { maxOutputLength: batch.head.size, chunkSize: Math.max(batch.head.size, MIN_CHUNK) });
  } catch (err) {
    throw malformed(`batch data does not inflate within ${batch.head.size} bytes: ${(err as Error).message}`);
  }
  if (raw.length !== batch.head.size) throw malformed(`batch data inflates to ${raw.length} bytes, not ${batch.head.size}`);
  // The records as agents write them, read in one pass; anything else through the generic decoder below.
  const fast = readBatchRecords(raw, { maxRecords: MAX_BATCH_RECORDS, maxBodyBytes: MAX_RECORD_BODY_BYTES });
  if (fast !== undefined) return fast;
  let list: CborValue;
  try {
    list = decodeCbor(raw, { maxBytes: MAX_BATCH_INFLATED_BYTES, maxDepth: 2 });
  } catch (err) {
    throw malformed(`batch records: ${(err as Error).message}`);
  }
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_BATCH_RECORDS) throw malformed('batch records must be a non-empty list');
  return list.map((item, i) => {
    if (!Array.isArray(item) || item.length !== 5) throw malformed(`record ${i} must be [seq, time, kind, body, hash]`);
    const [seq, timeMs, kind, body, hash] = item;
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) throw malformed(`record ${i}: bad seq`);
    if (typeof timeMs !== 'number' || !Number.isSafeInteger(timeMs) || timeMs < 0) throw malformed(`record ${seq}: bad time`);
    if (typeof kind !== 'string' || !(AUDIT_KINDS as readonly string[]).includes(kind)) throw malformed(`record ${seq}: unknown kind`);
    if (!(body instanceof Uint8Array) || body.length > MAX_RECORD_BODY_BYTES) throw malformed(`record ${seq}: body must be at most ${MAX_RECORD_BODY_BYTES} bytes`);
    return { seq, timeMs, kind: kind as AuditKind, body, hash: hash32(hash, `record ${seq} hash`) };
  });
}

// ---------------------------------------------------------------------------------------
// Acknowledgements

export type AckStatus = 'stored' | 'ahead' | 'refused';

export interface Ack {
  device: string;
  /** SHA-256 of the batch head answered. */
  batch: Uint8Array;
  status: AckStatus;
  /** The highest seq the collector holds for the device. */
  seq: number;
  /** The collector's clock. */
  timeMs: number;
  /** For a refusal: its code, the seq it names and why. */
  code?: string;
  at?: number;
  message?: string;
}

export function batchId(headBytes: Uint8Array): Uint8Array {
  return sha256(headBytes);
}

export async function signAck(ack: Ack, key: PrivateKey): Promise<Uint8Array> {
  const payload: Record<string, CborValue> = { v: 1, device: ack.device, batch: ack.batch, status: ack.status, seq: ack.seq, time: ack.timeMs };
  if (ack.code !== undefined) payload.code = ack.code;
  if (ack.at !== undefined) payload.at = ack.at;
  if (ack.message !== undefined) payload.message = ack.message.slice(0, MAX_MESSAGE_LENGTH);
  return signSign1Async({ payload: encodeCbor(payload), key, externalAad: ACK_AAD });
}

/** Verifies an acknowledgement with the collector's pinned key; throws SyncProtocolError. */
export function verifyAck(bytes: Uint8Array, collectorKey: PublicKey): Ack {
  let payload: Uint8Array;
  try {
    payload = verifySign1(bytes, { key: collectorKey, externalAad: ACK_AAD, maxBytes: MAX_ACK_BYTES, maxDepth: 3 }).message.payload;
  } catch (err) {
    if (!(err instanceof EnvelopeError)) throw err;
    const code = err.code === 'ENVELOPE_BAD_SIGNATURE' || err.code === 'ENVELOPE_ALG_KEY_MISMATCH' ? 'SYNC_BAD_SIGNATURE' : 'SYNC_MALFORMED';
    throw new SyncProtocolError(code, `acknowledgement: ${err.message}`);
  }
  return decodeAckPayload(payload);
}

/** The batch an acknowledgement names, read without checking it (to route it to its sender). */
export function peekAckBatch(bytes: Uint8Array): Uint8Array | undefined {
  try {
    return decodeAckPayload(decodeSign1(bytes, { maxBytes: MAX_ACK_BYTES, maxDepth: 3 }).payload).batch;
  } catch {
    return undefined;
  }
}

function decodeAckPayload(payload: Uint8Array): Ack {
  const map = protocolMap(() => decodeCbor(payload, { maxBytes: MAX_ACK_BYTES, maxDepth: 2 }), ['v', 'device', 'batch', 'status', 'seq', 'time', 'code', 'at', 'message'], 'acknowledgement', [
    'code',
    'at',
    'message',
  ]);
  if (map.get('v') !== 1) throw malformed('acknowledgement version must be 1');
  const status = map.get('status');
  if (status !== 'stored' && status !== 'ahead' && status !== 'refused') throw malformed('acknowledgement status must be stored, ahead or refused');
  const ack: Ack = { device: deviceId(map.get('device')), batch: hash32(map.get('batch'), 'batch'), status, seq: count(map, 'seq', 0), timeMs: count(map, 'time', 0) };
  if (map.has('code')) ack.code = text(map.get('code'), 'code');
  if (map.has('at')) ack.at = count(map, 'at', 0);
  if (map.has('message')) ack.message = text(map.get('message'), 'message');
  return ack;
}

// ---------------------------------------------------------------------------------------

function protocolMap(decode: () => CborValue, keys: readonly string[], what: string, optional: readonly string[] = []): CborMap {
  let value: CborValue;
  try {
    value = decode();
  } catch (err) {
    throw malformed(`${what}: ${(err as Error).message}`);
  }
  if (!(value instanceof Map)) throw malformed(`${what} must be a map`);
  for (const k of value.keys()) if (typeof k !== 'string' || !keys.includes(k)) throw malformed(`${what} has an unknown key ${String(k)}`);
  for (const k of keys) if (!optional.includes(k) && !value.has(k)) throw malformed(`${what} lacks ${k}`);
  return value;
}

function count(map: CborMap, key: string, min: number): number {
  const v = map.get(key);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw malformed(`${key} must be an integer of at least ${min}`);
  return v;
}

function hash32(v: CborValue | undefined, what: string): Uint8Array {
  if (!(v instanceof Uint8Array) || v.length !== HASH_BYTES) throw malformed(`${what} must be ${HASH_BYTES} bytes`);
  return v;
}

function text(v: CborValue | undefined, what: string): string {
  if (typeof v !== 'string' || v.length > MAX_MESSAGE_LENGTH) throw malformed(`${what} must be text of at most ${MAX_MESSAGE_LENGTH} characters`);
  return v;
}

function deviceId(v: CborValue | undefined): string {
  if (typeof v !== 'string' || !DEVICE_PATTERN.test(v)) throw malformed('device must be a device id');
  return v;
}

function malformed(message: string): SyncProtocolError {
  return new SyncProtocolError('SYNC_MALFORMED', message);
}
