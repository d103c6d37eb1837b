// COSE_Sign1 (tag 18) and COSE_Sign (tag 98) from RFC 9052: decoding, header checks,
// signing and verification.
//
// Verification order: structure (size, tag, shape, duplicate keys, depth) and headers
// (crit, alg in the allow-list, kid) are checked before any public-key operation, so junk
// costs a parse, not a signature check. The signature is computed over the Sig_structure
// built from the protected header bytes exactly as received, never re-encoded.
import { type AlgorithmInfo, type CoseAlgorithm, SUPPORTED_ALGORITHMS, algorithmInfo, defaultAlgorithm } from '../crypto/algorithms.js';
import { toHex } from '../crypto/bytes.js';
import type { PrivateKey, PublicKey } from '../crypto/keys.js';
import { sign, signAsync } from '../crypto/signer.js';
import { type SignatureVerifier, getVerifier } from '../crypto/verifier.js';
import { type CborMap, type CborMapKey, type CborValue, CborTagged, type DecodeLimits, decodeCbor, encodeCbor } from './cbor.js';
import { EnvelopeError } from './errors.js';

export const COSE_SIGN1_TAG = 18;
export const COSE_SIGN_TAG = 98;

/** Header labels (RFC 9052 §3.1) that this implementation understands. */
export const HEADER = { alg: 1, crit: 2, contentType: 3, kid: 4 } as const;
const UNDERSTOOD_HEADERS: ReadonlySet<CborMapKey> = new Set([HEADER.alg, HEADER.contentType, HEADER.kid]);

export const DEFAULT_MAX_BYTES = 64 * 1024;
export const DEFAULT_MAX_DEPTH = 8;

const EMPTY = new Uint8Array(0);

export interface CoseLimits {
  maxBytes?: number;
  maxDepth?: number;
}

export type KeyResolver = (kid: Uint8Array) => PublicKey | undefined;

/** A decoded header pair; `protectedBytes` are the bytes as received, for Sig_structure. */
export interface CoseHeaders {
  protectedBytes: Uint8Array;
  protectedHeader: CborMap;
  unprotectedHeader: CborMap;
}

export interface CoseSign1 extends CoseHeaders {
  tagged: boolean;
  payload: Uint8Array;
  signature: Uint8Array;
}

export interface CheckedHeaders {
  alg: AlgorithmInfo;
  /** The kid, from the protected header or (when allowed) the unprotected one. */
  kid: Uint8Array | undefined;
}

export interface HeaderPolicy {
  /** COSE algorithm ids accepted (default: all supported). */
  algorithms?: readonly number[];
  /** Require the kid in the protected header (ztedge envelopes) instead of either bucket. */
  requireProtectedKid?: boolean;
}

// ---------------------------------------------------------------------------------------
// Decoding

export function decodeLimits(limits: CoseLimits, allowRootTag: boolean): DecodeLimits {
  return {
    maxBytes: limits.maxBytes ?? DEFAULT_MAX_BYTES,
    maxDepth: limits.maxDepth ?? DEFAULT_MAX_DEPTH,
    allowRootTag,
  };
}

/**
 * Decodes a COSE_Sign1 message. With `requireTag` (the default) it must carry tag 18; without
 * it an untagged message is accepted too, for contexts that already say what the message is.
 * Any other tag is refused either way.
 */
export function decodeSign1(bytes: Uint8Array, options: CoseLimits & { requireTag?: boolean } = {}): CoseSign1 {
  const { value, tagged } = untag(decodeCbor(bytes, decodeLimits(options, true)), COSE_SIGN1_TAG, options.requireTag ?? true);
  if (!Array.isArray(value) || value.length !== 4) throw malformed('COSE_Sign1 must be an array of 4 items');
  const headers = decodeHeaders(value[0]!, value[1]!, options);
  const payload = value[2];
  if (!(payload instanceof Uint8Array)) throw malformed('payload must be a byte string (detached payloads are not supported)');
  const signature = value[3];
  if (!(signature instanceof Uint8Array)) throw malformed('signature must be a byte string');
  return { ...headers, tagged, payload, signature };
}

function untag(value: CborValue, expectedTag: number, requireTag: boolean): { value: CborValue; tagged: boolean } {
  if (value instanceof CborTagged) {
    if (value.tag !== expectedTag) throw new EnvelopeError('ENVELOPE_WRONG_TAG', `expected CBOR tag ${expectedTag}, got ${value.tag}`);
    return { value: value.value, tagged: true };
  }
  if (requireTag) throw new EnvelopeError('ENVELOPE_WRONG_TAG', `expected CBOR tag ${expectedTag}, got an untagged item`);
  return { value, tagged: false };
}

function decodeHeaders(protectedItem: CborValue, unprotectedItem: CborValue, limits: CoseLimits): CoseHeaders {
  if (!(protectedItem instanceof Uint8Array)) throw malformed('protected header must be a byte string');
  if (!(unprotectedItem instanceof Map)) throw malformed('unprotected header must be a map');
  let protectedHeader: CborMap = new Map();
  if (protectedItem.length > 0) {
    const decoded = decodeCbor(protectedItem, decodeLimits(limits, false));
    if (!(decoded instanceof Map)) throw malformed('protected header must encode a map');
    protectedHeader = decoded;
  }
  for (const label of unprotectedItem.keys()) {
    if (protectedHeader.has(label)) {
      throw new EnvelopeError('ENVELOPE_DUPLICATE_KEY', `header label ${String(label)} in both protected and unprotected headers`);
    }
  }
  return { protectedBytes: protectedItem, protectedHeader, unprotectedHeader: unprotectedItem };
}

/**
 * Checks a header pair before any crypto: crit lists only understood labels present in the
 * protected header, alg is in the protected header and the allow-list, kid is a byte string.
 */
export function checkHeaders(headers: CoseHeaders, policy: HeaderPolicy = {}): CheckedHeaders {
  const { protectedHeader, unprotectedHeader } = headers;
  checkCritical(headers);
  const algId = protectedHeader.get(HEADER.alg);
  if (algId === undefined) {
    throw new EnvelopeError(
      'ENVELOPE_ALG_MISSING',
      unprotectedHeader.has(HEADER.alg) ? 'alg must be in the protected header' : 'no alg header',
    );
  }
  const alg = algorithmInfo(algId);
  const allowed = policy.algorithms ?? SUPPORTED_ALGORITHMS;
  if (alg === undefined || !allowed.includes(alg.id)) {
    throw new EnvelopeError('ENVELOPE_ALG_UNSUPPORTED', `algorithm ${describe(algId)} is not allowed`);
  }

  const kid = protectedHeader.get(HEADER.kid) ?? (policy.requireProtectedKid ? undefined : unprotectedHeader.get(HEADER.kid));
  if (kid !== undefined && !(kid instanceof Uint8Array)) throw malformed('kid must be a byte string');
  return { alg, kid };
}

/** crit (RFC 9052 §3.1): protected, non-empty, and naming only understood labels that are present. */
function checkCritical({ protectedHeader, unprotectedHeader }: CoseHeaders): void {
  if (unprotectedHeader.has(HEADER.crit)) throw malformed('crit must be in the protected header');
  const crit = protectedHeader.get(HEADER.crit);
  if (crit === undefined) return;
  if (!Array.isArray(crit) || crit.length === 0) throw malformed('crit must be a non-empty array of labels');
  for (const label of crit) {
    if (typeof label !== 'number' && typeof label !== 'string') throw malformed('crit labels must be integers or text');
    if (!UNDERSTOOD_HEADERS.has(label)) {
      throw new EnvelopeError('ENVELOPE_CRIT_UNKNOWN', `critical header ${JSON.stringify(label)} is not understood`);
    }
    if (!protectedHeader.has(label)) throw malformed(`critical header ${JSON.stringify(label)} is not in the protected header`);
  }
}

// ---------------------------------------------------------------------------------------
// Verification

export interface SignatureCheckOptions {
  externalAad?: Uint8Array;
  verifier?: SignatureVerifier;
}

/** Checks that `key` fits `alg`, then the COSE_Sign1 signature; throws EnvelopeError. */
export function verifySign1Signature(message: CoseSign1, alg: AlgorithmInfo, key: PublicKey, options: SignatureCheckOptions = {}): void {
  const toBeSigned = sign1SignedBytes(message, alg, key, options);
  if (!verifierOf(options).verify(key, toBeSigned, message.signature)) throw badSignature();
}

/** verifySign1Signature with the public-key operation off the event loop (see SignatureVerifier). */
export async function verifySign1SignatureAsync(message: CoseSign1, alg: AlgorithmInfo, key: PublicKey, options: SignatureCheckOptions = {}): Promise<void> {
  const toBeSigned = sign1SignedBytes(message, alg, key, options);
  if (!(await verifierOf(options).verifyAsync(key, toBeSigned, message.signature))) throw badSignature();
}

function sign1SignedBytes(message: CoseSign1, alg: AlgorithmInfo, key: PublicKey, options: SignatureCheckOptions): Uint8Array {
  requireKeyFits(alg, key);
  return sign1Structure(message.protectedBytes, options.externalAad ?? EMPTY, message.payload);
}

const verifierOf = (options: SignatureCheckOptions) => options.verifier ?? getVerifier('native');
const badSignature = () => new EnvelopeError('ENVELOPE_BAD_SIGNATURE', 'signature does not verify');

export interface Sign1VerifyOptions extends CoseLimits, HeaderPolicy, SignatureCheckOptions {
  /** A fixed key, or a resolver from kid (then a kid is required). */
  key: PublicKey | KeyResolver;
  requireTag?: boolean;
}

export interface VerifiedSign1 {
  message: CoseSign1;
  alg: AlgorithmInfo;
  kid: Uint8Array | undefined;
  key: PublicKey;
}

/** Decodes and verifies a COSE_Sign1 message; throws EnvelopeError on any failure. */
export function verifySign1(bytes: Uint8Array, options: Sign1VerifyOptions): VerifiedSign1 {
  const message = decodeSign1(bytes, options);
  const { alg, kid } = checkHeaders(message, options);
  const key = typeof options.key === 'function' ? resolveKey(options.key, kid) : options.key;
  verifySign1Signature(message, alg, key, options);
  return { message, alg, kid, key };
}

/** Looks a kid up; ENVELOPE_KID_MISSING / ENVELOPE_KID_UNKNOWN. */
export function resolveKey<K>(resolver: (kid: Uint8Array) => K | undefined, kid: Uint8Array | undefined): K {
  if (kid === undefined) throw new EnvelopeError('ENVELOPE_KID_MISSING', 'no kid header');
  const key = resolver(kid);
  if (key === undefined) throw new EnvelopeError('ENVELOPE_KID_UNKNOWN', `kid ${toHex(kid)} is not a trusted key`);
  return key;
}

function requireKeyFits(alg: AlgorithmInfo, key: PublicKey): void {
  if (alg.keyType !== key.keyType) {
    throw new EnvelopeError('ENVELOPE_ALG_KEY_MISMATCH', `algorithm ${alg.name} cannot be used with a ${key.keyType} key`);
  }
}

// ---------------------------------------------------------------------------------------
// Signing

export interface Sign1Options {
  payload: Uint8Array;
  key: PrivateKey;
  /** Default: EdDSA (-8) for Ed25519 keys, ES256 (-7) for P-256 keys. */
  alg?: CoseAlgorithm;
  /** Default: the key's derived kid. Always placed in the protected header. */
  kid?: Uint8Array;
  externalAad?: Uint8Array;
  unprotectedHeader?: CborMap;
  /** Default true: emit tag 18. */
  tagged?: boolean;
}

export function signSign1(options: Sign1Options): Uint8Array {
  const { protectedBytes, toBeSigned } = sign1Input(options);
  return assembleSign1(options, protectedBytes, sign(options.key, toBeSigned));
}

/** signSign1 with the private-key operation on libuv's thread pool. */
export async function signSign1Async(options: Sign1Options): Promise<Uint8Array> {
  const { protectedBytes, toBeSigned } = sign1Input(options);
  return assembleSign1(options, protectedBytes, await signAsync(options.key, toBeSigned));
}

function sign1Input(options: Sign1Options): { protectedBytes: Uint8Array; toBeSigned: Uint8Array } {
  const protectedBytes = encodeProtected(options.key, options.alg, options.kid);
  return { protectedBytes, toBeSigned: sign1Structure(protectedBytes, options.externalAad ?? EMPTY, options.payload) };
}

function assembleSign1(options: Sign1Options, protectedBytes: Uint8Array, signature: Uint8Array): Uint8Array {
  const message = [protectedBytes, options.unprotectedHeader ?? new Map(), options.payload, signature];
  return encodeCbor(options.tagged === false ? message : new CborTagged(COSE_SIGN1_TAG, message));
}

/** Protected headers with the key's own algorithm and kid, the common case, encoded once per key. */
const defaultProtected = new WeakMap<PrivateKey, Uint8Array>();

function encodeProtected(key: PrivateKey, alg: CoseAlgorithm | undefined, kid: Uint8Array | undefined): Uint8Array {
  const common = alg === undefined && kid === undefined;
  const cached = common ? defaultProtected.get(key) : undefined;
  if (cached !== undefined) return cached;
  const id = alg ?? defaultAlgorithm(key.keyType);
  const info = algorithmInfo(id);
  if (info === undefined) throw new EnvelopeError('ENVELOPE_ALG_UNSUPPORTED', `algorithm ${id} is not supported`);
  requireKeyFits(info, key.publicKey);
  const encoded = encodeCbor(
    new Map<CborMapKey, CborValue>([
      [HEADER.alg, id],
      [HEADER.kid, kid ?? key.publicKey.kid],
    ]),
  );
  if (common) defaultProtected.set(key, encoded);
  return encoded;
}

/** Room for the array head, the context string and up to five byte-string heads. */
const SIG_STRUCTURE_OVERHEAD = 64;

function sign1Structure(bodyProtected: Uint8Array, externalAad: Uint8Array, payload: Uint8Array): Uint8Array {
  const size = SIG_STRUCTURE_OVERHEAD + bodyProtected.length + externalAad.length + payload.length;
  return encodeCbor(['Signature1', bodyProtected, externalAad, payload], size);
}

function signStructure(bodyProtected: Uint8Array, signProtected: Uint8Array, externalAad: Uint8Array, payload: Uint8Array): Uint8Array {
  const size = SIG_STRUCTURE_OVERHEAD + bodyProtected.length + signProtected.length + externalAad.length + payload.length;
  return encodeCbor(['Signature', bodyProtected, signProtected, externalAad, payload], size);
}

// ---------------------------------------------------------------------------------------
// COSE_Sign: several signers over one payload (policy bundles)

export interface SignSignOptions {
  payload: Uint8Array;
  signers: readonly { key: PrivateKey; alg?: CoseAlgorithm; kid?: Uint8Array }[];
  externalAad?: Uint8Array;
  /** Body protected header; default empty. */
  protectedHeader?: CborMap;
}

export function signSign(options: SignSignOptions): Uint8Array {
  if (options.signers.length === 0) throw new EnvelopeError('ENVELOPE_UNENCODABLE', 'COSE_Sign needs at least one signer');
  const bodyProtected = options.protectedHeader && options.protectedHeader.size > 0 ? encodeCbor(options.protectedHeader) : EMPTY;
  const aad = options.externalAad ?? EMPTY;
  const signatures = options.signers.map(({ key, alg, kid }) => {
    const signProtected = encodeProtected(key, alg, kid);
    return [signProtected, new Map(), sign(key, signStructure(bodyProtected, signProtected, aad, options.payload))];
  });
  return encodeCbor(new CborTagged(COSE_SIGN_TAG, [bodyProtected, new Map(), options.payload, signatures]));
}

export interface AddSignatureOptions extends CoseLimits {
  signer: { key: PrivateKey; alg?: CoseAlgorithm; kid?: Uint8Array };
  externalAad?: Uint8Array;
}

/**
 * Appends one COSE_Signature to an existing COSE_Sign message, so that signers can sign one
 * after another (on different machines). The body protected header, the payload and the
 * existing signatures are kept byte for byte; only the unsigned outer array is re-encoded.
 * Existing signatures are not verified here.
 */
export function addSignSignature(message: Uint8Array, options: AddSignatureOptions): Uint8Array {
  const { value } = untag(decodeCbor(message, decodeLimits(options, true)), COSE_SIGN_TAG, true);
  if (!Array.isArray(value) || value.length !== 4) throw malformed('COSE_Sign must be an array of 4 items');
  const [bodyProtected, bodyUnprotected, payload, signatures] = value;
  const body = decodeHeaders(bodyProtected!, bodyUnprotected!, options);
  if (!(payload instanceof Uint8Array)) throw malformed('payload must be a byte string (detached payloads are not supported)');
  if (!Array.isArray(signatures)) throw malformed('COSE_Sign signatures must be an array');
  const { key, alg, kid } = options.signer;
  const signProtected = encodeProtected(key, alg, kid);
  const toBeSigned = signStructure(body.protectedBytes, signProtected, options.externalAad ?? EMPTY, payload);
  const added = [signProtected, new Map(), sign(key, toBeSigned)];
  return encodeCbor(new CborTagged(COSE_SIGN_TAG, [body.protectedBytes, body.unprotectedHeader, payload, [...signatures, added]]));
}

export interface SignerCheck {
  kid: Uint8Array | undefined;
  alg: number | undefined;
  /** Undefined when the signature verified, otherwise why it did not. */
  error?: EnvelopeError;
}

export interface VerifiedSign {
  payload: Uint8Array;
  protectedHeader: CborMap;
  /** One entry per COSE_Signature, in message order. */
  signers: SignerCheck[];
  /** Distinct kids whose signature verified, in first-seen order. */
  verifiedKids: Uint8Array[];
}

export interface SignVerifyOptions extends CoseLimits, SignatureCheckOptions {
  keys: KeyResolver;
  algorithms?: readonly number[];
}

/**
 * Decodes a COSE_Sign message and checks every signature against `keys`. A malformed
 * message throws; a signature that does not verify (unknown kid, alg not allowed, bad
 * signature) is reported in `signers` and left out of `verifiedKids`, so the caller can apply
 * its own threshold.
 */
export function verifySign(bytes: Uint8Array, options: SignVerifyOptions): VerifiedSign {
  const { value } = untag(decodeCbor(bytes, decodeLimits(options, true)), COSE_SIGN_TAG, true);
  if (!Array.isArray(value) || value.length !== 4) throw malformed('COSE_Sign must be an array of 4 items');
  const body = decodeHeaders(value[0]!, value[1]!, options);
  checkCritical(body);
  const payload = value[2];
  if (!(payload instanceof Uint8Array)) throw malformed('payload must be a byte string (detached payloads are not supported)');
  const signatures = value[3];
  if (!Array.isArray(signatures) || signatures.length === 0) throw malformed('COSE_Sign needs a non-empty array of signatures');

  const aad = options.externalAad ?? EMPTY;
  const verifier = options.verifier ?? getVerifier('native');
  const signers: SignerCheck[] = [];
  const verified = new Map<string, Uint8Array>();
  for (const entry of signatures) {
    if (!Array.isArray(entry) || entry.length !== 3) throw malformed('COSE_Signature must be an array of 3 items');
    const headers = decodeHeaders(entry[0]!, entry[1]!, options);
    const signature = entry[2];
    if (!(signature instanceof Uint8Array)) throw malformed('signature must be a byte string');
    const check: SignerCheck = { kid: undefined, alg: undefined };
    try {
      const { alg, kid } = checkHeaders(headers, { algorithms: options.algorithms });
      check.alg = alg.id;
      check.kid = kid;
      const key = resolveKey(options.keys, kid);
      requireKeyFits(alg, key);
      const toBeSigned = signStructure(body.protectedBytes, headers.protectedBytes, aad, payload);
      if (!verifier.verify(key, toBeSigned, signature)) throw new EnvelopeError('ENVELOPE_BAD_SIGNATURE', 'signature does not verify');
      verified.set(toHex(kid!), kid!);
    } catch (err) {
      if (!(err instanceof EnvelopeError)) throw err;
      check.error = err;
    }
    signers.push(check);
  }
  return { payload, protectedHeader: body.protectedHeader, signers, verifiedKids: [...verified.values()] };
}

function malformed(reason: string): EnvelopeError {
  return new EnvelopeError('ENVELOPE_MALFORMED', reason);
}

function describe(value: CborValue): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}
