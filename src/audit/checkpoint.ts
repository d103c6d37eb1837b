// Signed checkpoints of the audit log (pure apart from the signature operations).
//
// A checkpoint commits the device to the Merkle root of its log at a size, and links to the
// previous checkpoint (its size and root; 0 and the empty root for the first). It is stored in
// the log itself as a record of kind `checkpoint` at seq s, covering the tree of size s − 1:
// every record before it, the previous checkpoint record included, but not itself (its own hash
// depends on its body). A checkpoint that claims any other size is misplaced, so a checkpoint
// cannot be moved along the log, and each later checkpoint's tree contains the earlier ones.
//
// The record body is a CBOR map { "cose": COSE_Sign1, "note": note signature }:
//   - "cose": COSE_Sign1 by the device key over the CBOR payload
//       { "v": 1, "origin", "device", "size", "root", "time" (ms), "prev_size", "prev_root" },
//     with external_aad "ztedge audit checkpoint v1" so that no other message the device key
//     signs (command results) can pass for a checkpoint, and the other way round.
//   - "note": the device's signature in C2SP signed-note form (4-byte key id || signature) over
//     the C2SP tlog-checkpoint note text "<origin>\n<size>\n<base64 root>\n". Made when the
//     checkpoint is made (the private key never leaves the agent), so an export can print a
//     standard signed checkpoint that any tlog tool verifies with the device's verifier key.
//     Ed25519 keys use note signature type 0x01 (key id = SHA-256(name || 0x0A || 0x01 || key)[:4]);
//     P-256 keys use type 0x02, ECDSA as transparency-dev's note verifiers implement it (an ASN.1
//     DER signature over SHA-256 of the text; key id = SHA-256(DER SPKI)[:4]).
import { createHash } from 'node:crypto';
import { bytesEqual, toHex } from '../crypto/bytes.js';
import { derToP1363, p1363ToDer } from '../crypto/ecdsa-der.js';
import { type PrivateKey, type PublicKey, publicKeyToKeyObject } from '../crypto/keys.js';
import { sign } from '../crypto/signer.js';
import { getVerifier } from '../crypto/verifier.js';
import { type CborMap, decodeCbor, encodeCbor } from '../envelope/cbor.js';
import { decodeSign1, signSign1, verifySign1 } from '../envelope/cose.js';
import { EnvelopeError } from '../envelope/errors.js';
import { EMPTY_ROOT, HASH_BYTES } from './merkle.js';
import { ZtedgeError } from '../errors.js';

export const CHECKPOINT_AAD = new TextEncoder().encode('ztedge audit checkpoint v1');
const MAX_CHECKPOINT_BYTES = 4096;
const MAX_ORIGIN_LENGTH = 255;
/** A C2SP key name / origin: no Unicode spaces, no plus, no control characters. */
const ORIGIN_PATTERN = /^[^\s+\p{Cc}]+$/u;
const DEVICE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface Checkpoint {
  /** The log's identity: the C2SP origin line and the note key name, e.g. `ztedge/plant-1/arm-1`. */
  origin: string;
  device: string;
  /** Records covered: seq 1 … size. */
  size: number;
  root: Uint8Array;
  timeMs: number;
  prevSize: number;
  prevRoot: Uint8Array;
}

export type CheckpointErrorCode = 'CHECKPOINT_MALFORMED' | 'CHECKPOINT_UNKNOWN_KEY' | 'CHECKPOINT_BAD_SIGNATURE' | 'CHECKPOINT_BAD_NOTE';

export class CheckpointError extends ZtedgeError<CheckpointErrorCode> {}

export function checkOrigin(origin: string): string {
  if (origin.length === 0 || origin.length > MAX_ORIGIN_LENGTH || !ORIGIN_PATTERN.test(origin)) {
    throw new CheckpointError('CHECKPOINT_MALFORMED', `origin must be 1–${MAX_ORIGIN_LENGTH} characters without spaces, '+' or control characters`);
  }
  return origin;
}

/** The first checkpoint links to the empty tree. */
export const NO_PREVIOUS = { size: 0, root: EMPTY_ROOT } as const;

// ---------------------------------------------------------------------------------------
// Payload

export function encodeCheckpointPayload(cp: Checkpoint): Uint8Array {
  return encodeCbor({
    v: 1,
    origin: checkOrigin(cp.origin),
    device: cp.device,
    size: cp.size,
    root: cp.root,
    time: cp.timeMs,
    prev_size: cp.prevSize,
    prev_root: cp.prevRoot,
  });
}

const PAYLOAD_KEYS = ['v', 'origin', 'device', 'size', 'root', 'time', 'prev_size', 'prev_root'];

export function decodeCheckpointPayload(bytes: Uint8Array): Checkpoint {
  const map = decodeMap(bytes, PAYLOAD_KEYS, 'checkpoint payload');
  if (map.get('v') !== 1) throw malformed('checkpoint version must be 1');
  const origin = text(map, 'origin');
  checkOrigin(origin);
  const device = text(map, 'device');
  if (!DEVICE_PATTERN.test(device)) throw malformed('device must be a device id');
  const cp: Checkpoint = {
    origin,
    device,
    size: count(map, 'size'),
    root: hash(map, 'root'),
    timeMs: count(map, 'time'),
    prevSize: count(map, 'prev_size'),
    prevRoot: hash(map, 'prev_root'),
  };
  if (cp.prevSize > cp.size) throw malformed('prev_size is larger than size');
  return cp;
}

// ---------------------------------------------------------------------------------------
// The record body: COSE_Sign1 + note signature

export interface CheckpointBody {
  cose: Uint8Array;
  note: Uint8Array;
}

/** Signs a checkpoint (COSE_Sign1 and note signature) into a `checkpoint` record body. */
export function signCheckpoint(cp: Checkpoint, key: PrivateKey): Uint8Array {
  const cose = signSign1({ payload: encodeCheckpointPayload(cp), key, externalAad: CHECKPOINT_AAD });
  const note = signNote(noteText(cp), cp.origin, key);
  return encodeCbor({ cose, note });
}

export function decodeCheckpointBody(body: Uint8Array): CheckpointBody {
  const map = decodeMap(body, ['cose', 'note'], 'checkpoint record');
  const cose = map.get('cose');
  const note = map.get('note');
  if (!(cose instanceof Uint8Array) || !(note instanceof Uint8Array)) throw malformed('checkpoint record needs byte strings cose and note');
  return { cose, note };
}

export interface VerifiedCheckpoint {
  checkpoint: Checkpoint;
  /** The device key that signed it. */
  key: PublicKey;
  cose: Uint8Array;
  note: Uint8Array;
}

/**
 * Checks a `checkpoint` record body: the COSE_Sign1 signature by one of `keys` (found by kid),
 * then the note signature by the same key over the same checkpoint.
 */
export function verifyCheckpointBody(body: Uint8Array, keys: readonly PublicKey[]): VerifiedCheckpoint {
  const { cose, note } = decodeCheckpointBody(body);
  let verified;
  try {
    verified = verifySign1(cose, {
      key: (kid) => keys.find((k) => bytesEqual(k.kid, kid)),
      externalAad: CHECKPOINT_AAD,
      requireProtectedKid: true,
      maxBytes: MAX_CHECKPOINT_BYTES,
    });
  } catch (err) {
    if (!(err instanceof EnvelopeError)) throw err;
    if (err.code === 'ENVELOPE_KID_UNKNOWN' || err.code === 'ENVELOPE_KID_MISSING') throw new CheckpointError('CHECKPOINT_UNKNOWN_KEY', err.message);
    if (err.code === 'ENVELOPE_BAD_SIGNATURE' || err.code === 'ENVELOPE_ALG_KEY_MISMATCH') throw new CheckpointError('CHECKPOINT_BAD_SIGNATURE', err.message);
    throw malformed(`checkpoint COSE_Sign1: ${err.message}`);
  }
  const checkpoint = decodeCheckpointPayload(verified.message.payload);
  if (!verifyNoteSignature(noteText(checkpoint), checkpoint.origin, verified.key, note)) {
    throw new CheckpointError('CHECKPOINT_BAD_NOTE', 'the note signature does not verify with the key that signed the checkpoint');
  }
  return { checkpoint, key: verified.key, cose, note };
}

/** The checkpoint without any signature check (to display or locate it; never to trust it). */
export function readUnverifiedCheckpoint(body: Uint8Array): Checkpoint {
  const { cose } = decodeCheckpointBody(body);
  let payload;
  try {
    payload = decodeSign1(cose, { maxBytes: MAX_CHECKPOINT_BYTES }).payload;
  } catch (err) {
    throw malformed(`checkpoint COSE_Sign1: ${(err as Error).message}`);
  }
  return decodeCheckpointPayload(payload);
}

// ---------------------------------------------------------------------------------------
// C2SP signed note (tlog-checkpoint)

const SIG_TYPE_ED25519 = 0x01;
const SIG_TYPE_ECDSA = 0x02;
const EM_DASH = '\u2014';

/** The tlog-checkpoint note text (origin, size, base64 root), newline-terminated. */
export function noteText(cp: Pick<Checkpoint, 'origin' | 'size' | 'root'>): string {
  return `${checkOrigin(cp.origin)}\n${cp.size}\n${Buffer.from(cp.root).toString('base64')}\n`;
}

/** The 4-byte note key id of `key` under `name`. */
export function noteKeyId(name: string, key: PublicKey): Uint8Array {
  const digest =
    key.keyType === 'ed25519'
      ? createHash('sha256').update(name).update(Uint8Array.of(0x0a, SIG_TYPE_ED25519)).update(key.raw).digest()
      : createHash('sha256').update(spki(key)).digest();
  return new Uint8Array(digest.subarray(0, 4));
}

/** The C2SP verifier key: `<name>+<hex key id>+<base64(type || public key)>`. */
export function noteVerifierKey(name: string, key: PublicKey): string {
  const material = key.keyType === 'ed25519' ? Uint8Array.of(SIG_TYPE_ED25519, ...key.raw) : Uint8Array.of(SIG_TYPE_ECDSA, ...spki(key));
  return `${checkOrigin(name)}+${toHex(noteKeyId(name, key))}+${Buffer.from(material).toString('base64')}`;
}

function signNote(text: string, name: string, key: PrivateKey): Uint8Array {
  const raw = sign(key, new TextEncoder().encode(text));
  const signature = key.keyType === 'ed25519' ? raw : p1363ToDer(raw);
  return Uint8Array.of(...noteKeyId(name, key.publicKey), ...signature);
}

export function verifyNoteSignature(text: string, name: string, key: PublicKey, noteSignature: Uint8Array): boolean {
  if (noteSignature.length < 5 || !bytesEqual(noteSignature.subarray(0, 4), noteKeyId(name, key))) return false;
  let signature = noteSignature.subarray(4);
  if (key.keyType === 'p256') {
    try {
      signature = derToP1363(signature);
    } catch {
      return false;
    }
  }
  return getVerifier('native').verify(key, new TextEncoder().encode(text), signature);
}

/** The signed note: text, blank line, one signature line. */
export function signedNote(cp: Pick<Checkpoint, 'origin' | 'size' | 'root'>, noteSignature: Uint8Array): string {
  return `${noteText(cp)}\n${EM_DASH} ${cp.origin} ${Buffer.from(noteSignature).toString('base64')}\n`;
}

export interface NoteCheckpoint {
  origin: string;
  size: number;
  root: Uint8Array;
}

const MAX_NOTE_BYTES = 16 * 1024;

/**
 * Verifies a C2SP signed checkpoint note with the device key: signatures by other keys are
 * ignored (as the note spec requires); a failing signature by this key, or none at all, refuses it.
 */
export function verifySignedNote(note: string, key: PublicKey, origin?: string): NoteCheckpoint {
  if (Buffer.byteLength(note) > MAX_NOTE_BYTES) throw badNote(`a note is at most ${MAX_NOTE_BYTES} bytes`);
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) throw badNote('control characters other than newline');
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw badNote('no blank line between the text and the signatures');
  const text = note.slice(0, split + 1);
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3 || lines.some((l) => l.length === 0)) throw badNote('a checkpoint has at least three non-empty lines');
  const [name, sizeLine, rootLine] = lines as [string, string, string];
  if (origin !== undefined && name !== origin) throw badNote(`origin is ${JSON.stringify(name)}, expected ${JSON.stringify(origin)}`);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeLine) || !Number.isSafeInteger(Number(sizeLine))) throw badNote('tree size is not a decimal number');
  const root = new Uint8Array(Buffer.from(rootLine, 'base64'));
  if (root.length !== HASH_BYTES || Buffer.from(root).toString('base64') !== rootLine) throw badNote('root hash is not base64 of 32 bytes');
  const keyId = noteKeyId(name, key);
  let verified = false;
  for (const line of note.slice(split + 2, -1).split('\n')) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (m === null) throw badNote('malformed signature line');
    const signature = new Uint8Array(Buffer.from(m[2]!, 'base64'));
    if (m[1] !== name || signature.length < 5 || !bytesEqual(signature.subarray(0, 4), keyId)) continue; // another key's
    if (!verifyNoteSignature(text, name, key, signature)) throw new CheckpointError('CHECKPOINT_BAD_SIGNATURE', 'the note signature by the device key does not verify');
    verified = true;
  }
  if (!verified) throw new CheckpointError('CHECKPOINT_UNKNOWN_KEY', 'the note carries no signature by the device key');
  return { origin: name, size: Number(sizeLine), root };
}

// ---------------------------------------------------------------------------------------

function spki(key: PublicKey): Uint8Array {
  return new Uint8Array(publicKeyToKeyObject(key).export({ type: 'spki', format: 'der' }));
}

function decodeMap(bytes: Uint8Array, keys: readonly string[], what: string): CborMap {
  let value;
  try {
    value = decodeCbor(bytes, { maxBytes: MAX_CHECKPOINT_BYTES, maxDepth: 2 });
  } catch (err) {
    throw malformed(`${what}: ${(err as Error).message}`);
  }
  if (!(value instanceof Map)) throw malformed(`${what} must be a map`);
  for (const k of value.keys()) if (typeof k !== 'string' || !keys.includes(k)) throw malformed(`${what} has an unknown key ${String(k)}`);
  for (const k of keys) if (!value.has(k)) throw malformed(`${what} lacks ${k}`);
  return value;
}

function text(map: CborMap, key: string): string {
  const v = map.get(key);
  if (typeof v !== 'string') throw malformed(`${key} must be text`);
  return v;
}

function count(map: CborMap, key: string): number {
  const v = map.get(key);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw malformed(`${key} must be a non-negative integer`);
  return v;
}

function hash(map: CborMap, key: string): Uint8Array {
  const v = map.get(key);
  if (!(v instanceof Uint8Array) || v.length !== HASH_BYTES) throw malformed(`${key} must be ${HASH_BYTES} bytes`);
  return v;
}

function malformed(message: string): CheckpointError {
  return new CheckpointError('CHECKPOINT_MALFORMED', message);
}

function badNote(message: string): CheckpointError {
  return new CheckpointError('CHECKPOINT_BAD_NOTE', message);
}
