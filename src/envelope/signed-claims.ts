// The pipeline every ztedge envelope (command, approval, result) shares: a tagged COSE_Sign1
// whose payload is a CWT claims map, bound by external_aad to [deviceId, topic].
//
// Verification order: structure, headers (alg allow-list, kid in the protected header) and
// the payload's CBOR shape (size, depth, duplicate claims) first; then the kid lookup and
// the signature; claim values are read only from verified bytes, by the caller.
import type { AlgorithmInfo, CoseAlgorithm } from '../crypto/algorithms.js';
import { sha256 } from '../crypto/hash.js';
import type { PrivateKey, PublicKey } from '../crypto/keys.js';
import type { SignatureVerifier } from '../crypto/verifier.js';
import { type CborMap, type CborMapKey, type Encodable, decodeCbor, encodeCbor } from './cbor.js';
import { CLAIM, CTI_LENGTH, contextAad, readText } from './claims.js';
import {
  type CoseLimits,
  type CoseSign1,
  type SignatureCheckOptions,
  checkHeaders,
  decodeLimits,
  decodeSign1,
  resolveKey,
  signSign1,
  signSign1Async,
  verifySign1Signature,
  verifySign1SignatureAsync,
} from './cose.js';
import { EnvelopeError } from './errors.js';

/**
 * What a key resolver returns for a trusted kid: the key, or the key and the issuer it
 * belongs to (then the envelope's iss must name that issuer).
 */
export type ResolvedKey = PublicKey | { key: PublicKey; issuer: string };
export type TrustedKeyResolver = (kid: Uint8Array) => ResolvedKey | undefined;

export const DEFAULT_CLOCK_SKEW_MS = 30_000;
export const DEFAULT_MAX_LIFETIME_MS = 5 * 60_000;

export interface EnvelopeVerifyOptions extends CoseLimits {
  keyResolver: TrustedKeyResolver;
  deviceId: string;
  topic: string;
  /** Current time, in milliseconds since the epoch. */
  now: number;
  clockSkewMs?: number;
  maxLifetimeMs?: number;
  /** COSE algorithm ids accepted (default: all supported). */
  algorithms?: readonly number[];
  /** Default: the native (OpenSSL) verifier. */
  verifier?: SignatureVerifier;
  /** Commands only: report an early iat/nbf on the result instead of refusing (see TimePolicy). */
  tolerateEarly?: boolean;
}

export interface OpenedEnvelope {
  claims: CborMap;
  kid: Uint8Array;
  alg: AlgorithmInfo;
  key: PublicKey;
  /** The issuer the resolver bound to this kid, if any. */
  boundIssuer: string | undefined;
  /** SHA-256 of the envelope bytes as received. */
  digest: Uint8Array;
}

/** Verifies structure and signature; the caller then reads and checks the claims. */
export function openEnvelope(bytes: Uint8Array, options: EnvelopeVerifyOptions): OpenedEnvelope {
  const unverified = readEnvelope(bytes, options);
  verifySign1Signature(unverified.message, unverified.opened.alg, unverified.opened.key, unverified.check);
  return unverified.opened;
}

/** openEnvelope with the signature checked off the event loop (libuv's thread pool). */
export async function openEnvelopeAsync(bytes: Uint8Array, options: EnvelopeVerifyOptions): Promise<OpenedEnvelope> {
  const unverified = readEnvelope(bytes, options);
  await verifySign1SignatureAsync(unverified.message, unverified.opened.alg, unverified.opened.key, unverified.check);
  return unverified.opened;
}

/** Everything before the signature: structure, headers, claims shape, the key by kid. */
function readEnvelope(bytes: Uint8Array, options: EnvelopeVerifyOptions): { message: CoseSign1; opened: OpenedEnvelope; check: SignatureCheckOptions } {
  const message = decodeSign1(bytes, { ...options, requireTag: true });
  const { alg, kid } = checkHeaders(message, { algorithms: options.algorithms, requireProtectedKid: true });
  const claims = decodeCbor(message.payload, decodeLimits(options, false));
  if (!(claims instanceof Map)) throw new EnvelopeError('ENVELOPE_MALFORMED', 'payload must be a CWT claims map');
  const resolved = resolveKey(options.keyResolver, kid);
  const key = 'raw' in resolved ? resolved : resolved.key;
  return {
    message,
    opened: { claims, kid: kid!, alg, key, boundIssuer: 'raw' in resolved ? undefined : resolved.issuer, digest: sha256(bytes) },
    check: { externalAad: contextAad(options.deviceId, options.topic), verifier: options.verifier },
  };
}

/**
 * Reads iss. When the key is bound to an issuer (the agent binds each bundle key to its
 * principal), iss may be absent and then is that issuer; when present it must be exactly that
 * issuer. An unbound key needs an iss.
 */
export function readIssuer(opened: OpenedEnvelope): string {
  if (opened.boundIssuer !== undefined && !opened.claims.has(CLAIM.iss)) return opened.boundIssuer;
  const issuer = readText(opened.claims, CLAIM.iss, 'iss');
  if (opened.boundIssuer !== undefined && issuer !== opened.boundIssuer) {
    throw new EnvelopeError('ENVELOPE_ISSUER_MISMATCH', `iss ${JSON.stringify(issuer.slice(0, 200))} is not the principal this key belongs to`);
  }
  return issuer;
}

export interface EnvelopeSignOptions {
  key: PrivateKey;
  alg?: CoseAlgorithm;
  kid?: Uint8Array;
  deviceId: string;
  topic: string;
}

export function sealEnvelope(claims: ReadonlyMap<CborMapKey, Encodable>, options: EnvelopeSignOptions): Uint8Array {
  return signSign1(sign1Options(claims, options));
}

/** sealEnvelope with the signature made on libuv's thread pool. */
export async function sealEnvelopeAsync(claims: ReadonlyMap<CborMapKey, Encodable>, options: EnvelopeSignOptions): Promise<Uint8Array> {
  return signSign1Async(sign1Options(claims, options));
}

function sign1Options(claims: ReadonlyMap<CborMapKey, Encodable>, options: EnvelopeSignOptions) {
  return {
    payload: encodeCbor(claims),
    key: options.key,
    alg: options.alg,
    kid: options.kid,
    externalAad: contextAad(options.deviceId, options.topic),
  };
}

export function randomCti(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(CTI_LENGTH));
}
