// Public and private keys for the two supported key types, and their raw and PEM forms.
//
// A key id (kid) is the first 16 bytes of SHA-256 over the raw public key: the 32-byte
// RFC 8032 encoding for Ed25519, the 65-byte uncompressed SEC1 point (0x04 || x || y) for
// P-256. It is derived, so a signer and a verifier holding the same public key agree on it
// without coordination, and 128 bits make accidental collisions negligible.
import { type KeyObject, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';
import type { KeyType } from './algorithms.js';
import { bytesEqual } from './bytes.js';
import { CryptoError } from './errors.js';
import { sha256 } from './hash.js';

export const KID_LENGTH = 16;
export const ED25519_PUBLIC_KEY_LENGTH = 32;
export const P256_PUBLIC_KEY_LENGTH = 65;
const P256_COORDINATE_LENGTH = 32;

export interface PublicKey {
  readonly keyType: KeyType;
  /** Ed25519: the 32-byte encoding; P-256: the 65-byte uncompressed point. */
  readonly raw: Uint8Array;
  readonly kid: Uint8Array;
}

export interface PrivateKey {
  readonly keyType: KeyType;
  readonly publicKey: PublicKey;
  /** The node:crypto private key; signing always runs on OpenSSL. */
  readonly keyObject: KeyObject;
}

export function deriveKid(rawPublicKey: Uint8Array): Uint8Array {
  return sha256(rawPublicKey).slice(0, KID_LENGTH);
}

/**
 * Imports a raw public key. P-256 accepts the uncompressed (65 bytes) or compressed
 * (33 bytes) point and keeps the uncompressed form. Points off the curve, and Ed25519
 * encodings that are non-canonical or of small order, are refused here so that no
 * verifier ever sees them.
 */
export function publicKeyFromRaw(keyType: KeyType, raw: Uint8Array): PublicKey {
  const normalized = keyType === 'ed25519' ? checkEd25519Point(raw) : normalizeP256Point(raw);
  return { keyType, raw: normalized, kid: deriveKid(normalized) };
}

function checkEd25519Point(raw: Uint8Array): Uint8Array {
  if (raw.length !== ED25519_PUBLIC_KEY_LENGTH) {
    throw new CryptoError('KEY_INVALID', `Ed25519 public key must be ${ED25519_PUBLIC_KEY_LENGTH} bytes, got ${raw.length}`);
  }
  let point;
  try {
    point = ed25519.Point.fromBytes(raw, false);
  } catch {
    throw new CryptoError('KEY_INVALID', 'Ed25519 public key is not a canonical curve point');
  }
  if (point.isSmallOrder()) throw new CryptoError('KEY_INVALID', 'Ed25519 public key is of small order');
  return Uint8Array.from(raw);
}

function normalizeP256Point(raw: Uint8Array): Uint8Array {
  if (raw.length !== P256_PUBLIC_KEY_LENGTH && raw.length !== P256_COORDINATE_LENGTH + 1) {
    throw new CryptoError('KEY_INVALID', `P-256 public key must be 65 or 33 bytes, got ${raw.length}`);
  }
  try {
    return p256.Point.fromBytes(raw).toBytes(false);
  } catch {
    throw new CryptoError('KEY_INVALID', 'P-256 public key is not a point on the curve');
  }
}

export function generatePrivateKey(keyType: KeyType): PrivateKey {
  const { privateKey } =
    keyType === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return privateKeyFromKeyObject(privateKey);
}

/** Imports a PKCS#8 PEM private key (Ed25519 or P-256). */
export function privateKeyFromPem(pem: string): PrivateKey {
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw new CryptoError('KEY_INVALID', 'not a PEM private key');
  }
  return privateKeyFromKeyObject(keyObject);
}

export function privateKeyToPem(key: PrivateKey): string {
  return key.keyObject.export({ format: 'pem', type: 'pkcs8' }).toString();
}

/** Imports an SPKI PEM public key (Ed25519 or P-256). */
export function publicKeyFromPem(pem: string): PublicKey {
  // createPublicKey would quietly derive the public half of a private key; a private key
  // where a public one belongs is a mistake worth reporting (it may be about to be shared).
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw new CryptoError('KEY_INVALID', 'expected a public key, got a private key');
  }
  let keyObject: KeyObject;
  try {
    keyObject = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw new CryptoError('KEY_INVALID', 'not a PEM public key');
  }
  return publicKeyFromKeyObject(keyObject);
}

export function publicKeyToPem(key: PublicKey): string {
  return publicKeyToKeyObject(key).export({ format: 'pem', type: 'spki' }).toString();
}

/**
 * Imports a private key from its raw scalar/seed `d` (32 bytes) and checks it against the
 * given public key.
 */
export function privateKeyFromRaw(publicKey: PublicKey, d: Uint8Array): PrivateKey {
  if (d.length !== 32) throw new CryptoError('KEY_INVALID', `private key must be 32 bytes, got ${d.length}`);
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey({ key: { ...publicJwk(publicKey), d: base64url(d) }, format: 'jwk' });
  } catch {
    throw new CryptoError('KEY_INVALID', 'private key does not match its public key');
  }
  const key = privateKeyFromKeyObject(keyObject);
  if (!bytesEqual(key.publicKey.raw, publicKey.raw)) {
    throw new CryptoError('KEY_INVALID', 'private key does not match its public key');
  }
  return key;
}

/** A node:crypto KeyObject for a public key; callers on hot paths cache it. */
export function publicKeyToKeyObject(key: PublicKey): KeyObject {
  return createPublicKey({ key: publicJwk(key), format: 'jwk' });
}

function privateKeyFromKeyObject(keyObject: KeyObject): PrivateKey {
  const publicKey = publicKeyFromKeyObject(createPublicKey(keyObject));
  return { keyType: publicKey.keyType, publicKey, keyObject };
}

function publicKeyFromKeyObject(keyObject: KeyObject): PublicKey {
  const jwk = keyObject.export({ format: 'jwk' });
  if (keyObject.asymmetricKeyType === 'ed25519' && typeof jwk.x === 'string') {
    return publicKeyFromRaw('ed25519', fromBase64url(jwk.x));
  }
  if (keyObject.asymmetricKeyType === 'ec' && jwk.crv === 'P-256' && typeof jwk.x === 'string' && typeof jwk.y === 'string') {
    const raw = new Uint8Array(P256_PUBLIC_KEY_LENGTH);
    raw[0] = 0x04;
    raw.set(fromBase64url(jwk.x), 1);
    raw.set(fromBase64url(jwk.y), 1 + P256_COORDINATE_LENGTH);
    return publicKeyFromRaw('p256', raw);
  }
  const curve = keyObject.asymmetricKeyType === 'ec' ? `ec ${String(jwk.crv)}` : String(keyObject.asymmetricKeyType);
  throw new CryptoError('KEY_TYPE_UNSUPPORTED', `unsupported key type ${curve} (expected Ed25519 or P-256)`);
}

function publicJwk(key: PublicKey): { kty: string; crv: string; x: string; y?: string } {
  if (key.keyType === 'ed25519') return { kty: 'OKP', crv: 'Ed25519', x: base64url(key.raw) };
  return {
    kty: 'EC',
    crv: 'P-256',
    x: base64url(key.raw.subarray(1, 1 + P256_COORDINATE_LENGTH)),
    y: base64url(key.raw.subarray(1 + P256_COORDINATE_LENGTH)),
  };
}

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

function fromBase64url(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64url'));
}
