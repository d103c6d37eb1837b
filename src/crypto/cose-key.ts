// COSE_Key (RFC 9052 §7, RFC 9053 §7): the CBOR map form of a key, kty OKP (Ed25519) or
// EC2 (P-256). Private keys carry `d`; EC2 `y` may be the full coordinate or the sign bit
// of a compressed point.
import { type CborMap, type CborValue, CborError, decodeCbor, encodeCbor } from '../cbor/cbor.js';
import { type CoseAlgorithm, type KeyType, algorithmInfo } from './algorithms.js';
import { CryptoError } from './errors.js';
import { type PrivateKey, type PublicKey, privateKeyFromRaw, publicKeyFromRaw } from './keys.js';

const LABEL = { kty: 1, kid: 2, alg: 3, crv: -1, x: -2, y: -3, d: -4 } as const;
const KTY_OKP = 1;
const KTY_EC2 = 2;
const CRV_P256 = 1;
const CRV_ED25519 = 6;
const MAX_COSE_KEY_BYTES = 1024;

export interface DecodedCoseKey {
  publicKey: PublicKey;
  privateKey?: PrivateKey;
  /** The kid the COSE_Key carries, which need not be the derived one. */
  kid?: Uint8Array;
  alg?: CoseAlgorithm;
}

export interface CoseKeyOptions {
  /** Writes this kid (default: the derived kid of the key). */
  kid?: Uint8Array;
  alg?: CoseAlgorithm;
}

export function publicKeyToCoseKey(key: PublicKey, options: CoseKeyOptions = {}): Uint8Array {
  return encodeCbor(coseKeyMap(key, options));
}

export function privateKeyToCoseKey(key: PrivateKey, options: CoseKeyOptions = {}): Uint8Array {
  const map = coseKeyMap(key.publicKey, options);
  const jwk = key.keyObject.export({ format: 'jwk' });
  if (typeof jwk.d !== 'string') throw new CryptoError('KEY_INVALID', 'private key has no exportable scalar');
  map.set(LABEL.d, new Uint8Array(Buffer.from(jwk.d, 'base64url')));
  return encodeCbor(map);
}

function coseKeyMap(key: PublicKey, options: CoseKeyOptions): CborMap {
  const map: CborMap = new Map();
  if (key.keyType === 'ed25519') {
    map.set(LABEL.kty, KTY_OKP);
    map.set(LABEL.crv, CRV_ED25519);
    map.set(LABEL.x, key.raw);
  } else {
    map.set(LABEL.kty, KTY_EC2);
    map.set(LABEL.crv, CRV_P256);
    map.set(LABEL.x, key.raw.slice(1, 33));
    map.set(LABEL.y, key.raw.slice(33, 65));
  }
  map.set(LABEL.kid, options.kid ?? key.kid);
  if (options.alg !== undefined) map.set(LABEL.alg, options.alg);
  return map;
}

export function decodeCoseKey(bytes: Uint8Array): DecodedCoseKey {
  let value: CborValue;
  try {
    value = decodeCbor(bytes, { maxBytes: MAX_COSE_KEY_BYTES, maxDepth: 2 });
  } catch (err) {
    if (err instanceof CborError) throw new CryptoError('KEY_INVALID', `COSE_Key: ${err.message}`);
    throw err;
  }
  if (!(value instanceof Map)) throw invalid('not a CBOR map');
  const kty = value.get(LABEL.kty);
  const crv = value.get(LABEL.crv);
  let keyType: KeyType;
  let raw: Uint8Array;
  if (kty === KTY_OKP && crv === CRV_ED25519) {
    keyType = 'ed25519';
    raw = bytesField(value, LABEL.x, 'x');
  } else if (kty === KTY_EC2 && crv === CRV_P256) {
    keyType = 'p256';
    raw = ec2Point(bytesField(value, LABEL.x, 'x'), value.get(LABEL.y));
  } else {
    throw new CryptoError('KEY_TYPE_UNSUPPORTED', `COSE_Key kty ${String(kty)} crv ${String(crv)} is not Ed25519 or P-256`);
  }
  const publicKey = publicKeyFromRaw(keyType, raw);
  const decoded: DecodedCoseKey = { publicKey };
  const kid = value.get(LABEL.kid);
  if (kid !== undefined) {
    if (!(kid instanceof Uint8Array)) throw invalid('kid must be a byte string');
    decoded.kid = kid;
  }
  const alg = value.get(LABEL.alg);
  if (alg !== undefined) {
    const info = algorithmInfo(alg);
    if (info === undefined || info.keyType !== keyType) throw invalid(`alg ${String(alg)} is not usable with this key`);
    decoded.alg = info.id;
  }
  if (value.has(LABEL.d)) decoded.privateKey = privateKeyFromRaw(publicKey, bytesField(value, LABEL.d, 'd'));
  return decoded;
}

function ec2Point(x: Uint8Array, y: CborValue | undefined): Uint8Array {
  if (x.length !== 32) throw invalid('x must be 32 bytes');
  if (typeof y === 'boolean') return Uint8Array.from([y ? 0x03 : 0x02, ...x]);
  if (!(y instanceof Uint8Array) || y.length !== 32) throw invalid('y must be 32 bytes or a sign bit');
  return Uint8Array.from([0x04, ...x, ...y]);
}

function bytesField(map: CborMap, label: number, name: string): Uint8Array {
  const value = map.get(label);
  if (!(value instanceof Uint8Array)) throw invalid(`${name} must be a byte string`);
  return value;
}

function invalid(reason: string): CryptoError {
  return new CryptoError('KEY_INVALID', `COSE_Key: ${reason}`);
}
