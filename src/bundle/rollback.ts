// A signed rollback instruction: how an operator rolls a remote device back to its last-known-good
// bundle over MQTT. Sites are remote and the agent owns its state directory while it runs, so the
// instruction travels like a bundle and is trusted like one: a COSE_Sign (tag 98) signed by k of
// the n root keys, whose signed body header names its own content type (a bundle signature can
// never pass for an instruction, nor the reverse).
//
// Payload: a deterministic CBOR map with text keys
//
//   device   tstr        the one device it is for (and `site`, its site)
//   site     tstr
//   from     {revision: uint, digest: bstr .size 32}   the bundle active on the device now
//   to       {revision: uint, digest: bstr .size 32}   the device's last-known-good bundle
//   created  uint        seconds since the epoch
//   expires  uint        seconds; after it the instruction is refused (at most 7 days after created)
//   reason   tstr        optional, at most 200 characters, for the audit log
//
// The device re-verifies the target bundle before it activates it, and refuses the instruction
// unless `from` is its active bundle and `to` its last-known-good, byte for byte (digests). A
// device steps from one (active, last-known-good) pair to another only once — revisions never
// repeat — so an instruction cannot be replayed later, whatever its expiry.
import { toHex } from '../crypto/bytes.js';
import type { PrivateKey } from '../crypto/keys.js';
import { sha256 } from '../crypto/hash.js';
import { type CborMap, type CborValue, decodeCbor, encodeCbor } from '../envelope/cbor.js';
import { BundleError } from './errors.js';
import { fromCborError } from './format.js';
import { type RootSignedKind, type SignOptions, type SignatureInfo, addRootSignature, readUnverified } from './sign.js';
import type { BundleRef } from './store.js';
import { type BundleSigner, type TrustOptions, indexRoots, verifyRootSigned } from './verify.js';

export const ROLLBACK_CONTENT_TYPE = 'application/ztedge-rollback+cbor';
/** Far more than an instruction needs (a few hundred bytes with k signatures). */
export const ROLLBACK_MAX_BYTES = 16 * 1024;
export const ROLLBACK_MAX_LIFETIME_SECONDS = 7 * 86_400;
const MAX_REASON_LENGTH = 200;
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface RollbackInstruction {
  readonly device: string;
  readonly site: string;
  /** The bundle the device must have active (digest: lowercase hex). */
  readonly from: BundleRef;
  /** The bundle to make active again: the device's last-known-good. */
  readonly to: BundleRef;
  /** Seconds since the epoch. */
  readonly created: number;
  readonly expires: number;
  readonly reason?: string;
}

export interface VerifiedRollback {
  readonly instruction: RollbackInstruction;
  readonly signers: readonly BundleSigner[];
  /** SHA-256 of the signed instruction, lowercase hex. */
  readonly digest: string;
}

export const ROLLBACK_KIND: RootSignedKind<RollbackInstruction> = {
  contentType: ROLLBACK_CONTENT_TYPE,
  what: 'rollback instruction',
  decode: decodeRollbackPayload,
};

/** The unsigned instruction (sign it once per root key with signRollback). */
export function encodeRollbackPayload(instruction: RollbackInstruction): Uint8Array {
  // Checked on the way out too: an instruction that would be refused is never written.
  const ref = (r: BundleRef) => new Map<string, CborValue>([['revision', r.revision], ['digest', hexBytes(r.digest, 'digest')]]);
  const map = new Map<string, CborValue>([
    ['device', instruction.device],
    ['site', instruction.site],
    ['from', ref(instruction.from)],
    ['to', ref(instruction.to)],
    ['created', instruction.created],
    ['expires', instruction.expires],
    ...(instruction.reason === undefined ? [] : [['reason', instruction.reason] as [string, CborValue]]),
  ]);
  const bytes = encodeCbor(map);
  decodeRollbackPayload(bytes);
  return bytes;
}

export function decodeRollbackPayload(bytes: Uint8Array): RollbackInstruction {
  let value: CborValue;
  try {
    value = decodeCbor(bytes, { maxBytes: ROLLBACK_MAX_BYTES, maxDepth: 4 });
  } catch (err) {
    throw fromCborError(err, 'rollback instruction');
  }
  const m = record(value, 'instruction', ['device', 'site', 'from', 'to', 'created', 'expires'], ['reason']);
  const created = seconds(m.get('created'), 'created');
  const expires = seconds(m.get('expires'), 'expires');
  if (expires <= created) throw malformed('expires must be after created');
  if (expires - created > ROLLBACK_MAX_LIFETIME_SECONDS) throw malformed(`expires may be at most ${ROLLBACK_MAX_LIFETIME_SECONDS / 86_400} days after created`);
  const reason = m.get('reason');
  if (reason !== undefined && (typeof reason !== 'string' || reason.length > MAX_REASON_LENGTH)) throw malformed(`reason must be text of at most ${MAX_REASON_LENGTH} characters`);
  const from = bundleRef(m.get('from'), 'from');
  const to = bundleRef(m.get('to'), 'to');
  if (to.revision >= from.revision) throw malformed(`to.revision ${to.revision} must be below from.revision ${from.revision}: a rollback goes back`);
  return { device: id(m.get('device'), 'device'), site: id(m.get('site'), 'site'), from, to, created, expires, ...(reason === undefined ? {} : { reason }) };
}

/** Adds one root signature (run once per root key, as for bundles). */
export function signRollback(file: Uint8Array, key: PrivateKey, options: SignOptions = {}): Uint8Array {
  return addRootSignature(file, key, ROLLBACK_KIND, { maxBytes: ROLLBACK_MAX_BYTES, ...options });
}

/** Opens an instruction WITHOUT checking its signatures: for signing and inspection only. */
export function readUnverifiedRollback(file: Uint8Array): { instruction: RollbackInstruction; signatures: readonly SignatureInfo[] } {
  const { payload, signatures } = readUnverified(file, ROLLBACK_MAX_BYTES, ROLLBACK_KIND);
  return { instruction: payload, signatures };
}

/**
 * Verifies an instruction for this device at trusted time `now`: k root signatures, scope
 * (device and site), expiry. Whether it fits the device's bundles is the manager's check.
 */
export function verifyRollback(bytes: Uint8Array, options: TrustOptions & { now: number }): VerifiedRollback {
  const roots = indexRoots(options);
  const checked = verifyRootSigned(bytes, options, roots, ROLLBACK_MAX_BYTES, ROLLBACK_CONTENT_TYPE, 'rollback instruction');
  const instruction = decodeRollbackPayload(checked.payload);
  const refuse = (code: 'BUNDLE_SCOPE' | 'ROLLBACK_EXPIRED', message: string) => new BundleError(code, message, { revision: instruction.to.revision });
  if (options.device === undefined || instruction.device !== options.device) {
    throw refuse('BUNDLE_SCOPE', `rollback instruction is for device ${instruction.device}; this device is ${options.device ?? 'not configured'}`);
  }
  if (options.site === undefined || instruction.site !== options.site) {
    throw refuse('BUNDLE_SCOPE', `rollback instruction is for site ${instruction.site}; this site is ${options.site ?? 'not configured'}`);
  }
  const nowSeconds = Math.floor(options.now / 1000);
  if (nowSeconds >= instruction.expires) {
    throw refuse('ROLLBACK_EXPIRED', `rollback instruction expired at ${new Date(instruction.expires * 1000).toISOString()}; trusted time is ${new Date(nowSeconds * 1000).toISOString()}`);
  }
  return { instruction, signers: checked.signers, digest: toHex(sha256(bytes)) };
}

/** Whether `file` holds a rollback instruction (signed or not) rather than a bundle. */
export function isRollbackFile(file: Uint8Array): boolean {
  try {
    readUnverified(file, ROLLBACK_MAX_BYTES, ROLLBACK_KIND);
    return true;
  } catch (err) {
    if (err instanceof BundleError) return false;
    throw err;
  }
}

function record(value: CborValue, at: string, required: readonly string[], optionalKeys: readonly string[] = []): CborMap {
  if (!(value instanceof Map)) throw malformed(`${at} must be a map`);
  for (const key of value.keys()) {
    if (typeof key !== 'string' || (!required.includes(key) && !optionalKeys.includes(key))) throw malformed(`${at} has an unknown key ${JSON.stringify(String(key))}`);
  }
  for (const key of required) if (!value.has(key)) throw malformed(`${at} lacks ${key}`);
  return value;
}

function bundleRef(value: CborValue | undefined, at: string): BundleRef {
  const m = record(value ?? null, at, ['revision', 'digest']);
  const revision = m.get('revision');
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 1) throw malformed(`${at}.revision must be a positive integer`);
  const digest = m.get('digest');
  if (!(digest instanceof Uint8Array) || digest.length !== 32) throw malformed(`${at}.digest must be the 32-byte SHA-256 of the bundle`);
  return { revision, digest: toHex(digest) };
}

function seconds(value: CborValue | undefined, at: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > 253_402_300_799) throw malformed(`${at} must be seconds since the epoch`);
  return value;
}

function id(value: CborValue | undefined, at: string): string {
  if (typeof value !== 'string' || !ID.test(value)) throw malformed(`${at} must be a device or site id`);
  return value;
}

function hexBytes(hex: string, at: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw malformed(`${at} must be 64 lowercase hex characters`);
  return Buffer.from(hex, 'hex');
}

function malformed(message: string): BundleError {
  return new BundleError('BUNDLE_MALFORMED', `rollback instruction: ${message}`);
}
