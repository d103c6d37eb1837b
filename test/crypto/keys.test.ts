import { createHash, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { afterAll, describe, expect, it } from 'vitest';
import { COSE_ALG, SUPPORTED_ALGORITHMS, algorithmInfo } from '../../src/crypto/algorithms.js';
import { decodeCoseKey, privateKeyToCoseKey, publicKeyToCoseKey } from '../../src/crypto/cose-key.js';
import { CryptoError } from '../../src/crypto/errors.js';
import { readPrivateKeyFile, readPublicKeyFile, writePrivateKeyFile, writePublicKeyFile } from '../../src/crypto/key-files.js';
import {
  deriveKid,
  generatePrivateKey,
  privateKeyFromPem,
  privateKeyToPem,
  publicKeyFromPem,
  publicKeyFromRaw,
  publicKeyToPem,
} from '../../src/crypto/keys.js';
import { sign } from '../../src/crypto/signer.js';
import { getVerifier } from '../../src/crypto/verifier.js';

const keyTypes = ['ed25519', 'p256'] as const;
const dir = mkdtempSync(join(tmpdir(), 'ztedge-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof CryptoError) return err.code;
    throw err;
  }
  return undefined;
}

describe('algorithms', () => {
  it('maps both polymorphic and RFC 9864 fully-specified ids to the same key type', () => {
    expect(algorithmInfo(-8)?.keyType).toBe('ed25519');
    expect(algorithmInfo(-19)?.keyType).toBe('ed25519');
    expect(algorithmInfo(-7)?.keyType).toBe('p256');
    expect(algorithmInfo(-9)?.keyType).toBe('p256');
    expect([...SUPPORTED_ALGORITHMS].sort()).toEqual([COSE_ALG.Ed25519, COSE_ALG.ESP256, COSE_ALG.EdDSA, COSE_ALG.ES256].sort());
  });

  it('knows nothing else (ES512, RS256, text names)', () => {
    expect(algorithmInfo(-36)).toBeUndefined();
    expect(algorithmInfo(-257)).toBeUndefined();
    expect(algorithmInfo('EdDSA')).toBeUndefined();
  });
});

describe.each(keyTypes)('%s keys', (keyType) => {
  const key = generatePrivateKey(keyType);

  it('derives the kid as the first 16 bytes of SHA-256 over the raw public key', () => {
    const expected = createHash('sha256').update(key.publicKey.raw).digest().subarray(0, 16);
    expect(Buffer.from(key.publicKey.kid)).toEqual(expected);
    expect(deriveKid(key.publicKey.raw)).toEqual(key.publicKey.kid);
    expect(key.publicKey.raw.length).toBe(keyType === 'ed25519' ? 32 : 65);
  });

  it('round-trips PKCS#8 and SPKI PEM', () => {
    const pem = privateKeyToPem(key);
    expect(pem).toContain('BEGIN PRIVATE KEY');
    const back = privateKeyFromPem(pem);
    expect(back.publicKey).toEqual(key.publicKey);
    const pub = publicKeyFromPem(publicKeyToPem(key.publicKey));
    expect(pub).toEqual(key.publicKey);
    expect(codeOf(() => publicKeyFromPem(pem))).toBe('KEY_INVALID');
    expect(codeOf(() => publicKeyFromPem('not pem'))).toBe('KEY_INVALID');
  });

  it('round-trips raw public keys', () => {
    expect(publicKeyFromRaw(keyType, key.publicKey.raw)).toEqual(key.publicKey);
    expect(codeOf(() => publicKeyFromRaw(keyType, key.publicKey.raw.subarray(1)))).toBe('KEY_INVALID');
  });

  it('round-trips COSE_Key, public and private', () => {
    const decoded = decodeCoseKey(publicKeyToCoseKey(key.publicKey, { alg: keyType === 'ed25519' ? -8 : -7 }));
    expect(decoded.publicKey).toEqual(key.publicKey);
    expect(decoded.kid).toEqual(key.publicKey.kid);
    expect(decoded.privateKey).toBeUndefined();
    const withPrivate = decodeCoseKey(privateKeyToCoseKey(key));
    const message = new TextEncoder().encode('round trip');
    expect(getVerifier('native').verify(key.publicKey, message, sign(withPrivate.privateKey!, message))).toBe(true);
  });

  it('refuses a COSE_Key whose alg belongs to the other key type', () => {
    const bytes = publicKeyToCoseKey(key.publicKey, { alg: keyType === 'ed25519' ? -7 : -8 });
    expect(codeOf(() => decodeCoseKey(bytes))).toBe('KEY_INVALID');
  });
});

describe('key checks', () => {
  const n = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');

  it('refuses small-order and non-canonical Ed25519 public keys', () => {
    const identity = new Uint8Array(32);
    identity[0] = 1;
    expect(codeOf(() => publicKeyFromRaw('ed25519', identity))).toBe('KEY_INVALID');
    expect(ed25519.Point.fromBytes(identity).isSmallOrder()).toBe(true);
    // y = p (2^255 - 19) encodes 0 non-canonically.
    const nonCanonical = new Uint8Array(Buffer.from('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex'));
    expect(codeOf(() => publicKeyFromRaw('ed25519', nonCanonical))).toBe('KEY_INVALID');
  });

  it('refuses P-256 points off the curve and accepts compressed points', () => {
    const key = generatePrivateKey('p256');
    const off = new Uint8Array(key.publicKey.raw);
    off[64] ^= 1;
    expect(codeOf(() => publicKeyFromRaw('p256', off))).toBe('KEY_INVALID');
    const y = key.publicKey.raw[64]!;
    const compressed = Uint8Array.from([y & 1 ? 3 : 2, ...key.publicKey.raw.subarray(1, 33)]);
    expect(publicKeyFromRaw('p256', compressed)).toEqual(key.publicKey);
  });

  it('refuses key types other than Ed25519 and P-256', () => {
    const pem = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.alloc(32, 9).toString('base64url') }, format: 'jwk' })
      .export({ format: 'pem', type: 'spki' })
      .toString();
    expect(codeOf(() => publicKeyFromPem(pem))).toBe('KEY_TYPE_UNSUPPORTED');
  });

  it('selects verifiers by name and refuses unknown names', () => {
    expect(getVerifier().name).toBe('native');
    expect(getVerifier('noble').name).toBe('noble');
    expect(codeOf(() => getVerifier('wasm'))).toBe('VERIFIER_UNKNOWN');
  });
});

describe('key files', () => {
  it('creates the private key file with mode 0600 and the public one readable', () => {
    const key = generatePrivateKey('ed25519');
    writePrivateKeyFile(join(dir, 'a.key'), key);
    writePublicKeyFile(join(dir, 'a.pub'), key.publicKey);
    expect(statSync(join(dir, 'a.key')).mode & 0o777).toBe(0o600);
    expect(readPrivateKeyFile(join(dir, 'a.key')).publicKey).toEqual(key.publicKey);
    expect(readPublicKeyFile(join(dir, 'a.pub'))).toEqual(key.publicKey);
  });

  it('never overwrites an existing key', () => {
    const key = generatePrivateKey('p256');
    writePrivateKeyFile(join(dir, 'b.key'), key);
    const before = readFileSync(join(dir, 'b.key'), 'utf8');
    expect(codeOf(() => writePrivateKeyFile(join(dir, 'b.key'), generatePrivateKey('p256')))).toBe('KEY_FILE_EXISTS');
    expect(readFileSync(join(dir, 'b.key'), 'utf8')).toBe(before);
  });

  it.each([0o640, 0o604, 0o644, 0o660])('refuses a private key file with mode %o', (mode) => {
    const path = join(dir, `perm-${mode.toString(8)}.key`);
    writeFileSync(path, privateKeyToPem(generatePrivateKey('ed25519')), { mode: 0o600 });
    chmodSync(path, mode);
    expect(codeOf(() => readPrivateKeyFile(path))).toBe('KEY_FILE_PERMISSIONS');
    chmodSync(path, 0o400);
    expect(readPrivateKeyFile(path).keyType).toBe('ed25519');
  });

  it('reports a missing file and a non-key file with codes', () => {
    expect(codeOf(() => readPublicKeyFile(join(dir, 'missing.pub')))).toBe('KEY_FILE_UNREADABLE');
    writeFileSync(join(dir, 'junk.pub'), 'hello');
    expect(codeOf(() => readPublicKeyFile(join(dir, 'junk.pub')))).toBe('KEY_INVALID');
  });
});
