// Signing a bundle, one root key at a time. Root keys are kept apart (often offline, on
// different machines), so each signer adds one COSE_Signature to the file the previous signer
// produced: the first signature turns the unsigned payload into a COSE_Sign (tag 98) whose
// signed body header names the bundle content type; later ones append. The payload bytes are
// never re-encoded, so every signer signs exactly what the build produced.
import type { CoseAlgorithm } from '../crypto/algorithms.js';
import { bytesEqual, toHex } from '../crypto/bytes.js';
import type { PrivateKey } from '../crypto/keys.js';
import { type CborValue, CborTagged, decodeCbor } from '../envelope/cbor.js';
import { COSE_SIGN_TAG, HEADER, addSignSignature, signSign, verifySign } from '../envelope/cose.js';
import { BundleError } from './errors.js';
import { BUNDLE_CONTENT_TYPE, BUNDLE_LIMITS, type BundlePayload, DEFAULT_BUNDLE_MAX_BYTES, decodeBundlePayload, fromCborError } from './format.js';

export interface SignatureInfo {
  /** Undefined when the signature carries no kid. */
  readonly kid: Uint8Array | undefined;
  /** Undefined when the algorithm is missing or not supported. */
  readonly alg: number | undefined;
}

/** A bundle file opened WITHOUT verifying its signatures: for signing and inspection only. */
export interface UnverifiedBundle {
  readonly payloadBytes: Uint8Array;
  readonly payload: BundlePayload;
  readonly signatures: readonly SignatureInfo[];
}

export interface SignOptions {
  /** Default: EdDSA for Ed25519 keys, ES256 for P-256 keys. */
  readonly alg?: CoseAlgorithm;
  readonly maxBytes?: number;
}

/** Adds one signature by `key`; BUNDLE_ALREADY_SIGNED when that key has signed already. */
export function signBundle(file: Uint8Array, key: PrivateKey, options: SignOptions = {}): Uint8Array {
  return addRootSignature(file, key, BUNDLE_KIND, options);
}

/** A kind of root-signed message: bundles, and rollback instructions (rollback.ts). */
export interface RootSignedKind<P> {
  /** The signed body header's content type: what the roots signed, so one kind never passes for another. */
  readonly contentType: string;
  /** Its name in messages. */
  readonly what: string;
  /** Strict decoding of the payload; throws BundleError. */
  decode(payload: Uint8Array): P;
}

const BUNDLE_KIND: RootSignedKind<BundlePayload> = { contentType: BUNDLE_CONTENT_TYPE, what: 'bundle', decode: decodeBundlePayload };

/**
 * Adds one signature by `key` to an unsigned payload (which becomes a COSE_Sign whose signed
 * body header names `kind`'s content type) or to a COSE_Sign of that kind.
 */
export function addRootSignature<P>(file: Uint8Array, key: PrivateKey, kind: RootSignedKind<P>, options: SignOptions = {}): Uint8Array {
  const opened = openUnverified(file, options.maxBytes ?? DEFAULT_BUNDLE_MAX_BYTES, kind);
  const signer = { key, ...(options.alg === undefined ? {} : { alg: options.alg }) };
  if (opened.signatures === undefined) {
    return signSign({
      payload: opened.payloadBytes,
      signers: [signer],
      protectedHeader: new Map([[HEADER.contentType, kind.contentType]]),
    });
  }
  const kid = key.publicKey.kid;
  if (opened.signatures.some((s) => s.kid !== undefined && bytesEqual(s.kid, kid))) {
    throw new BundleError('BUNDLE_ALREADY_SIGNED', `key ${toHex(kid)} has already signed this ${kind.what}`);
  }
  try {
    return addSignSignature(file, { signer, maxBytes: options.maxBytes ?? DEFAULT_BUNDLE_MAX_BYTES, maxDepth: BUNDLE_LIMITS.coseMaxDepth });
  } catch (err) {
    throw fromCborError(err, 'COSE_Sign');
  }
}

/** Opens an unsigned payload or a signed bundle, checking its shape but not its signatures. */
export function readUnverifiedBundle(file: Uint8Array, maxBytes = DEFAULT_BUNDLE_MAX_BYTES): UnverifiedBundle {
  const opened = openUnverified(file, maxBytes, BUNDLE_KIND);
  return { payloadBytes: opened.payloadBytes, payload: opened.payload, signatures: opened.signatures ?? [] };
}

/** Opens a message of `kind` WITHOUT verifying signatures: for signing and inspection only. */
export function readUnverified<P>(file: Uint8Array, maxBytes: number, kind: RootSignedKind<P>): { payloadBytes: Uint8Array; payload: P; signatures: readonly SignatureInfo[] } {
  const opened = openUnverified(file, maxBytes, kind);
  return { payloadBytes: opened.payloadBytes, payload: opened.payload, signatures: opened.signatures ?? [] };
}

function openUnverified<P>(
  file: Uint8Array,
  maxBytes: number,
  kind: RootSignedKind<P>,
): { payloadBytes: Uint8Array; payload: P; signatures: SignatureInfo[] | undefined } {
  if (file.length > maxBytes) throw new BundleError('BUNDLE_TOO_LARGE', `${kind.what} is ${file.length} bytes, the limit is ${maxBytes}`);
  let root: CborValue;
  try {
    root = decodeCbor(file, { maxBytes, maxDepth: BUNDLE_LIMITS.coseMaxDepth, allowRootTag: true });
  } catch (err) {
    throw fromCborError(err, kind.what);
  }
  if (root instanceof Map) return { payloadBytes: file, payload: kind.decode(file), signatures: undefined };
  if (!(root instanceof CborTagged) || root.tag !== COSE_SIGN_TAG) {
    throw new BundleError('BUNDLE_MALFORMED', `not a ${kind.what}: expected a payload map or a COSE_Sign message (tag ${COSE_SIGN_TAG})`);
  }
  let opened;
  try {
    // No key resolves, so no signature is checked: this only lists who signed.
    opened = verifySign(file, { maxBytes, maxDepth: BUNDLE_LIMITS.coseMaxDepth, keys: () => undefined });
  } catch (err) {
    throw fromCborError(err, 'COSE_Sign');
  }
  const contentType = opened.protectedHeader.get(HEADER.contentType);
  if (contentType !== kind.contentType) {
    throw new BundleError('BUNDLE_MALFORMED', `content type is ${JSON.stringify(contentType ?? null)}, not ${kind.contentType}`);
  }
  return {
    payloadBytes: opened.payload,
    payload: kind.decode(opened.payload),
    signatures: opened.signers.map(({ kid, alg }) => ({ kid, alg })),
  };
}
